#pragma once
#include <string>

namespace mcompress {
/// "0.1.0"
std::string version();
/// "mcompress 0.1.0 (LibTorch 1.13.1, HDF5 1.10.8)"
std::string version_details();
}  // namespace mcompress
