#pragma once
// Shared by the libFuzzer targets: temporary files in RAM and the rule that a typed
// mcompress::Error is the expected way to reject bad input. Anything else escaping a target
// (another exception type, a crash, an ASan report) is a finding: abort() so libFuzzer keeps
// the input as crash-<sha1>.

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>

#include "mcompress/core/error.h"

namespace mcompress::fuzz {

/// A file holding `size` bytes of `data`, removed on destruction. /dev/shm when it exists
/// (HDF5 and zlib need a path; RAM keeps 10^4 runs cheap), else /tmp.
class TempFile {
 public:
  TempFile(const uint8_t* data, size_t size, const char* suffix = "") {
    const char* dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    path_ = std::string(dir) + "/mcompress-fuzz-" + std::to_string(getpid()) + "-" +
            std::to_string(counter_++) + suffix;
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (f == nullptr || (size > 0 && std::fwrite(data, 1, size, f) != size)) {
      std::perror(path_.c_str());
      std::abort();
    }
    std::fclose(f);
  }
  ~TempFile() { std::remove(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  static inline unsigned counter_ = 0;
  std::string path_;
};

/// Runs `body`; an mcompress::Error is the expected rejection, anything else aborts.
template <typename Body>
int run_expecting_typed_errors(const char* target, Body&& body) {
  try {
    body();
  } catch (const mcompress::Error&) {
    // The library said no, with a typed error: the outcome we want for bad input.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: untyped exception escaped (%s): %s\n", target, typeid(e).name(),
                 e.what());
    std::abort();
  } catch (...) {
    std::fprintf(stderr, "%s: non-std exception escaped\n", target);
    std::abort();
  }
  return 0;
}

}  // namespace mcompress::fuzz
