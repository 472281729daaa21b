#include "mcompress/core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "mcompress/core/error.h"

namespace mcompress {
namespace {

void sync_and_close(int fd) {
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomically(const std::string& path, const std::string& content) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  MCOMPRESS_CHECK(fs::is_directory(folder), IoError, path, ": folder '", folder.string(),
                  "' does not exist");
  std::string temp = (folder / ("." + target.filename().string() + ".tmp-XXXXXX")).string();
  const int fd = ::mkstemp(temp.data());
  MCOMPRESS_CHECK(fd >= 0, IoError, path, ": cannot create a temporary file in '", folder.string(),
                  "': ", std::strerror(errno));
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string why = std::strerror(errno);
      ::close(fd);
      std::remove(temp.c_str());
      throw IoError(path + ": cannot write: " + why);
    }
    written += static_cast<size_t>(n);
  }
  ::fchmod(fd, 0644);  // mkstemp makes 0600; reports are meant to be read
  sync_and_close(fd);
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(temp.c_str());
    throw IoError(path + ": cannot rename the temporary file into place: " + why);
  }
  const int dir = ::open(folder.c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) sync_and_close(dir);  // makes the rename durable
}

}  // namespace mcompress
