// The owner record: written whole by exclusive holders, read back, and read
// defensively: malformed, oversized, binary, torn and hostile content is an
// unknown owner, never a crash or a wrong owner. Liveness by pid and start
// time.

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>

#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "owner_record.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

OwnerRecord sample_record() {
  LockOptions options;
  options.command = "make install";
  OwnerRecord record = detail::record_of_this_process(options);
  record.acquired_at = std::chrono::system_clock::now();
  record.token = "0123456789abcdef0123456789abcdef";
  return record;
}

// The record's JSON line with one member's value replaced by `value` (raw
// JSON), the check recomputed as a holder would.
std::string with_member(const std::string& key, const std::string& value) {
  std::string line = format_owner_record(sample_record());
  line = line.substr(0, line.find('\n'));
  const std::string marker = "\"" + key + "\":";
  const auto at = line.find(marker) + marker.size();
  const auto end = line.find_first_of(",}", line[at] == '"' ? line.find('"', at + 1) : at);
  line.replace(at, end - at, value);
  // Recompute the check over everything before it.
  const auto check_at = line.rfind(",\"check\":\"");
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (std::size_t i = 0; i < check_at; ++i) {
    hash ^= static_cast<unsigned char>(line[i]);
    hash *= 0x100000001b3ULL;
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(hash));
  line.replace(check_at + 10, 16, hex);
  return line + "\n";
}

struct RecordFixture : PackDir {
  fs::path sidecar = pack / ".grex-lock";
};

}  // namespace

BOOST_AUTO_TEST_SUITE(owner_record)

BOOST_FIXTURE_TEST_CASE(an_exclusive_holder_writes_a_record_that_reads_back, RecordFixture) {
  LockOptions options;
  options.heartbeat = 2s;
  options.stale_after = 7s;
  options.command = "deploy --all";
  const PackLock with_options = PackLock::open(pack, options);
  const auto before = std::chrono::system_clock::now();
  PackLockHold hold = with_options.acquire();
  const auto record = read_owner_record(pack);
  BOOST_REQUIRE(record.has_value());
  BOOST_TEST(record->version == kOwnerRecordVersion);
  BOOST_TEST(record->pid == ::getpid());
  BOOST_TEST(record->host == detail::process_facts()->host);
  BOOST_TEST(record->start_time == detail::process_facts()->start_time);
  BOOST_TEST((record->mode == Mode::exclusive));
  BOOST_TEST(record->command == "deploy --all");
  BOOST_TEST(record->heartbeat.count() == std::chrono::nanoseconds(2s).count());
  BOOST_TEST(record->stale_after.count() == std::chrono::nanoseconds(7s).count());
  BOOST_TEST((record->acquired_at == hold.acquired_at()));
  BOOST_TEST((record->acquired_at >= before));
  BOOST_TEST(record->token.size() == 32u);
  BOOST_TEST((liveness_of(*record) == OwnerLiveness::alive));
  const std::string content = read_file(sidecar);
  BOOST_TEST(content.size() % 512 == 0u);
  BOOST_TEST(content.size() <= kOwnerRecordMaxSize);

  // Every acquisition writes its own record.
  const std::string token = record->token;
  hold.release();
  hold = with_options.acquire();
  const auto again = read_owner_record(pack);
  BOOST_REQUIRE(again.has_value());
  BOOST_TEST(again->token != token);
}

BOOST_FIXTURE_TEST_CASE(the_default_command_is_this_process_command_line, RecordFixture) {
  PackLockHold hold = lock.acquire();
  const auto record = read_owner_record(pack);
  BOOST_REQUIRE(record.has_value());
  BOOST_TEST(record->command.find("packlock_tests") != std::string::npos, record->command);
  BOOST_TEST(record->command.size() <= 256u);
}

// SPEC, privacy: the record, command line included, is gone once the
// lock is let go; the sidecar keeps its size, blank.
BOOST_FIXTURE_TEST_CASE(release_blanks_the_record, RecordFixture) {
  LockOptions options;
  options.command = "deploy --password=hunter2";
  const PackLock with_command = PackLock::open(pack, options);
  PackLockHold hold = with_command.acquire();
  const std::string held = read_file(sidecar);
  BOOST_REQUIRE(held.find("hunter2") != std::string::npos);
  BOOST_TEST(!hold.release());
  const std::string released = read_file(sidecar);
  BOOST_TEST(released.size() == held.size());
  BOOST_TEST(released.find_first_not_of(" \n") == std::string::npos);
  BOOST_TEST(!read_owner_record(pack).has_value());
}

BOOST_FIXTURE_TEST_CASE(record_command_false_keeps_the_command_line_out, RecordFixture) {
  LockOptions options;
  options.command = "deploy --password=hunter2";
  options.record_command = false;
  PackLockHold hold = PackLock::open(pack, options).acquire();
  const auto record = read_owner_record(pack);
  BOOST_REQUIRE(record.has_value());
  BOOST_TEST(record->command.empty());
  BOOST_TEST(record->pid == ::getpid());
  BOOST_TEST(read_file(sidecar).find("hunter2") == std::string::npos);
}

