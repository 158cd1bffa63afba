// The test binary. Run with `--child ROLE ARGS...` it is instead a second
// process for a multi-process test (see support.hpp); otherwise Boost.Test.

#include <cstring>

#include <boost/test/unit_test.hpp>

#include "support.hpp"

bool init_unit_test() { return true; }

int main(int argc, char** argv) {
  if (argc >= 3 && std::strcmp(argv[1], "--child") == 0) {
    return packlock::test::child_main(argc - 2, argv + 2);
  }
  return boost::unit_test::unit_test_main(&init_unit_test, argc, argv);
}
