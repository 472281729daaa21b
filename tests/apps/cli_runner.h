#pragma once
// Runs the mcompress binary of this build (MCOMPRESS_CLI) from the apps tests.

#include <string>

#include "test_support.h"

namespace mcompress::testing {

using CliResult = ShellResult;

/// Runs `mcompress ARGS` through the shell and collects its output and exit status.
inline CliResult run_cli(const std::string& args) {
  return run_shell(std::string(MCOMPRESS_CLI) + " " + args);
}

}  // namespace mcompress::testing