BOOST_FIXTURE_TEST_CASE(shared_holders_write_no_record, RecordFixture) {
  PackLockHold hold = lock.acquire(Mode::shared);
  BOOST_TEST(read_file(sidecar).empty());
  BOOST_TEST(!read_owner_record(pack).has_value());
}

// The mtime an acquisition leaves: an exclusive one's record (pwrite(2))
// refreshes it; a shared one refreshes an aged one (futimens(2)) and may
// leave a young one, at most (stale_after - heartbeat) / 2 old; never
// older, and the record is always the new one.
BOOST_FIXTURE_TEST_CASE(an_acquisition_leaves_the_mtime_young, RecordFixture) {
  LockOptions options;
  options.heartbeat = 2s;
  options.stale_after = 10s;  // young: at most 4 s old
  const PackLock with_options = PackLock::open(pack, options);
  { PackLockHold first = with_options.acquire(); }
  const auto mtime_age = [&] {
    struct stat st {};
    BOOST_REQUIRE(::stat(sidecar.c_str(), &st) == 0);
    timespec now{};
    ::clock_gettime(CLOCK_REALTIME, &now);
    return std::chrono::seconds(now.tv_sec - st.st_mtim.tv_sec) +
           std::chrono::nanoseconds(now.tv_nsec - st.st_mtim.tv_nsec);
  };
  const auto set_age = [&](std::chrono::seconds age) {
    timespec times[2]{};
    times[0].tv_nsec = UTIME_OMIT;
    ::clock_gettime(CLOCK_REALTIME, &times[1]);
    times[1].tv_sec -= age.count();
    BOOST_REQUIRE(::utimensat(AT_FDCWD, sidecar.c_str(), times, 0) == 0);
  };
  for (const Mode mode : {Mode::exclusive, Mode::shared}) {
    BOOST_TEST_CONTEXT(to_string(mode)) {
      const std::string token_before = read_owner_record(pack).value_or(OwnerRecord{}).token;
      set_age(6s);
      PackLockHold hold = with_options.acquire(mode);
      BOOST_TEST((mtime_age() < 2s));
      hold.release();

      set_age(2s);
      hold = with_options.acquire(mode);
      BOOST_TEST((mtime_age() < 4s));
      if (mode == Mode::exclusive) {
        const auto record = read_owner_record(pack);
        BOOST_REQUIRE(record.has_value());
        BOOST_TEST((record->acquired_at == hold.acquired_at()));
        BOOST_TEST(record->token != token_before);
      }
    }
  }
}

BOOST_FIXTURE_TEST_CASE(a_long_or_invalid_command_is_truncated_and_stays_valid, RecordFixture) {
  LockOptions options;
  options.command = std::string(5000, '\x01') + "\xff\xfe tail";
  PackLockHold hold = PackLock::open(pack, options).acquire();
  const std::string content = read_file(sidecar);
  BOOST_TEST(content.size() <= kOwnerRecordMaxSize);
  const auto record = read_owner_record(pack);
  BOOST_REQUIRE(record.has_value());
  BOOST_TEST(record->command == std::string(256, '\x01'));
  options.command = std::string(255, 'x') + "\xc3\xa9";  // cut inside the last character
  hold.release();
  hold = PackLock::open(pack, options).acquire();
  const auto cut = read_owner_record(pack);
  BOOST_REQUIRE(cut.has_value());
  BOOST_TEST(cut->command == std::string(255, 'x') + "\xef\xbf\xbd");  // U+FFFD
}

BOOST_AUTO_TEST_CASE(malformed_records_are_an_unknown_owner) {
  const std::string good = format_owner_record(sample_record());
  BOOST_REQUIRE(parse_owner_record(good).has_value());
  const std::vector<std::string> bad{
      "",
      "\n",
      "not json\n",
      "{}\n",
      "[1,2,3]\n",
      good.substr(0, good.find('\n')),              // no newline
      good.substr(0, good.find('\n') / 2) + "\n",   // cut short
      std::string(10000, '{') + "\n",               // deep nesting, beyond 4 KiB
      std::string(5000, ' ') + good,                // the record beyond 4 KiB
      with_member("version", "2"),
      with_member("pid", "0"),
      with_member("pid", "-1"),
      with_member("pid", "1099511627776"),          // 2^40
      with_member("pid", "4.5"),
      with_member("pid", "\"123\""),
      with_member("host", "\"\""),
      with_member("host", "17"),
      with_member("mode", "\"both\""),
      with_member("heartbeat_ns", "0"),
      with_member("stale_after_ns", "-5"),
      with_member("start_time", "-3"),
      with_member("acquired_at", "\"yesterday\""),
      with_member("acquired_at", "\"2026-13-01T00:00:00.000000000Z\""),
      with_member("token", "\"xyz\""),
      with_member("command", "null"),
  };
  for (const std::string& content : bad) {
    BOOST_TEST(!parse_owner_record(content).has_value(), "accepted: " << content.substr(0, 200));
  }
  // The checker itself: a valid edit with its check recomputed is accepted.
  BOOST_TEST(parse_owner_record(with_member("pid", "4194304")).has_value());
}

