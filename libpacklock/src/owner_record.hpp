#pragma once
// Writing the owner record (see <packlock/owner.hpp> for its format).
//
// An exclusive acquisition writes its record with one pwrite(2) at offset 0
// of a block padded to a multiple of 512 bytes, so records of one process
// overwrite each other whole and the file never shrinks. Everything but the
// acquisition time and the token is the same for every hold of a pack, so
// each Pack keeps the formatted line and the checksum state of its constant
// part; an acquisition patches two fields and hashes ~100 bytes.

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include <packlock/options.hpp>
#include <packlock/owner.hpp>


namespace packlock::detail {

// What every record of this process repeats. Read once per process (again
// in a forked child, whose pid and start time differ).
struct ProcessFacts {
  pid_t pid = 0;
  std::string host;
  std::string boot_id;
  std::uint64_t pid_namespace = 0;
  std::uint64_t start_time = 0;
  std::string command;  // /proc/self/cmdline, NULs as spaces
};

std::shared_ptr<const ProcessFacts> process_facts();

// The record this process's exclusive holds write under `options`, but for
// the acquisition time and token.
OwnerRecord record_of_this_process(const LockOptions& options);

// The start time of `pid` (/proc/PID/stat, field 22), or nullopt when no
// such process runs here or it is a zombie.
std::optional<std::uint64_t> process_start_time(pid_t pid) noexcept;

// The record of one Pack's exclusive holds. Thread-safe.
class OwnerRecordWriter final {
 public:
  explicit OwnerRecordWriter(const LockOptions& options);
  OwnerRecordWriter(const OwnerRecordWriter&) = delete;
  OwnerRecordWriter& operator=(const OwnerRecordWriter&) = delete;

  using Block = std::array<char, kOwnerRecordMaxSize>;
  // Formats the record of an acquisition made at `acquired_at` into
  // `block`: its size (a multiple of 512), or 0 without memory to build it.
  std::size_t render(Block& block, std::chrono::system_clock::time_point acquired_at) const noexcept;
  // Reads what the record says of this process (/proc, the host name) now,
  // ahead of the first render: a waiter calls it before it blocks, so that
  // none of it falls between the grant and the write.
  void prepare() const noexcept;
  // Writes a rendered record at the start of `fd` with one pwrite(2).
  // Returns 0, or the errno of the write (EIO for a short one).
  static int write(int fd, std::string_view block) noexcept;
  // Overwrites the first `size` bytes of `fd` (a record written before)
  // with spaces and a final newline, so that no reader finds a record in
  // them, nor the command line it held. One pwrite(2); 0 or the errno.
  static int clear(int fd, std::size_t size) noexcept;

 private:
  struct Template {
    std::string block;  // the padded line with placeholders
    std::size_t time_at = 0, token_at = 0, check_at = 0;
    std::uint64_t prefix_hash = 0;  // of block[0, time_at)
  };
  bool build(Template& out) const;
  // The template: built once, then read without a lock.
  const Template* current() const noexcept;

  std::chrono::nanoseconds heartbeat_;
  std::chrono::nanoseconds stale_after_;
  std::optional<std::string> command_;
  bool record_command_;
  mutable std::once_flag built_;
  mutable std::shared_ptr<const Template> template_;  // written once, under built_
};

}  // namespace packlock::detail
