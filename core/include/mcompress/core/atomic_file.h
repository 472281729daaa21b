#pragma once
// Every output (model files, reports, checkpoint state, exports) is written the same way: to a
// temporary file in the target folder, flushed to disk, then renamed into place, so a reader
// never sees half a file and a crash leaves the previous version intact. One temporary-name
// scheme, ".<name>.tmp-<pid>-<random>", lets a later run tell an interrupted run's leftovers
// (their process is gone) from a live writer's (is_stale_temp_of).

#include <string>
#include <vector>

namespace mcompress {

/// Checks, before any work, that `path` can take an output: its folder exists, is a folder and
/// is writable; whatever is at `path` now (symlinks followed; a dangling one is refused) is a
/// regular file, which only `overwrite` lets be replaced; and it is none of `inputs` (compared
/// as files, so "dir/./m.h5", another spelling or a hard link of an input is caught). IoError
/// or ConfigError naming the path otherwise.
void check_output_file(const std::string& path, bool overwrite,
                       const std::vector<std::string>& inputs = {});

/// A temporary file that becomes `path` on commit(), removed if never committed. A symlink at
/// `path` is resolved, so its target is what gets replaced; anything but a regular file there
/// (a folder, a FIFO, a device) is refused, as is an existing file unless `overwrite`.
class AtomicFile {
 public:
  AtomicFile(const std::string& path, bool overwrite);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  /// Where to write: the temporary file, created empty with mode 0644.
  const std::string& temp_path() const { return temp_; }
  /// The file that commit() replaces (`path` with symlinks resolved).
  const std::string& target() const { return target_; }
  /// Flushes the temporary file to disk and renames it over the target, durably.
  void commit();

 private:
  std::string path_, target_, temp_;
  bool committed_ = false;
};

/// Replaces `path` with `content` atomically (AtomicFile with overwrite). IoError naming the
/// path when the folder is missing or not writable.
void write_file_atomically(const std::string& path, const std::string& content);

/// True when `entry` (a file name) is a temporary file of target file name `target` whose
/// writing process no longer exists.
bool is_stale_temp_of(const std::string& entry, const std::string& target);

}  // namespace mcompress
