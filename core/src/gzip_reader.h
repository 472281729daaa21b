#pragma once
// A small RAII reader over zlib's gz* API: reads gzipped or plain files alike (zlib looks at
// the content for the 1f 8b magic) and turns every short read or stream error into a
// FormatError naming the file, so a truncated download never passes as data.

#include "mcompress/core/error.h"

#include <zlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace mcompress::detail {

/// Sequential reader of a possibly gzipped file. `context` prefixes every message
/// (e.g. "load_idx").
class GzipReader {
 public:
  GzipReader(const std::string& path, std::string context)
      : path_(path), context_(std::move(context)) {
    std::error_code ec;
    const auto status = std::filesystem::status(path, ec);
    MCOMPRESS_CHECK(std::filesystem::exists(status), IoError, context_, ": cannot open '", path,
                    "': no such file");
    // gzopen happily opens a directory and only fails on the first read.
    MCOMPRESS_CHECK(std::filesystem::is_regular_file(status), IoError, context_, ": cannot open '",
                    path, "': not a regular file");
    errno = 0;
    file_ = gzopen(path.c_str(), "rb");
    if (file_ == nullptr) {
      const int err = errno;
      throw IoError(concat(context_, ": cannot open '", path,
                           "': ", err != 0 ? std::strerror(err) : "out of memory"));
    }
    // Fewer, larger reads than zlib's 8 KiB default for the multi-megabyte data files.
    gzbuffer(file_, 1 << 17);
  }
  ~GzipReader() {
    if (file_ != nullptr) gzclose(file_);
  }
  GzipReader(const GzipReader&) = delete;
  GzipReader& operator=(const GzipReader&) = delete;

  const std::string& path() const { return path_; }

  /// True when the content is gzip, false for a plain file (valid after the first read).
  bool is_gzip() const { return gzdirect(file_) == 0; }

  /// Reads up to `n` bytes into `dst`; returns how many were read (less at the end of the
  /// data or where a gzip stream is cut short). Corrupt gzip data throws FormatError.
  size_t read_some(void* dst, size_t n) {
    size_t total = 0;
    auto* out = static_cast<unsigned char*>(dst);
    while (total < n) {
      // gzread takes an unsigned length and returns an int.
      const unsigned chunk = static_cast<unsigned>(std::min<size_t>(n - total, 1u << 30));
      const int got = gzread(file_, out + total, chunk);
      if (got < 0) throw_stream_error();
      total += static_cast<size_t>(got);
      if (static_cast<unsigned>(got) < chunk) break;
    }
    int errnum = Z_OK;
    gzerror(file_, &errnum);
    // Z_BUF_ERROR is zlib's "unexpected end of file": reported by the callers as truncation.
    if (errnum != Z_OK && errnum != Z_BUF_ERROR) throw_stream_error();
    return total;
  }

  /// Reads exactly `n` bytes of `what`; FormatError "truncated" when fewer are there.
  void read_exact(void* dst, size_t n, const std::string& what) {
    const size_t got = read_some(dst, n);
    if (got < n) throw_truncated(n, what, got);
  }

  /// Reads `n` bytes of `what` into a fresh buffer. The buffer grows with the data actually
  /// read, so a corrupt header that declares terabytes fails as "truncated" instead of
  /// allocating them up front.
  std::vector<uint8_t> read_buffer(uint64_t n, const std::string& what) {
    constexpr uint64_t kStep = uint64_t{1} << 24;
    std::vector<uint8_t> buffer;
    // A plain file's remaining size is known, so it is read in one go; a gzip stream grows
    // its buffer geometrically.
    buffer.reserve(static_cast<size_t>(std::min(n, is_gzip() ? kStep : plain_remaining())));
    uint64_t done = 0;
    while (done < n) {
      const uint64_t want = std::min(n - done, std::max(kStep, done));
      buffer.resize(static_cast<size_t>(done + want));
      const size_t got = read_some(buffer.data() + done, static_cast<size_t>(want));
      done += got;
      if (got < want) throw_truncated(n, what, done);
    }
    return buffer;
  }

  /// Checks that nothing follows `what` and, for gzip, that the stream ends cleanly (zlib
  /// checks the trailer and CRC only once it reads past the last data byte).
  void expect_end(const std::string& what) {
    unsigned char extra[256];
    const size_t got = read_some(extra, sizeof extra);
    if (got > 0) {
      throw FormatError(concat(context_, ": '", path_, "' has ",
                               got == sizeof extra ? "at least " : "", got,
                               " unexpected bytes after ", what));
    }
    int errnum = Z_OK;
    gzerror(file_, &errnum);
    if (errnum != Z_OK) {
      throw FormatError(concat(context_, ": '", path_, "' is truncated: the gzip stream ends ",
                               "before its trailer (gzip: ", zlib_message(), ")"));
    }
  }

 private:
  uint64_t plain_remaining() const {
    std::error_code ec;
    const uint64_t size = std::filesystem::file_size(path_, ec);
    const z_off_t pos = gzoffset(file_);
    if (ec || pos < 0 || static_cast<uint64_t>(pos) > size) return 0;
    return size - static_cast<uint64_t>(pos);
  }

  [[noreturn]] void throw_truncated(uint64_t expected, const std::string& what,
                                    uint64_t got) const {
    std::string note;
    if (is_gzip()) {
      int errnum = Z_OK;
      gzerror(file_, &errnum);
      note = errnum == Z_OK ? std::string(" (gzip stream ends early)")
                            : concat(" (gzip: ", zlib_message(), ")");
    }
    throw FormatError(concat(context_, ": '", path_, "' is truncated: expected ", expected,
                             " bytes of ", what, ", got ", got, note));
  }

  /// zlib's last error text without the "<path>: " it puts in front.
  std::string zlib_message() const {
    int errnum = Z_OK;
    std::string msg = gzerror(file_, &errnum);
    const std::string prefix = path_ + ": ";
    if (msg.compare(0, prefix.size(), prefix) == 0) msg.erase(0, prefix.size());
    return msg;
  }

  [[noreturn]] void throw_stream_error() const {
    int errnum = Z_OK;
    gzerror(file_, &errnum);
    if (errnum == Z_ERRNO) {
      throw IoError(concat(context_, ": cannot read '", path_, "': ", std::strerror(errno)));
    }
    throw FormatError(concat(context_, ": '", path_,
                             "' is not a valid gzip stream (gzip: ", zlib_message(), ")"));
  }

  std::string path_;
  std::string context_;
  gzFile file_ = nullptr;
};

}  // namespace mcompress::detail
