#include <packlock/packlock.hpp>

int main(int, char** argv) {
  const auto lock = packlock::PackLock::open(argv[1]);
  packlock::PackLockHold hold = lock.acquire();
  return hold.release() ? 1 : 0;
}
