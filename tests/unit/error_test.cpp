// The error model: packlock's category, its portable equivalents, the
// exception's message, and errno kept for OS failures.

#include <cerrno>

#include <boost/test/unit_test.hpp>

#include <packlock/packlock.hpp>

#include "support.hpp"

using namespace packlock;
using namespace packlock::test;

BOOST_AUTO_TEST_SUITE(error)

BOOST_AUTO_TEST_CASE(codes_have_their_own_category_and_messages) {
  const std::error_code busy = errc::busy;
  BOOST_TEST(busy.category().name() == std::string("packlock"));
  BOOST_TEST(busy.message() == "lock is busy");
  BOOST_TEST(std::error_code(errc::lock_unsuccessful).message() == "store is locked");
  BOOST_TEST(std::error_code(errc::unlock_unsuccessful).message() == "could not unlock store");
  for (int value = 1; value <= static_cast<int>(errc::not_open); ++value) {
    BOOST_TEST(category().message(value) != "unknown packlock error");
  }
}

BOOST_AUTO_TEST_CASE(codes_compare_with_portable_conditions) {
  BOOST_TEST((std::error_code(errc::cancelled) == std::errc::operation_canceled));
  BOOST_TEST((std::error_code(errc::timeout) == std::errc::timed_out));
  BOOST_TEST((std::error_code(errc::busy) == std::errc::resource_unavailable_try_again));
  BOOST_TEST((std::error_code(errc::busy) != std::errc::operation_canceled));
  BOOST_TEST((std::error_code(errc::not_held) != std::errc::operation_canceled));
}

BOOST_AUTO_TEST_CASE(exception_names_verb_path_and_cause) {
  const Error error(errc::busy, "lock", "/srv/pack/.grex-lock");
  BOOST_TEST(std::string(error.what()) == "lock /srv/pack/.grex-lock: lock is busy");
  BOOST_TEST((error.code() == errc::busy));
  BOOST_TEST(error.path() == "/srv/pack/.grex-lock");
  const std::system_error& as_system_error = error;
  BOOST_TEST((as_system_error.code() == errc::busy));
}

BOOST_AUTO_TEST_CASE(os_errors_keep_their_errno_and_name_the_path) {
  TempDir dir;
  write_file(dir / "file", "not a directory");
  std::error_code ec;
  PackLock::open(dir / "file", ec);
  BOOST_TEST(ec.value() == ENOTDIR);
  BOOST_TEST((ec.category() == std::system_category()));
  try {
    PackLock::open(dir / "file" / "sub");
    BOOST_FAIL("open under a regular file must throw");
  } catch (const Error& e) {
    BOOST_TEST(e.code().value() == ENOTDIR);
    BOOST_TEST(std::string(e.what()).find((dir / "file" / "sub").string()) != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(a_pack_lock_that_is_not_open_says_so) {
  const PackLock lock;
  std::error_code ec;
  BOOST_TEST(!lock.try_acquire(Mode::exclusive, ec).held());
  BOOST_TEST((ec == errc::not_open));
  BOOST_CHECK_THROW(lock.acquire(), Error);
}

BOOST_AUTO_TEST_SUITE_END()
