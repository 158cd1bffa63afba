#include "exit_codes.hpp"

#include <cerrno>

#include <packlock/error.hpp>

namespace packlock::cli {

int exit_code_for(const std::error_code& ec) noexcept {
  if (ec == errc::not_a_regular_file) return kExitCannotCreate;
  if (ec.category() != std::system_category() && ec.category() != std::generic_category()) {
    return kExitOsError;
  }
  switch (ec.value()) {
    case ENOENT:
    case ENOTDIR:
    case ENAMETOOLONG:
    case ELOOP:
      return kExitNoInput;
    case EACCES:
    case EPERM:
      return kExitNoPermission;
    case EROFS:
    case ENOSPC:
    case EDQUOT:
    case EEXIST:
      return kExitCannotCreate;
    default:
      return kExitOsError;
  }
}

}  // namespace packlock::cli
