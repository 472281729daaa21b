#include "mcompress/core/version.h"

#include <H5public.h>
#include <torch/version.h>

namespace mcompress {

std::string version() { return MCOMPRESS_VERSION; }

std::string version_details() {
  unsigned major = 0, minor = 0, release = 0;
  H5get_libversion(&major, &minor, &release);
  return "mcompress " + version() + " (LibTorch " + TORCH_VERSION + ", HDF5 " +
         std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(release) + ")";
}

}  // namespace mcompress
