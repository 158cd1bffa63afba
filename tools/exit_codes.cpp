#include "exit_codes.hpp"

#include <cerrno>

#include <packlock/error.hpp>

namespace packlock::cli {

int exit_code_for(const std::error_code& ec) noexcept {
  if (ec == errc::not_a_regular_file || ec == errc::sidecar_unsupported) return kExitCannotCreate;
  if (ec == errc::dangling_pack_link) return kExitNoInput;
  if (ec == errc::cluster_unavailable) return kExitUnavailable;
  if (ec == errc::cluster_refused) return kExitNoPermission;
  if (ec.category() != std::system_category() && ec.category() != std::generic_category()) {
    return kExitOsError;
  }
  switch (ec.value()) {
    case ENOENT:
    case ENOTDIR:
    case ELOOP:
      return kExitNoInput;
    case ENAMETOOLONG:
      return kExitUsage;  // the path given is wrong as written
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

std::string cause_of(const std::error_code& ec) {
  if (ec == errc::not_a_regular_file) {
    return "the lock file .grex-lock is not a regular file; packlock will not follow or replace it";
  }
  return ec.message();
}

}  // namespace packlock::cli
