#include "isolated_call.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <exception>
#include <vector>

#include "mcompress/core/error.h"

namespace mcompress::interop {
namespace {

// The child's answer: 'T', rank, sizes, float32 values; or 'E' and an error message.
std::string encode(const at::Tensor& tensor) {
  const at::Tensor t = tensor.detach().to(at::kFloat).contiguous();
  std::string out = "T";
  const int64_t rank = t.dim();
  out.append(reinterpret_cast<const char*>(&rank), sizeof rank);
  for (int64_t d : t.sizes()) out.append(reinterpret_cast<const char*>(&d), sizeof d);
  out.append(reinterpret_cast<const char*>(t.data_ptr<float>()),
             static_cast<size_t>(t.numel()) * sizeof(float));
  return out;
}

at::Tensor decode(const std::string& bytes, const std::string& what) {
  size_t at = 1;
  const auto take = [&](void* dst, size_t n) {
    MCOMPRESS_CHECK(at + n <= bytes.size(), ModelError, what, ": the check's result is cut short");
    std::memcpy(dst, bytes.data() + at, n);
    at += n;
  };
  int64_t rank = 0;
  take(&rank, sizeof rank);
  MCOMPRESS_CHECK(rank >= 0 && rank <= 8, ModelError, what, ": returns a tensor of rank ", rank);
  std::vector<int64_t> sizes(static_cast<size_t>(rank));
  for (auto& d : sizes) take(&d, sizeof d);
  at::Tensor t = at::empty(sizes, at::kFloat);
  take(t.data_ptr<float>(), static_cast<size_t>(t.numel()) * sizeof(float));
  return t;
}

void write_all(int fd, const std::string& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

[[noreturn]] void run_child(const std::function<at::Tensor()>& work, int out) {
  const int null = ::open("/dev/null", O_WRONLY);
  if (null >= 0) {
    ::dup2(null, STDOUT_FILENO);
    ::dup2(null, STDERR_FILENO);
  }
  std::string answer;
  try {
    at::set_num_threads(1);  // the parent's thread pool does not exist in a forked child
    answer = encode(work());
  } catch (const c10::Error& e) {
    answer = "E" + std::string(e.what_without_backtrace());
  } catch (const std::exception& e) {
    answer = "E" + std::string(e.what());
  }
  write_all(out, answer);
  ::_exit(0);  // no atexit handlers or static destructors of the parent's state
}

}  // namespace

at::Tensor run_isolated(const std::function<at::Tensor()>& work, double seconds,
                        const std::string& what) {
  int fds[2];
  MCOMPRESS_CHECK(::pipe2(fds, O_CLOEXEC) == 0, Error, what,
                  ": cannot create a pipe: ", std::strerror(errno));
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    run_child(work, fds[1]);
  }
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    throw Error(what + ": cannot start a process: " + std::strerror(errno));
  }
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
  std::string bytes;
  bool timed_out = false;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) continue;
    char buffer[1 << 16];
    const ssize_t n = ::read(fds[0], buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the child closed its end: done
    bytes.append(buffer, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  MCOMPRESS_CHECK(!timed_out, ModelError, what, ": did not finish within ", seconds,
                  " s (see --forward-timeout); a TorchScript file is code and this one may never "
                  "return");
  MCOMPRESS_CHECK(!WIFSIGNALED(status), ModelError, what, ": crashed (signal ",
                  WIFSIGNALED(status) ? WTERMSIG(status) : 0, ")");
  MCOMPRESS_CHECK(!bytes.empty(), ModelError, what, ": ended without a result");
  if (bytes[0] == 'E') throw ModelError(what + ": " + bytes.substr(1));
  return decode(bytes, what);
}

}  // namespace mcompress::interop
