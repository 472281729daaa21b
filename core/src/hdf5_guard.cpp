#include "hdf5_guard.h"

namespace mcompress::hdf5_guard {
namespace {

// Closes an HDF5 id at scope exit.
struct Closer {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Closer() {
    if (id >= 0) close(id);
  }
};

}  // namespace

std::string link_problem(hid_t loc, const char* name) {
  if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) return "";
  H5L_info_t info;
  if (H5Lget_info(loc, name, &info, H5P_DEFAULT) < 0) return "its link cannot be read";
  switch (info.type) {
    case H5L_TYPE_HARD:
      return "";
    case H5L_TYPE_SOFT:
      return "is a soft link; a model or data file holds its objects directly";
    case H5L_TYPE_EXTERNAL:
      return "is an external link into another file; the file itself is the only thing read";
    default:
      return "is a user-defined link; a model or data file holds its objects directly";
  }
}

std::string storage_problem(hid_t dataset) {
  const Closer plist{H5Dget_create_plist(dataset), H5Pclose};
  if (plist.id < 0) return "its creation properties cannot be read";
  if (H5Pget_layout(plist.id) == H5D_VIRTUAL) {
    return "is a virtual dataset (its bytes live in other files); refused";
  }
  const int external = H5Pget_external_count(plist.id);
  if (external != 0) return "keeps its bytes in external files; refused";
  return "";
}

std::string size_problem(hid_t dataset, uint64_t max_ratio) {
  const Closer space{H5Dget_space(dataset), H5Sclose};
  const Closer type{H5Dget_type(dataset), H5Tclose};
  const Closer plist{H5Dget_create_plist(dataset), H5Pclose};
  if (space.id < 0 || type.id < 0 || plist.id < 0) return "its space or type cannot be read";
  const hssize_t points = H5Sget_simple_extent_npoints(space.id);
  const size_t element = H5Tget_size(type.id);
  if (points < 0 || element == 0) return "its size cannot be read";
  uint64_t declared = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(points), uint64_t{element}, &declared)) {
    return "declares more bytes than fit in 64 bits";
  }
  const uint64_t stored = H5Dget_storage_size(dataset);
  const bool filtered = H5Pget_nfilters(plist.id) > 0;
  const uint64_t backed = filtered ? stored * max_ratio + kSizeSlack : stored;
  if (declared <= backed) return "";
  return "declares " + std::to_string(declared) + " bytes but stores " + std::to_string(stored) +
         (stored == 0 ? " (it was never written)"
          : filtered
              ? " (more than " + std::to_string(max_ratio) + "x compression is not plausible)"
              : "");
}

std::string contents_problem(hid_t dataset, uint64_t max_ratio) {
  std::string problem = storage_problem(dataset);
  if (problem.empty()) problem = size_problem(dataset, max_ratio);
  return problem;
}

}  // namespace mcompress::hdf5_guard
