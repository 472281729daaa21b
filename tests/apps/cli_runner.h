#pragma once
// Runs the mcompress binary of this build (MCOMPRESS_CLI) from the apps tests.

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

namespace mcompress::testing {

struct CliResult {
  int code = -1;    // exit status; -1 when the process did not exit normally
  std::string out;  // stdout and stderr together
};

/// Runs `mcompress ARGS` through the shell and collects its output and exit status.
inline CliResult run_cli(const std::string& args) {
  const std::string command = std::string(MCOMPRESS_CLI) + " " + args + " 2>&1";
  CliResult r;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return r;
  std::array<char, 4096> buffer{};
  size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), pipe)) > 0)
    r.out.append(buffer.data(), n);
  const int status = ::pclose(pipe);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

}  // namespace mcompress::testing
