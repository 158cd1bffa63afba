#pragma once
// The numeric error codes of named locks (ext_lock's LockErrorCode), as an
// error code enum with a category of its own.
//
// LockManager reports packlock's own codes (packlock::errc) and OS errors
// with their errno, so nothing is lost; every such error also belongs to
// exactly one lock_errc, and compares equal to it:
//
//   if (ec == packlock::lock_errc::timeout) ...   // ec is errc::timeout
//   int code = static_cast<int>(packlock::lock_errc_of(ec));  // 8403
//
//   lock_errc        the errors that compare equal to it
//   invalid_name     errc::invalid_name
//   timeout          errc::timeout
//   not_held         errc::not_held, errc::hijacked (the lock was taken away)
//   release_failed   errc::unlock_unsuccessful
//   acquire_failed   errc::busy, errc::cancelled, errc::not_a_regular_file,
//                    errc::not_open, errc::lock_unsuccessful, and every OS
//                    error (std::system_category, std::generic_category)
//   generic          errc::conflicting_options and everything else
//
// The comparison goes through lock_category().equivalent(), so it also
// holds for std::error_condition comparisons made with
// make_error_condition(lock_errc). A code made from a lock_errc itself
// (std::error_code(lock_errc::timeout)) compares equal to that lock_errc.

#include <system_error>
#include <type_traits>

namespace packlock {

enum class lock_errc {
  generic = 8400,
  acquire_failed = 8401,
  release_failed = 8402,
  timeout = 8403,
  not_held = 8404,
  invalid_name = 8405,
};

// Named "packlock.lock". Thread-safe (stateless).
const std::error_category& lock_category() noexcept;

inline std::error_code make_error_code(lock_errc e) noexcept {
  return {static_cast<int>(e), lock_category()};
}

inline std::error_condition make_error_condition(lock_errc e) noexcept {
  return {static_cast<int>(e), lock_category()};
}

// The lock_errc `ec` belongs to (table above); lock_errc{} (0) when `ec`
// is no error.
lock_errc lock_errc_of(const std::error_code& ec) noexcept;

// `ec == lock_errc::x` asks whether ec belongs to x (table above), rather
// than comparing category and value as error_code == error_code would.
inline bool operator==(const std::error_code& ec, lock_errc e) noexcept {
  return ec == make_error_condition(e);
}

}  // namespace packlock

template <>
struct std::is_error_code_enum<packlock::lock_errc> : std::true_type {};
