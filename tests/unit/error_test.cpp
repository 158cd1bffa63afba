// The error model: packlock's category, its portable equivalents, the
// exception's message, and errno kept for OS failures.

#include <cerrno>
#include <ios>
#include <utility>

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
  for (int value = 1; value <= static_cast<int>(errc::cluster_failed); ++value) {
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

BOOST_AUTO_TEST_CASE(conflicting_options_is_an_invalid_argument) {
  const std::error_code ec = errc::conflicting_options;
  BOOST_TEST(ec.message() == "conflicting lock request options");
  BOOST_TEST((ec == std::errc::invalid_argument));
}

BOOST_AUTO_TEST_CASE(lock_errc_has_the_ext_lock_numbers) {
  BOOST_TEST(static_cast<int>(lock_errc::generic) == 8400);
  BOOST_TEST(static_cast<int>(lock_errc::acquire_failed) == 8401);
  BOOST_TEST(static_cast<int>(lock_errc::release_failed) == 8402);
  BOOST_TEST(static_cast<int>(lock_errc::timeout) == 8403);
  BOOST_TEST(static_cast<int>(lock_errc::not_held) == 8404);
  BOOST_TEST(static_cast<int>(lock_errc::invalid_name) == 8405);
}

BOOST_AUTO_TEST_CASE(lock_errc_is_an_error_code_enum_with_its_own_category) {
  const std::error_code ec = lock_errc::invalid_name;
  BOOST_TEST(ec.value() == 8405);
  BOOST_TEST(ec.category().name() == std::string("packlock.lock"));
  BOOST_TEST((ec.category() == lock_category()));
  BOOST_TEST((ec.category() != category()));
  BOOST_TEST(ec.message() == "invalid lock name");
  for (int value = 8400; value <= 8405; ++value) {
    BOOST_TEST(lock_category().message(value) != "unknown lock error");
  }
  BOOST_TEST((std::error_code(lock_errc::timeout) == std::errc::timed_out));
  BOOST_TEST((std::error_code(lock_errc::timeout) == lock_errc::timeout));
  BOOST_TEST((std::error_code(lock_errc::timeout) != lock_errc::not_held));
}

BOOST_AUTO_TEST_CASE(packlock_codes_compare_equal_to_their_lock_errc) {
  const std::pair<errc, lock_errc> expected[] = {
      {errc::invalid_name, lock_errc::invalid_name},
      {errc::timeout, lock_errc::timeout},
      {errc::not_held, lock_errc::not_held},
      {errc::hijacked, lock_errc::not_held},
      {errc::unlock_unsuccessful, lock_errc::release_failed},
      {errc::busy, lock_errc::acquire_failed},
      {errc::cancelled, lock_errc::acquire_failed},
      {errc::not_a_regular_file, lock_errc::acquire_failed},
      {errc::not_open, lock_errc::acquire_failed},
      {errc::lock_unsuccessful, lock_errc::acquire_failed},
      {errc::conflicting_options, lock_errc::generic},
      {errc::wait_signal_taken, lock_errc::acquire_failed},
      {errc::dangling_pack_link, lock_errc::acquire_failed},
      {errc::sidecar_unsupported, lock_errc::acquire_failed},
      {errc::cluster_unavailable, lock_errc::acquire_failed},
      {errc::cluster_refused, lock_errc::acquire_failed},
      {errc::cluster_failed, lock_errc::acquire_failed},
  };
  const lock_errc all[] = {lock_errc::generic, lock_errc::acquire_failed, lock_errc::release_failed,
                           lock_errc::timeout, lock_errc::not_held,       lock_errc::invalid_name};
  for (const auto& [code, lock_code] : expected) {
    const std::error_code ec = code;
    BOOST_TEST_CONTEXT(ec.message()) {
      BOOST_TEST((lock_errc_of(ec) == lock_code));
      // Exactly one lock_errc, from either side, as code or as condition.
      for (const lock_errc other : all) {
        BOOST_TEST((ec == other) == (other == lock_code));
        BOOST_TEST((other == ec) == (other == lock_code));
        BOOST_TEST((ec != other) == (other != lock_code));
        BOOST_TEST((ec == make_error_condition(other)) == (other == lock_code));
      }
      // Still packlock's own code.
      BOOST_TEST((ec == code));
      BOOST_TEST((ec.category() == category()));
    }
  }
}

BOOST_AUTO_TEST_CASE(os_errors_are_acquire_failures_and_keep_their_errno) {
  const std::error_code denied(EACCES, std::system_category());
  BOOST_TEST((denied == lock_errc::acquire_failed));
  BOOST_TEST((denied != lock_errc::generic));
  const std::error_code missing = std::make_error_code(std::errc::no_such_file_or_directory);
  BOOST_TEST((missing == lock_errc::acquire_failed));
  BOOST_TEST(denied.value() == EACCES);
  BOOST_TEST((lock_errc_of(std::error_code()) == lock_errc{}));
  BOOST_TEST((std::error_code() != lock_errc::generic));
  // Another library's category: generic.
  BOOST_TEST((std::make_error_code(std::io_errc::stream) == lock_errc::generic));
}

BOOST_AUTO_TEST_SUITE_END()
