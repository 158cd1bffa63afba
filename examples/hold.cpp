// Takes the lock of a pack, keeps it for a while, and says what it did.
//
//   packlock-example-hold PACK SECONDS [shared]
//
// Two of these started together on one pack take turns; `flock -n
// PACK/.grex-lock true` fails while either holds an exclusive lock.

#include <unistd.h>

#include <chrono>
#include <iostream>
#include <string>
#include <thread>

#include <packlock/packlock.hpp>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: packlock-example-hold PACK SECONDS [shared]\n";
    return 64;
  }
  const auto mode = argc > 3 && std::string(argv[3]) == "shared" ? packlock::Mode::shared
                                                                  : packlock::Mode::exclusive;
  const std::chrono::duration<double> keep(std::stod(argv[2]));
  try {
    const auto lock = packlock::PackLock::open(argv[1]);
    const auto asked = std::chrono::steady_clock::now();
    packlock::PackLockHold hold = lock.acquire(mode);
    const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - asked);
    std::cout << "pid " << ::getpid() << " holds " << hold.pack().string() << " ("
              << packlock::to_string(mode) << ") after waiting " << waited.count() << " ms"
              << std::endl;
    std::this_thread::sleep_for(keep);
    if (const std::error_code ec = hold.release()) {
      std::cerr << "release " << lock.sidecar().string() << ": " << ec.message() << '\n';
      return 71;
    }
    std::cout << "pid " << ::getpid() << " released " << hold.pack().string() << std::endl;
  } catch (const packlock::Error& e) {
    std::cerr << "packlock-example-hold: " << e.what() << '\n';
    return 71;
  }
  return 0;
}
