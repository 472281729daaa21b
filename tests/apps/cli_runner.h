#pragma once
// Runs the mcompress binary of this build (MCOMPRESS_CLI) from the apps tests.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>

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

/// How a run under limits ended.
struct LimitedResult : CliResult {
  double seconds = 0;
  int64_t max_rss_bytes = 0;  // the process's peak resident memory
  bool timed_out = false;     // killed at the time limit
};

/// Runs `mcompress ARGS` (through the shell, which execs it) with its address space limited to
/// `address_space` bytes and killed after `timeout_s` seconds; output, status, time and peak
/// memory. The address-space limit makes a runaway allocation fail fast instead of swapping.
inline LimitedResult run_cli_limited(const std::string& args, double timeout_s,
                                     int64_t address_space) {
  LimitedResult r;
  int fds[2];
  if (::pipe(fds) != 0) return r;
  const std::string command = std::string("exec ") + MCOMPRESS_CLI + " " + args;
  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    const rlimit limit{static_cast<rlim_t>(address_space), static_cast<rlim_t>(address_space)};
    ::setrlimit(RLIMIT_AS, &limit);
    ::execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  const auto deadline = start + std::chrono::duration<double>(timeout_s);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      r.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n <= 0) break;
    r.out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  rusage usage{};
  ::wait4(pid, &status, 0, &usage);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.max_rss_bytes = static_cast<int64_t>(usage.ru_maxrss) * 1024;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
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
