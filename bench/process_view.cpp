// What the measurements read of processes: threads of this one, and lock
// requests the kernel has blocked (/proc/locks), to know that every waiter
// is parked before a measurement starts.

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "figure.hpp"

namespace packlock::bench {

int thread_count() {
  int count = 0;
  for ([[maybe_unused]] const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    ++count;
  }
  return count;
}

// A line is "N: FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF", with "->"
// after "N:" for a request the kernel has blocked.
int blocked_requests(ino_t inode, pid_t pid) {
  std::ifstream table("/proc/locks");
  int count = 0;
  for (std::string line; std::getline(table, line);) {
    std::istringstream fields(line);
    std::string number, arrow, kind, advisory, access, device;
    long owner = 0;
    fields >> number >> arrow;
    if (arrow != "->") continue;
    fields >> kind >> advisory >> access >> owner >> device;
    const auto colon = device.rfind(':');
    if (kind != "FLOCK" || colon == std::string::npos) continue;
    if (device.substr(colon + 1) != std::to_string(inode)) continue;
    if (pid == 0 || owner == pid) ++count;
  }
  return count;
}

bool await_blocked_requests(ino_t inode, pid_t pid, int count) {
  const double give_up = now_ns() + 120e9;
  while (blocked_requests(inode, pid) < count) {
    if (now_ns() > give_up) return false;
    ::usleep(2000);  // polling the kernel's table: it has no notification
  }
  return true;
}

}  // namespace packlock::bench
