#include "hdf5_handle.h"

#include <algorithm>
#include <vector>

#include "mcompress/core/error.h"

namespace mcompress::model_file {
namespace {

herr_t collect_error(unsigned, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::vector<std::string>*>(data);
  if (err->desc != nullptr && *err->desc != '\0') {
    std::string desc = err->desc;
    std::replace(desc.begin(), desc.end(), '\n', ' ');  // some descriptions embed a timestamp line
    while (!desc.empty() && desc.back() == ' ') desc.pop_back();
    if (std::find(out->begin(), out->end(), desc) == out->end()) out->push_back(desc);
  }
  return 0;
}

// The HDF5 float type of `format`, derived from `base` (H5T_IEEE_F32LE for the file type,
// H5T_NATIVE_FLOAT for the memory type, so the two are equal on little-endian hosts and HDF5
// copies the bits without converting).
template <typename ErrorT>
Handle half_float_type(const HalfFormat& format, hid_t base, const std::string& path) {
  const std::string what = std::string("cannot create the HDF5 type of ") + format.description;
  Handle type = checked<ErrorT>(H5Tcopy(base), H5Tclose, path, what);
  // Fields first: HDF5 refuses to shrink a float type whose fields would not fit.
  h5_check<ErrorT>(H5Tset_fields(type, format.sign_pos, format.exp_pos, format.exp_size,
                                 format.mant_pos, format.mant_size),
                   path, what);
  h5_check<ErrorT>(H5Tset_size(type, 2), path, what);  // precision 16, offset 0
  h5_check<ErrorT>(H5Tset_ebias(type, format.exp_bias), path, what);
  return type;
}

}  // namespace

// The descriptions on HDF5's current error stack, innermost (the cause) first.
std::string hdf5_error_detail() {
  std::vector<std::string> messages;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &messages);
  if (messages.size() > 4) messages.resize(4);
  return messages.empty() ? std::string("no detail from HDF5") : join(messages, "; ");
}

// Why a read of filtered data failed, from HDF5's error stack: "(Fletcher-32 checksum
// mismatch) (HDF5: ...)" or "(checksum or decompression failure) (HDF5: ...)".
std::string corrupt_data_detail() {
  const std::string detail = hdf5_error_detail();
  const bool checksum = detail.find("Fletcher32") != std::string::npos ||
                        detail.find("checksum") != std::string::npos;
  return std::string("(") +
         (checksum ? "Fletcher-32 checksum mismatch" : "checksum or decompression failure") +
         ") (HDF5: " + detail + ")";
}

std::string describe_path(const std::string& name) { return "'" + name + "'"; }

// Whether a dataset's type is `format` in either byte order (HDF5 swaps bytes on read).
bool is_half_format(hid_t type, const HalfFormat& format) {
  if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 2 || H5Tget_precision(type) != 16 ||
      H5Tget_offset(type) != 0 || H5Tget_norm(type) != H5T_NORM_IMPLIED) {
    return false;
  }
  size_t sign_pos = 0, exp_pos = 0, exp_size = 0, mant_pos = 0, mant_size = 0;
  if (H5Tget_fields(type, &sign_pos, &exp_pos, &exp_size, &mant_pos, &mant_size) < 0) return false;
  return sign_pos == format.sign_pos && exp_pos == format.exp_pos && exp_size == format.exp_size &&
         mant_pos == format.mant_pos && mant_size == format.mant_size &&
         H5Tget_ebias(type) == format.exp_bias;
}

std::string describe_type(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  const char* kind = cls == H5T_FLOAT ? "float" : cls == H5T_INTEGER ? "integer" : "non-numeric";
  return std::to_string(H5Tget_size(type)) + "-byte " + kind;
}

// The HDF5 type of `dtype`: little-endian in the file, native in memory. The 16-bit float
// types are built, so they live in `owner`.
template <typename ErrorT>
hid_t hdf5_type(packed::Dtype dtype, bool file, Handle& owner, const std::string& path) {
  using packed::Dtype;
  switch (dtype) {
    case Dtype::kFloat16:
    case Dtype::kBFloat16:
      owner = half_float_type<ErrorT>(dtype == Dtype::kFloat16 ? kFp16Format : kBf16Format,
                                      file ? H5T_IEEE_F32LE : H5T_NATIVE_FLOAT, path);
      return owner;
    case Dtype::kInt8:
      return file ? H5T_STD_I8LE : H5T_NATIVE_INT8;
    case Dtype::kUInt8:
      return file ? H5T_STD_U8LE : H5T_NATIVE_UINT8;
    case Dtype::kUInt16:
      return file ? H5T_STD_U16LE : H5T_NATIVE_UINT16;
    case Dtype::kUInt32:
      return file ? H5T_STD_U32LE : H5T_NATIVE_UINT32;
    case Dtype::kUInt64:
      return file ? H5T_STD_U64LE : H5T_NATIVE_UINT64;
    case Dtype::kInt32:
      return file ? H5T_STD_I32LE : H5T_NATIVE_INT32;
    case Dtype::kInt64:
      return file ? H5T_STD_I64LE : H5T_NATIVE_INT64;
    case Dtype::kFloat32:
      break;
  }
  return file ? H5T_IEEE_F32LE : H5T_NATIVE_FLOAT;
}

template hid_t hdf5_type<IoError>(packed::Dtype, bool, Handle&, const std::string&);
template hid_t hdf5_type<FormatError>(packed::Dtype, bool, Handle&, const std::string&);

}  // namespace mcompress::model_file
