#pragma once
// Text outputs (reports, checkpoint state) written the way model files are: to a temporary
// file in the target folder, flushed to disk, then renamed into place, so a reader never sees
// half a file and a crash leaves the previous version intact.

#include <string>

namespace mcompress {

/// Replaces `path` with `content` atomically. IoError naming the path when the folder is
/// missing or not writable.
void write_file_atomically(const std::string& path, const std::string& content);

}  // namespace mcompress
