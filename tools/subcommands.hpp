#pragma once
// The subcommands. Each parses its own arguments (those after its name)
// and returns the exit code; only main() exits. A bad command line throws
// UsageError.

#include <string>
#include <vector>

namespace packlock::cli {

int run_main(const std::vector<std::string>& args);
int probe_main(const std::vector<std::string>& args);
int status_main(const std::vector<std::string>& args);

}  // namespace packlock::cli
