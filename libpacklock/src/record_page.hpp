#pragma once
// The first page of a sidecar, mapped shared, for writing owner records
// without a system call.
//
// An exclusive acquisition writes its record into the sidecar (SPEC section
// 1). With pwrite(2) that write costs about as much as flock(2), the inode
// check and the unlock together; through a shared mapping it is a memcpy
// into the page cache, where every reader's pread(2) sees it at once.
//
// What a mapped write does not do is touch the mtime, which pwrite(2) did
// as a side effect, so the hold decides (see Hold::write_record): the
// mapping only when the mtime seen at the ghost-lock check is fresh enough
// to stand in for a refresh, pwrite(2) otherwise.
//
// The page is mapped through an open file description of its own (the
// descriptor's /proc link reopened, then closed): a mapping keeps its
// description alive, and the lock's must die with its descriptor, or a
// release by close(2) would not release. A write goes only where the file
// is known to reach (the size seen at the ghost-lock check, while this
// process holds the lock), so truncation by a well-behaved process cannot
// fault it. Only on local filesystems, and never a read-only descriptor.

#include <sys/types.h>

#include <cstdint>
#include <string_view>

namespace packlock::detail {

class RecordPage final {
 public:
  static constexpr std::size_t kSize = 4096;

  RecordPage() noexcept = default;
  RecordPage(RecordPage&& other) noexcept;
  RecordPage& operator=(RecordPage&& other) noexcept;
  RecordPage(const RecordPage&) = delete;
  RecordPage& operator=(const RecordPage&) = delete;
  ~RecordPage();

  // Maps the first page of the regular file `fd` has open, whose identity
  // is (dev, ino). When that fails the page stays empty, but remembers the
  // inode, so that the next hold does not try again.
  static RecordPage map(int fd, dev_t dev, ino_t ino) noexcept;

  // Whether it was made for the inode (dev, ino), mapped or not.
  bool made_for(dev_t dev, ino_t ino) const noexcept {
    return made_ && dev_ == dev && ino_ == ino;
  }
  // Copies `block` to the start of the file, if a file of `file_size`
  // bytes holds all of it; false when it does not (nothing is written).
  bool store(std::string_view block, std::int64_t file_size) noexcept;

 private:
  void* address_ = nullptr;
  bool made_ = false;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
};

}  // namespace packlock::detail
