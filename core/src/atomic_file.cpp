#include "mcompress/core/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "mcompress/core/error.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

void fsync_path(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

fs::path folder_of(const fs::path& path) {
  return path.has_parent_path() ? path.parent_path() : fs::path(".");
}

const char* kind_of(const fs::file_status& status) {
  switch (status.type()) {
    case fs::file_type::directory:
      return "a folder";
    case fs::file_type::fifo:
      return "a FIFO";
    case fs::file_type::character:
      return "a character device";
    case fs::file_type::block:
      return "a block device";
    case fs::file_type::socket:
      return "a socket";
    default:
      return "not a regular file";
  }
}

// `path` with a symlink at it resolved to what it points to (relative to its folder).
// IoError for a dangling or looping link: it would be replaced by a file, not followed.
fs::path resolve_target(const std::string& path) {
  std::error_code ec;
  fs::path p(path);
  if (!fs::is_symlink(fs::symlink_status(p, ec))) return p;
  fs::path resolved = fs::weakly_canonical(p, ec);
  MCOMPRESS_CHECK(!ec, IoError, "output '", path,
                  "' is a symbolic link that cannot be resolved: ", ec.message());
  MCOMPRESS_CHECK(fs::exists(fs::status(resolved, ec)), IoError, "output '", path,
                  "' is a dangling symbolic link (to '", resolved.string(), "')");
  return resolved;
}

// What is at `target` may be replaced by a regular file: nothing, or a regular file and
// `overwrite`.
void check_replaceable(const std::string& path, const fs::path& target, bool overwrite) {
  std::error_code ec;
  const auto status = fs::status(target, ec);
  if (!fs::exists(status)) return;
  MCOMPRESS_CHECK(fs::is_regular_file(status), IoError, "output '", path, "' is ", kind_of(status),
                  "; only a regular file can be replaced");
  MCOMPRESS_CHECK(overwrite, IoError, "output '", path,
                  "': file exists; pass --force to overwrite it");
}

std::string temp_prefix(const fs::path& target) {
  return "." + target.filename().string() + ".tmp-";
}

}  // namespace

void check_output_file(const std::string& path, bool overwrite,
                       const std::vector<std::string>& inputs) {
  MCOMPRESS_CHECK(!path.empty(), ConfigError, "the output path is empty");
  const fs::path target = resolve_target(path);
  const fs::path folder = fs::absolute(folder_of(target));
  std::error_code ec;
  const auto folder_status = fs::status(folder, ec);
  MCOMPRESS_CHECK(fs::exists(folder_status), IoError, "output folder '", folder.string(),
                  "' does not exist");
  MCOMPRESS_CHECK(fs::is_directory(folder_status), IoError, "output folder '", folder.string(),
                  "' is not a folder");
  for (const auto& input : inputs) {
    if (input.empty()) continue;
    // By identity (another spelling, a hard link), or by name when neither exists yet.
    std::error_code same_ec;
    const bool same =
        fs::equivalent(target, input, same_ec) ||
        fs::absolute(target).lexically_normal() == fs::absolute(input).lexically_normal();
    MCOMPRESS_CHECK(!same, ConfigError, "output '", path, "' is the input '", input,
                    "' (the same file); write somewhere else");
  }
  check_replaceable(path, target, overwrite);
  // A real file, not access(2): that says yes to root for a 0555 folder and to pseudo file
  // systems like /proc, where the save would then fail only after the whole run.
  std::string probe = (folder / ".mcompress-probe-XXXXXX").string();
  const int fd = ::mkstemp(probe.data());
  const int error = errno;
  MCOMPRESS_CHECK(fd >= 0, IoError, "output folder '", folder.string(),
                  "' is not writable (creating a file in it fails: ", std::strerror(error), ")");
  ::close(fd);
  ::unlink(probe.c_str());
}

AtomicFile::AtomicFile(const std::string& path, bool overwrite) : path_(path) {
  MCOMPRESS_CHECK(!path.empty(), IoError, "cannot write to an empty path");
  const fs::path target = resolve_target(path);
  target_ = target.string();
  const fs::path folder = folder_of(target);
  std::error_code ec;
  const auto folder_status = fs::status(folder, ec);
  MCOMPRESS_CHECK(fs::exists(folder_status), IoError, path, ": cannot write, the folder '",
                  folder.string(), "' does not exist");
  MCOMPRESS_CHECK(fs::is_directory(folder_status), IoError, path, ": cannot write, '",
                  folder.string(), "' is not a folder");
  check_replaceable(path, target, overwrite);
  temp_ = (folder / (temp_prefix(target) + std::to_string(::getpid()) + "-XXXXXX")).string();
  const int fd = ::mkstemp(temp_.data());
  const int error = errno;
  if (fd < 0) {
    temp_.clear();
    throw IoError(path + ": cannot create a temporary file in '" + folder.string() +
                  "': " + std::strerror(error));
  }
  ::fchmod(fd, 0644);  // mkstemp makes 0600; outputs are meant to be read
  ::close(fd);
}

AtomicFile::~AtomicFile() {
  if (!committed_ && !temp_.empty()) ::unlink(temp_.c_str());
}

void AtomicFile::commit() {
  fsync_path(temp_, O_RDONLY);
  if (std::rename(temp_.c_str(), target_.c_str()) != 0) {
    throw IoError(path_ + ": cannot rename the temporary file '" + temp_ +
                  "' into place: " + std::strerror(errno));
  }
  committed_ = true;
  fsync_path(folder_of(fs::path(target_)).string(), O_RDONLY | O_DIRECTORY);  // a durable rename
}

void write_file_atomically(const std::string& path, const std::string& content) {
  AtomicFile file(path, /*overwrite=*/true);
  const int fd = ::open(file.temp_path().c_str(), O_WRONLY | O_TRUNC);
  MCOMPRESS_CHECK(fd >= 0, IoError, path, ": cannot open '", file.temp_path(),
                  "': ", std::strerror(errno));
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      throw IoError(path + ": cannot write: " + why);
    }
    written += static_cast<size_t>(n);
  }
  ::close(fd);
  file.commit();
}

bool is_stale_temp_of(const std::string& entry, const std::string& target) {
  const std::string prefix = temp_prefix(fs::path(target));
  if (entry.rfind(prefix, 0) != 0) return false;
  const std::string rest = entry.substr(prefix.size());
  const size_t dash = rest.find('-');
  if (dash == 0 || dash == std::string::npos || dash > 9) return false;
  const std::string pid = rest.substr(0, dash);
  if (pid.find_first_not_of("0123456789") != std::string::npos) return false;
  if (rest.size() != dash + 7) return false;  // mkstemp's six characters
  return ::kill(static_cast<pid_t>(std::stol(pid)), 0) != 0 && errno == ESRCH;
}

}  // namespace mcompress
