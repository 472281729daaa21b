#pragma once
// Runs the mcompress binary of this build (MCOMPRESS_CLI) from the apps tests.

#include <fcntl.h>
#include <spawn.h>
#include <sys/types.h>

#include <string>
#include <vector>

#include "test_support.h"

extern char** environ;

namespace mcompress::testing {

using CliResult = ShellResult;

/// Runs `mcompress ARGS` through the shell and collects its output and exit status.
inline CliResult run_cli(const std::string& args) {
  return run_shell(std::string(MCOMPRESS_CLI) + " " + args);
}

/// Starts `mcompress ARGS` without waiting, stdout and stderr to the file `log`; the child's
/// pid, or -1 when it cannot be started. For tests that kill, stop or race processes.
inline pid_t spawn_cli(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> all{MCOMPRESS_CLI};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

}  // namespace mcompress::testing