BOOST_AUTO_TEST_CASE(a_record_whose_check_does_not_match_is_unknown) {
  std::string good = format_owner_record(sample_record());
  // A torn write: the pid of one record, the rest of another.
  const auto at = good.find("\"pid\":") + 6;
  good[at] = good[at] == '9' ? '8' : '9';
  BOOST_TEST(!parse_owner_record(good).has_value());
}

BOOST_AUTO_TEST_CASE(random_and_binary_content_never_crashes_the_reader) {
  std::mt19937 random(42);
  const std::string good = format_owner_record(sample_record());
  for (int round = 0; round < 2000; ++round) {
    std::string content = good;
    const int flips = 1 + static_cast<int>(random() % 8);
    for (int i = 0; i < flips; ++i) content[random() % content.size()] = static_cast<char>(random());
    const auto record = parse_owner_record(content);
    // Whatever survives its check is a well-formed record.
    if (record) BOOST_TEST((record->pid > 0 && record->pid <= (1 << 22)));
    std::string noise(random() % 6000, '\0');
    for (char& c : noise) c = static_cast<char>(random());
    BOOST_TEST(!parse_owner_record(noise).has_value());
  }
}

BOOST_FIXTURE_TEST_CASE(garbage_in_the_sidecar_does_not_stop_acquisition, RecordFixture) {
  for (const std::string& content : {std::string(), std::string("\0\0\xff\x01", 4),
                                     std::string(100000, 'x'), std::string("{\"pid\":")}) {
    write_file(sidecar, content);
    BOOST_TEST(!read_owner_record(pack).has_value());
    PackLockHold hold = lock.acquire(Mode::exclusive, 5s);
    BOOST_TEST(hold.held());
    const auto record = read_owner_record(pack);
    BOOST_REQUIRE(record.has_value());
    BOOST_TEST(record->pid == ::getpid());
  }
}

BOOST_FIXTURE_TEST_CASE(a_failed_second_open_leaves_the_record_byte_identical, RecordFixture) {
  PackLockHold hold = lock.acquire();
  const std::string before = read_file(sidecar);
  BOOST_REQUIRE(!before.empty());
  std::error_code ec;
  (void)lock.try_acquire(Mode::exclusive, ec);
  BOOST_TEST((ec == errc::busy));
  BOOST_TEST(Process::child({"try", pack.string(), "exclusive"}).exit_code() == kChildBusy);
  { const PackLock again = PackLock::open(pack); }
  BOOST_TEST(read_file(sidecar) == before);
}

BOOST_AUTO_TEST_CASE(reading_a_record_never_follows_a_symlink_or_creates) {
  TempDir dir;
  fs::create_directory(dir / "pack");
  write_file(dir / "victim", format_owner_record(sample_record()));
  fs::create_symlink(dir / "victim", dir / "pack" / ".grex-lock");
  BOOST_TEST(!read_owner_record(dir / "pack").has_value());
  fs::create_directory(dir / "empty");
  BOOST_TEST(!read_owner_record(dir / "empty").has_value());
  BOOST_TEST(fs::is_empty(dir / "empty"));
}

BOOST_AUTO_TEST_CASE(liveness_tells_reused_pids_dead_holders_and_other_hosts) {
  OwnerRecord record = sample_record();
  BOOST_TEST((liveness_of(record) == OwnerLiveness::alive));

  // A live, unrelated process under the record's pid: pid 1 started at
  // another time than this process.
  record.pid = 1;
  BOOST_TEST((liveness_of(record) == OwnerLiveness::pid_reused));

  // A process that has exited and been reaped.
  const pid_t child = ::fork();
  BOOST_REQUIRE(child >= 0);
  if (child == 0) ::_exit(0);
  BOOST_REQUIRE(::waitpid(child, nullptr, 0) == child);
  record = sample_record();
  record.pid = child;
  BOOST_TEST((liveness_of(record) == OwnerLiveness::dead));

  // Our own pid, but written on another host: nothing can be told here.
  record = sample_record();
  record.host = record.host + "-elsewhere";
  BOOST_TEST((liveness_of(record) == OwnerLiveness::other_host));
  record = sample_record();
  record.boot_id = "00000000-0000-0000-0000-000000000000";
  BOOST_TEST((liveness_of(record) == OwnerLiveness::other_host));
}

BOOST_AUTO_TEST_SUITE_END()
