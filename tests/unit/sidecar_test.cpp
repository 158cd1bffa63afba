// The sidecar: refused unless it is a regular file, never followed or
// truncated, locked only while the path names the locked inode.

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "contention.hpp"
#include "pack.hpp"
#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

namespace {

struct stat stat_of(const fs::path& path) {
  struct stat st {};
  BOOST_REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

void expect_refused(const fs::path& pack) {
  std::error_code ec;
  const PackLock lock = PackLock::open(pack, ec);
  BOOST_TEST((ec == errc::not_a_regular_file), "got " << ec.message());
  BOOST_TEST(!lock.is_open());
  try {
    PackLock::open(pack);
    BOOST_FAIL("open must throw");
  } catch (const Error& e) {
    BOOST_TEST(std::string(e.what()) ==
               "open " + (pack / ".grex-lock").string() + ": not a regular file");
  }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(sidecar)

BOOST_AUTO_TEST_CASE(open_creates_pack_and_sidecar_without_locking) {
  TempDir dir;
  const fs::path pack = dir / "a" / "b";
  const PackLock lock = PackLock::open(pack);
  BOOST_TEST(fs::is_directory(pack));
  BOOST_TEST(fs::is_regular_file(pack / ".grex-lock"));
  BOOST_TEST(lock.pack() == fs::canonical(pack));
  BOOST_TEST(lock.sidecar() == fs::canonical(pack) / ".grex-lock");
  BOOST_TEST(flock_nonblocking(pack / ".grex-lock") == 0);
}

BOOST_AUTO_TEST_CASE(a_symlinked_sidecar_is_refused_and_its_target_untouched) {
  TempDir dir;
  write_file(dir / "victim", "precious");
  const struct stat before = stat_of(dir / "victim");
  fs::create_directory(dir / "pack");
  fs::create_symlink(dir / "victim", dir / "pack" / ".grex-lock");
  expect_refused(dir / "pack");
  // A dangling symlink must not be followed to create its target either.
  fs::create_directory(dir / "pack2");
  fs::create_symlink(dir / "created-through-link", dir / "pack2" / ".grex-lock");
  expect_refused(dir / "pack2");
  BOOST_TEST(!fs::exists(dir / "created-through-link"));

  const struct stat after = stat_of(dir / "victim");
  BOOST_TEST(read_file(dir / "victim") == "precious");
  BOOST_TEST(after.st_mtim.tv_nsec == before.st_mtim.tv_nsec);
  BOOST_TEST(after.st_mtim.tv_sec == before.st_mtim.tv_sec);
  BOOST_TEST(flock_nonblocking(dir / "victim") == 0);
}

BOOST_AUTO_TEST_CASE(a_directory_sidecar_is_refused) {
  TempDir dir;
  fs::create_directories(dir / "pack" / ".grex-lock");
  expect_refused(dir / "pack");
}

BOOST_AUTO_TEST_CASE(a_fifo_sidecar_is_refused_without_hanging) {
  TempDir dir;
  fs::create_directory(dir / "pack");
  BOOST_REQUIRE(::mkfifo((dir / "pack" / ".grex-lock").c_str(), 0666) == 0);
  expect_refused(dir / "pack");
}

// A pack that is a symbolic link to nothing is named as such, and the
// link's target is never created.
BOOST_AUTO_TEST_CASE(a_dangling_pack_link_is_refused_and_nothing_created) {
  TempDir dir;
  fs::create_symlink(dir / "gone" / "pack", dir / "link");
  std::error_code ec;
  (void)PackLock::open(dir / "link", ec);
  BOOST_TEST((ec == errc::dangling_pack_link));
  BOOST_TEST((ec == std::errc::no_such_file_or_directory));
  BOOST_TEST(!fs::exists(dir / "gone"));
  (void)observe(dir / "link", ec);
  BOOST_TEST((ec == errc::dangling_pack_link));
}

// A directory that exists on a filesystem that cannot hold a file.
BOOST_AUTO_TEST_CASE(a_pack_under_proc_cannot_hold_a_sidecar) {
  std::error_code ec;
  (void)PackLock::open("/proc/self", ec);
  BOOST_TEST((ec == errc::sidecar_unsupported), ec.message());
}

BOOST_AUTO_TEST_CASE(a_second_open_leaves_the_holders_content_byte_identical) {
  TempDir dir;
  const PackLock first = PackLock::open(dir / "pack");
  PackLockHold hold = first.acquire();
  const std::string record = "{\"pid\": 1234, \"note\": \"holder's record\"}\n";
  write_file(first.sidecar(), record);
  const PackLock second = PackLock::open(dir / "pack");
  std::error_code ec;
  (void)second.try_acquire(Mode::exclusive, ec);
  BOOST_TEST((ec == errc::busy));
  BOOST_TEST(Process::child({"try", (dir / "pack").string(), "exclusive"}).exit_code() ==
             kChildBusy);
  BOOST_TEST(read_file(first.sidecar()) == record);
}

BOOST_AUTO_TEST_CASE(ghost_lock_on_a_replaced_inode_is_dropped_and_retried) {
  TempDir dir;
  std::error_code ec;
  const auto pack = detail::Pack::open(dir / "pack", {}, ec);
  BOOST_REQUIRE(!ec);
  // The pack keeps the descriptor it opened for the next acquisition.
  const ino_t ghost = stat_of(pack->sidecar_path()).st_ino;
  const int ghost_fd = ::open(pack->sidecar_path().c_str(), O_RDONLY | O_CLOEXEC);
  // Someone replaces the sidecar between our open and our flock.
  write_file(dir / "replacement", "");
  fs::rename(dir / "replacement", pack->sidecar_path());

  detail::ContendRequest once;
  once.may_wait = false;
  const detail::Sidecar sidecar = detail::contend(*pack, once, ec);
  BOOST_TEST(!ec);
  BOOST_REQUIRE(sidecar.fd);
  BOOST_TEST(sidecar.ino != ghost);
  BOOST_TEST(sidecar.ino == stat_of(pack->sidecar_path()).st_ino);
  // The lock on the ghost was dropped, the lock on the path is ours.
  BOOST_TEST(::flock(ghost_fd, LOCK_EX | LOCK_NB) == 0);
  BOOST_TEST(flock_nonblocking(pack->sidecar_path()) == 1);
  ::close(ghost_fd);
}

BOOST_AUTO_TEST_CASE(a_waiter_follows_the_path_when_the_sidecar_is_unlinked) {
  TempDir dir;
  const PackLock lock = PackLock::open(dir / "pack");
  // flock(1) holds the original inode and keeps holding it after the unlink.
  Process holder = Process::flock_holder(lock.sidecar());
  holder.expect_line("locked");
  std::error_code ec;
  PackLockHold hold;
  std::thread waiter([&] { hold = lock.acquire(Mode::exclusive, 20s, ec); });
  // Unlink once the waiter has the old inode open and watched.
  BOOST_REQUIRE(eventually([&] { return waiting_here(lock.pack()); }));
  fs::remove(lock.sidecar());
  waiter.join();
  BOOST_TEST(!ec, ec.message());
  BOOST_TEST(hold.held());
  // The waiter locked the file the path names now, while flock(1) still
  // holds the unlinked one.
  BOOST_TEST(fs::is_regular_file(lock.sidecar()));
  BOOST_TEST(flock_nonblocking(lock.sidecar()) == 1);
  holder.close_stdin();
  BOOST_TEST(holder.exit_code() == 0);
}

BOOST_AUTO_TEST_CASE(a_reader_without_write_access_still_gets_the_lock) {
  if (::geteuid() != 0) return;  // needs root to switch to another user
  TempDir dir;
  fs::permissions(dir.path(), fs::perms(0755));
  const PackLock lock = PackLock::open(dir / "pack");
  fs::permissions(lock.sidecar(), fs::perms(0644));
  const auto as_nobody = child_as_nobody(dir, {"try", (dir / "pack").string(), "exclusive"});
  // nobody may read the sidecar but not write it, nor create files here.
  BOOST_TEST(run(child_as_nobody(dir, {"try", (dir / "other").string(), "exclusive"})) ==
             kChildError);
  BOOST_TEST(run(as_nobody) == kChildOk);
  PackLockHold hold = lock.acquire();
  BOOST_TEST(run(as_nobody) == kChildBusy);
}

BOOST_AUTO_TEST_SUITE_END()
