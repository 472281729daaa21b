// The HDF5 model file, format "mcompress-model" v1. docs/format.md is the specification; keep
// the two in step.
//
// This file uses the HDF5 C API only (through the small RAII Handle below): it needs chunk,
// filter and object-header controls that the C++ wrapper does not expose, and it turns every
// failed call into an mcompress exception itself, so no H5::Exception can escape from here.
// HDF5's automatic error printing is switched off for the duration of each public call; the
// error stack is folded into the exception message instead.

#include "mcompress/core/model_file.h"

#include <ATen/ATen.h>
#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "mcompress/core/error.h"
#include "mcompress/core/version.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

// zlib level 4 compresses float32 weights within ~1% of level 9 at a fraction of the time.
constexpr unsigned kDeflateLevel = 4;
// 256 Ki elements = 1 MiB of float32 per chunk: large enough for deflate, small enough that
// one flipped bit costs one chunk.
constexpr hsize_t kChunkTargetElements = hsize_t{1} << 18;

const std::vector<std::string> kKnownEncodings = {"fp32", "fp16", "bf16", "int8", "codebook"};
const std::vector<std::string> kKnownLayouts = {"dense", "sparse"};
// Values of the root attribute quant_mode; "" is a plain fp32 model.
const std::vector<std::string> kQuantModes = {
    "", "fp16", "bf16", "int8-dynamic", "int8-static", "codebook"};

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

// The 16-bit float types of the fp16 and bf16 encodings, as HDF5 float field positions.
struct HalfFormat {
  Encoding encoding;
  const char* description;
  size_t sign_pos, exp_pos, exp_size, mant_pos, mant_size, exp_bias;
};
// IEEE 754 binary16, which h5py reads as numpy float16.
constexpr HalfFormat kFp16Format{Encoding::kFp16, "IEEE binary16 floats", 15, 10, 5, 0, 10, 15};
// bfloat16: the upper half of an IEEE binary32 bit pattern.
constexpr HalfFormat kBf16Format{Encoding::kBf16, "bfloat16 floats", 15, 7, 8, 0, 7, 127};

const HalfFormat& half_format(Encoding encoding) {
  return encoding == Encoding::kFp16 ? kFp16Format : kBf16Format;
}

// The ATen dtype that holds the stored values of an encoding.
at::ScalarType value_dtype(Encoding encoding) {
  switch (encoding) {
    case Encoding::kFp16:
      return at::kHalf;
    case Encoding::kBf16:
      return at::kBFloat16;
    case Encoding::kInt8:
      return at::kChar;
    case Encoding::kCodebook:
      return at::kByte;
    case Encoding::kFp32:
      break;
  }
  return at::kFloat;
}

const char* dtype_name(Encoding encoding) {
  switch (encoding) {
    case Encoding::kFp16:
      return "float16";
    case Encoding::kBf16:
      return "bfloat16";
    case Encoding::kInt8:
      return "int8";
    case Encoding::kCodebook:
      return "uint8";
    case Encoding::kFp32:
      break;
  }
  return "float32";
}

// Finds the first non-finite value of a float32 tensor: its flat index, or -1.
int64_t first_non_finite(const at::Tensor& tensor, float* value) {
  const float* data = tensor.data_ptr<float>();
  for (int64_t i = 0; i < tensor.numel(); ++i) {
    if (!std::isfinite(data[i])) {
      *value = data[i];
      return i;
    }
  }
  return -1;
}

// A codebook tensor's bits, shared values and codes (docs/format.md §4.8).
template <typename ErrorT>
void check_codebook(const std::string& path, const std::string& name, const QuantizedTensor& q) {
  MCOMPRESS_CHECK(q.bits >= 1 && q.bits <= 8, ErrorT, path, ": tensor '", name,
                  "' (codebook) has bits ", q.bits, ", expected 1 to 8");
  const int64_t capacity = int64_t{1} << q.bits;
  MCOMPRESS_CHECK(
      q.codebook.defined() && q.codebook.dim() == 1 && q.codebook.scalar_type() == at::kFloat,
      ErrorT, path, ": tensor '", name, "' (codebook) needs a one-dimensional float32 codebook");
  MCOMPRESS_CHECK(q.codebook.numel() >= 1 && q.codebook.numel() <= capacity, ErrorT, path,
                  ": tensor '", name, "' (codebook) has ", q.codebook.numel(),
                  " shared values, expected 1 to ", capacity, " (2^bits, bits ", q.bits, ")");
  const at::Tensor book = q.codebook.to(at::kCPU).contiguous();
  float bad = 0.0f;
  const int64_t index = first_non_finite(book, &bad);
  MCOMPRESS_CHECK(index < 0, ErrorT, path, ": tensor '", name, "' (codebook) has shared value ",
                  bad, " at index ", index, ", expected finite values");
  if (q.values.numel() == 0) return;
  const int64_t largest = q.values.max().item<int64_t>();
  MCOMPRESS_CHECK(largest < q.codebook.numel(), ErrorT, path, ": tensor '", name,
                  "' (codebook) has code ", largest, " but only ", q.codebook.numel(),
                  " shared values");
}

// The checks shared by saving (ErrorT = ModelError: the model is inconsistent) and loading
// (ErrorT = FormatError: the file is). `values` etc. are CPU tensors of any dtype here.
template <typename ErrorT>
void check_quantized(const std::string& path, const std::string& name, const QuantizedTensor& q,
                     const std::vector<int64_t>& shape) {
  const std::string enc = to_string(q.encoding);
  MCOMPRESS_CHECK(q.encoding != Encoding::kFp32, ErrorT, path, ": tensor '", name,
                  "' is listed as quantized with encoding fp32; list only fp16, bf16, int8 or "
                  "codebook tensors (fp32 is the default)");
  MCOMPRESS_CHECK(q.values.defined(), ErrorT, path, ": tensor '", name, "' (", enc,
                  ") has no values");
  MCOMPRESS_CHECK(q.values.scalar_type() == value_dtype(q.encoding), ErrorT, path, ": tensor '",
                  name, "' (", enc, ") has values of dtype ", q.values.scalar_type(), ", expected ",
                  dtype_name(q.encoding));
  MCOMPRESS_CHECK(q.values.sizes().vec() == shape, ErrorT, path, ": tensor '", name, "' (", enc,
                  ") has values of shape ", shape_to_string(q.values.sizes().vec()), ", expected ",
                  shape_to_string(shape), " from the architecture");
  if (q.encoding == Encoding::kCodebook) {
    check_codebook<ErrorT>(path, name, q);
    return;
  }
  if (q.encoding != Encoding::kInt8) return;

  const int64_t rank = static_cast<int64_t>(shape.size());
  MCOMPRESS_CHECK(q.axis == -1 || (q.axis >= 0 && q.axis < rank), ErrorT, path, ": tensor '", name,
                  "' (int8) has axis ", q.axis, ", expected -1 (one scale for the tensor)",
                  rank > 0 ? " or 0 to " + std::to_string(rank - 1) : std::string());
  const int64_t channels = q.axis < 0 ? 1 : shape[static_cast<size_t>(q.axis)];
  MCOMPRESS_CHECK(q.scale.defined() && q.scale.dim() == 1 && q.scale.scalar_type() == at::kFloat,
                  ErrorT, path, ": tensor '", name,
                  "' (int8) needs a one-dimensional float32 scale");
  MCOMPRESS_CHECK(q.scale.numel() == channels, ErrorT, path, ": tensor '", name, "' (int8) has ",
                  q.scale.numel(), " scales, expected ", channels,
                  q.axis < 0 ? std::string(" (axis -1: one scale for the tensor)")
                             : " (one per channel along axis " + std::to_string(q.axis) + ")");
  MCOMPRESS_CHECK(
      q.zero_point.defined() && q.zero_point.dim() == 1 && q.zero_point.scalar_type() == at::kInt,
      ErrorT, path, ": tensor '", name, "' (int8) needs a one-dimensional int32 zero_point");
  MCOMPRESS_CHECK(q.zero_point.numel() == q.scale.numel(), ErrorT, path, ": tensor '", name,
                  "' (int8) has ", q.zero_point.numel(), " zero points but ", q.scale.numel(),
                  " scales; expected one zero point per scale");
  const at::Tensor scale = q.scale.to(at::kCPU).contiguous();
  const float* s = scale.data_ptr<float>();
  for (int64_t i = 0; i < scale.numel(); ++i) {
    MCOMPRESS_CHECK(std::isfinite(s[i]) && s[i] > 0.0f, ErrorT, path, ": tensor '", name,
                    "' (int8) has scale ", s[i], " at index ", i, ", expected a finite value > 0");
  }
  const at::Tensor zero_point = q.zero_point.to(at::kCPU).contiguous();
  const int32_t* z = zero_point.data_ptr<int32_t>();
  for (int64_t i = 0; i < zero_point.numel(); ++i) {
    MCOMPRESS_CHECK(z[i] >= -128 && z[i] <= 127, ErrorT, path, ": tensor '", name,
                    "' (int8) has zero_point ", z[i], " at index ", i,
                    ", expected -128 to 127 (int8)");
  }
}

template <typename ErrorT>
void check_quant_mode(const std::string& path, const std::string& mode) {
  MCOMPRESS_CHECK(std::find(kQuantModes.begin(), kQuantModes.end(), mode) != kQuantModes.end(),
                  ErrorT, path, ": unknown quant_mode '", mode,
                  "'; accepted: \"\" (none), fp16, bf16, int8-dynamic, int8-static");
}

template <typename ErrorT>
void check_activation(const std::string& path, const std::string& key,
                      const ActivationQParams& params) {
  MCOMPRESS_CHECK(!key.empty() && key.find('/') == std::string::npos && key != ".", ErrorT, path,
                  ": activation key '", key, "' cannot be an HDF5 group name");
  MCOMPRESS_CHECK(std::isfinite(params.scale) && params.scale > 0.0, ErrorT, path, ": activation '",
                  key, "' has scale ", params.scale, ", expected a finite value > 0");
  MCOMPRESS_CHECK(params.zero_point >= 0 && params.zero_point <= 255, ErrorT, path,
                  ": activation '", key, "' has zero_point ", params.zero_point,
                  ", expected 0 to 255 (uint8)");
}

// ---------------------------------------------------------------------------------------------
// HDF5 plumbing

// Turns off HDF5's printing of its error stack to stderr while in scope, restoring whatever
// the caller had configured (other code in the process may rely on it).
class QuietHdf5Errors {
 public:
  QuietHdf5Errors() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~QuietHdf5Errors() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  QuietHdf5Errors(const QuietHdf5Errors&) = delete;
  QuietHdf5Errors& operator=(const QuietHdf5Errors&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

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

// The descriptions on HDF5's current error stack, innermost (the cause) first.
std::string hdf5_error_detail() {
  std::vector<std::string> messages;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, collect_error, &messages);
  if (messages.size() > 4) messages.resize(4);
  return messages.empty() ? std::string("no detail from HDF5") : join(messages, "; ");
}

template <typename ErrorT>
[[noreturn]] void h5_fail(const std::string& path, const std::string& what) {
  throw ErrorT(path + ": " + what + " (HDF5: " + hdf5_error_detail() + ")");
}

template <typename ErrorT>
void h5_check(herr_t status, const std::string& path, const std::string& what) {
  if (status < 0) h5_fail<ErrorT>(path, what);
}

// Owns one HDF5 identifier and closes it with the matching H5*close function.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer close) : id_(id), close_(close) {}
  Handle(Handle&& other) noexcept
      : id_(std::exchange(other.id_, H5I_INVALID_HID)), close_(other.close_) {}
  Handle& operator=(Handle&& other) noexcept {
    if (this != &other) {
      reset();
      id_ = std::exchange(other.id_, H5I_INVALID_HID);
      close_ = other.close_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: handles are passed straight to H5* calls

  // Closes now and reports whether HDF5 accepted the close (it flushes on close).
  herr_t close() {
    herr_t status = 0;
    if (id_ >= 0 && close_ != nullptr) status = close_(id_);
    id_ = H5I_INVALID_HID;
    return status;
  }

 private:
  void reset() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = H5I_INVALID_HID;
  }
  hid_t id_ = H5I_INVALID_HID;
  Closer close_ = nullptr;
};

template <typename ErrorT>
Handle checked(hid_t id, Handle::Closer close, const std::string& path, const std::string& what) {
  if (id < 0) h5_fail<ErrorT>(path, what);
  return Handle(id, close);
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string describe_path(const std::string& name) { return "'" + name + "'"; }

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

// ---------------------------------------------------------------------------------------------
// The sparse layout (docs/format.md §4.6): CSR over the tensor viewed as shape[0] rows by
// product(shape[1:]) columns.

// Columns of that matrix.
int64_t csr_columns(const std::vector<int64_t>& shape) {
  return product(std::vector<int64_t>(shape.begin() + 1, shape.end()));
}

struct IndexType {
  hid_t file_type;
  int64_t bytes;
};

// The smallest unsigned integer type holding `max_value`: a 784-column layer spends 2 bytes
// per column index instead of 8, which is what makes CSR pay off at moderate sparsity.
IndexType index_type(uint64_t max_value) {
  if (max_value <= 0xFFu) return {H5T_STD_U8LE, 1};
  if (max_value <= 0xFFFFu) return {H5T_STD_U16LE, 2};
  if (max_value <= 0xFFFFFFFFu) return {H5T_STD_U32LE, 4};
  return {H5T_STD_U64LE, 8};
}

// int8 zero-point codes shaped to broadcast against the tensor (per channel along q.axis).
at::Tensor zero_codes(const QuantizedTensor& q, int64_t rank) {
  const at::Tensor zp = q.zero_point.to(at::kCPU).to(at::kChar);
  if (q.axis < 0) return zp.reshape({});
  std::vector<int64_t> view(static_cast<size_t>(rank), 1);
  view[static_cast<size_t>(q.axis)] = zp.numel();
  return zp.reshape(view);
}

// The entries a sparse layout stores: every entry but the implicit zero. Floats omit exactly
// +0.0 (all bits zero), so a -0.0 keeps its sign; int8 omits the code equal to its channel's
// zero point, the code of 0.0.
at::Tensor stored_entries(const at::Tensor& values, const QuantizedTensor* q) {
  switch (values.scalar_type()) {
    case at::kFloat:
      return values.view(at::kInt).ne(0);
    case at::kHalf:
    case at::kBFloat16:
      return values.view(at::kShort).ne(0);
    default:
      return values.ne(zero_codes(*q, values.dim()));
  }
}

// A tensor in CSR form: row offsets, column indices and the stored values, row-major order.
struct Csr {
  at::Tensor indptr;   // int64 [rows + 1]
  at::Tensor indices;  // int64 [nnz]
  at::Tensor values;   // [nnz], the dtype of the dense values
};

Csr to_csr(const at::Tensor& values, const at::Tensor& keep) {
  const int64_t rows = values.size(0);
  const at::Tensor keep2d = keep.reshape({rows, -1});
  Csr csr;
  csr.indptr = at::zeros({rows + 1}, at::kLong);
  csr.indptr.slice(0, 1).copy_(keep2d.sum(at::IntArrayRef{1}, false, at::kLong).cumsum(0));
  csr.indices = keep2d.nonzero().select(1, 1).contiguous();  // nonzero() is row-major ordered
  csr.values = values.reshape({-1}).masked_select(keep.reshape({-1})).contiguous();
  return csr;
}

// The row-delta form of the column indices (docs/format.md §4.6): a row's first entry is its
// column, each later one the distance to the previous column (≥ 1). At 5% density the gaps
// mostly fit a byte and repeat, where absolute columns of a wide layer need two bytes each:
// the indices of a 95%-pruned [300, 784] weight deflate to 7.3 KB instead of 10.5 KB.
at::Tensor column_gaps(const Csr& csr) {
  at::Tensor gaps = csr.indices.clone();
  const int64_t* columns = csr.indices.data_ptr<int64_t>();
  const int64_t* indptr = csr.indptr.data_ptr<int64_t>();
  int64_t* out = gaps.data_ptr<int64_t>();
  for (int64_t r = 0; r + 1 < csr.indptr.numel(); ++r) {
    for (int64_t k = indptr[r] + 1; k < indptr[r + 1]; ++k) out[k] = columns[k] - columns[k - 1];
  }
  return gaps;
}

// Bytes of the tensor's datasets in each layout, before compression (scale and zero_point
// are the same in both and left out).
struct LayoutBytes {
  int64_t dense = 0, sparse = 0;
};

LayoutBytes layout_bytes(const std::vector<int64_t>& shape, int64_t element_bytes, int64_t nnz) {
  LayoutBytes b;
  b.dense = product(shape) * element_bytes;
  if (shape.empty() || b.dense == 0) {  // rank 0 has no rows; empty tensors stay dense
    b.sparse = std::numeric_limits<int64_t>::max();
    return b;
  }
  const auto columns = static_cast<uint64_t>(csr_columns(shape));
  b.sparse = nnz * (element_bytes + index_type(columns - 1).bytes) +
             (shape[0] + 1) * index_type(static_cast<uint64_t>(nnz)).bytes;
  return b;
}

// ---------------------------------------------------------------------------------------------
// The codebook encoding (docs/format.md §4.8): codes packed `bits` to a code, most significant
// bit first, the last byte padded with zero bits.

std::vector<uint8_t> pack_codes(const uint8_t* codes, int64_t count, int64_t bits) {
  std::vector<uint8_t> out(static_cast<size_t>((count * bits + 7) / 8), 0);
  int64_t bit = 0;
  for (int64_t i = 0; i < count; ++i) {
    for (int64_t b = bits - 1; b >= 0; --b, ++bit) {
      if ((codes[i] >> b) & 1) out[static_cast<size_t>(bit / 8)] |= uint8_t(0x80u >> (bit % 8));
    }
  }
  return out;
}

std::vector<uint8_t> unpack_codes(const std::vector<uint8_t>& packed, int64_t count, int64_t bits) {
  std::vector<uint8_t> out(static_cast<size_t>(count), 0);
  int64_t bit = 0;
  for (int64_t i = 0; i < count; ++i) {
    unsigned code = 0;
    for (int64_t b = 0; b < bits; ++b, ++bit) {
      code = (code << 1) | ((packed[static_cast<size_t>(bit / 8)] >> (7 - bit % 8)) & 1u);
    }
    out[static_cast<size_t>(i)] = static_cast<uint8_t>(code);
  }
  return out;
}

// The code a sparse codebook tensor leaves implicit: the first shared value that is +0.0, or
// -1 when there is none (the tensor is then stored dense).
int64_t zero_code(const at::Tensor& codebook) {
  const at::Tensor bits = codebook.to(at::kCPU).contiguous().view(at::kInt);
  const int32_t* b = bits.data_ptr<int32_t>();
  for (int64_t i = 0; i < bits.numel(); ++i) {
    if (b[i] == 0) return i;
  }
  return -1;
}

// Bytes of a codebook tensor's codes and CSR structure in each layout, before compression.
LayoutBytes codebook_layout_bytes(const std::vector<int64_t>& shape, int64_t bits, int64_t nnz) {
  LayoutBytes b;
  b.dense = (product(shape) * bits + 7) / 8;
  if (shape.empty() || b.dense == 0) {
    b.sparse = std::numeric_limits<int64_t>::max();
    return b;
  }
  const auto columns = static_cast<uint64_t>(csr_columns(shape));
  b.sparse = (nnz * bits + 7) / 8 + nnz * index_type(columns - 1).bytes +
             (shape[0] + 1) * index_type(static_cast<uint64_t>(nnz)).bytes;
  return b;
}

// ---------------------------------------------------------------------------------------------
// Writing

class Writer {
 public:
  explicit Writer(std::string path) : path_(std::move(path)) {
    gcpl_ = checked<IoError>(H5Pcreate(H5P_GROUP_CREATE), H5Pclose, path_,
                             "cannot create a property list");
    // Object modification times would make two saves of the same model differ.
    h5_check<IoError>(H5Pset_obj_track_times(gcpl_, false), path_, "cannot disable time tracking");
  }

  Handle create_group(hid_t parent, const std::string& name) {
    return checked<IoError>(H5Gcreate2(parent, name.c_str(), H5P_DEFAULT, gcpl_, H5P_DEFAULT),
                            H5Gclose, path_, "cannot create group " + describe_path(name));
  }

  void string_attr(hid_t loc, const std::string& name, const std::string& value) {
    Handle type = utf8_string_type(value.size() + 1);
    Handle space =
        checked<IoError>(H5Screate(H5S_SCALAR), H5Sclose, path_, "cannot create a dataspace");
    Handle attr =
        checked<IoError>(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT),
                         H5Aclose, path_, "cannot create attribute " + describe_path(name));
    h5_check<IoError>(H5Awrite(attr, type, value.c_str()), path_,
                      "cannot write attribute " + describe_path(name));
  }

  // Scalar integer attribute stored with the exact file type given (H5T_STD_I32LE, ...).
  template <typename T>
  void scalar_attr(hid_t loc, const std::string& name, hid_t file_type, hid_t mem_type, T value) {
    Handle space =
        checked<IoError>(H5Screate(H5S_SCALAR), H5Sclose, path_, "cannot create a dataspace");
    Handle attr =
        checked<IoError>(H5Acreate2(loc, name.c_str(), file_type, space, H5P_DEFAULT, H5P_DEFAULT),
                         H5Aclose, path_, "cannot create attribute " + describe_path(name));
    h5_check<IoError>(H5Awrite(attr, mem_type, &value), path_,
                      "cannot write attribute " + describe_path(name));
  }

  void shape_attr(hid_t loc, const std::vector<int64_t>& shape) {
    hsize_t dims[1] = {static_cast<hsize_t>(shape.size())};
    Handle space = checked<IoError>(H5Screate_simple(1, dims, nullptr), H5Sclose, path_,
                                    "cannot create a dataspace");
    Handle attr =
        checked<IoError>(H5Acreate2(loc, "shape", H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT),
                         H5Aclose, path_, "cannot create attribute 'shape'");
    if (!shape.empty()) {
      h5_check<IoError>(H5Awrite(attr, H5T_NATIVE_INT64, shape.data()), path_,
                        "cannot write attribute 'shape'");
    }
  }

  // Group /tensors/<name> of one tensor: the fp32 master, or its reduced encoding `q`. Dense
  // or sparse, whichever has fewer bytes; `pruned` marks a tensor whose zeros are its mask.
  void tensor(hid_t tensors, const std::string& name, const at::Tensor& master,
              const QuantizedTensor* q, bool pruned) {
    if (q != nullptr && q->encoding == Encoding::kCodebook) {
      codebook_tensor(tensors, name, *q, pruned);
      return;
    }
    const Encoding encoding = q != nullptr ? q->encoding : Encoding::kFp32;
    const at::Tensor values = stored_values(name, master, q);
    const std::vector<int64_t> shape = values.sizes().vec();
    const at::Tensor keep = stored_entries(values, q);
    const int64_t nnz = keep.sum().item<int64_t>();
    const LayoutBytes bytes = layout_bytes(shape, values.element_size(), nnz);
    const bool sparse = bytes.sparse < bytes.dense;

    Handle group = create_group(tensors, name);
    shape_attr(group, shape);
    string_attr(group, "encoding", to_string(encoding));
    string_attr(group, "layout", sparse ? "sparse" : "dense");
    if (encoding == Encoding::kInt8)
      scalar_attr<int64_t>(group, "axis", H5T_STD_I64LE, H5T_NATIVE_INT64, q->axis);
    if (pruned) scalar_attr<int8_t>(group, "pruned", H5T_STD_I8LE, H5T_NATIVE_INT8, 1);

    // The 16-bit types are built twice: file (little-endian) and memory (native) versions.
    Handle file_half, mem_half;
    hid_t file_type = H5T_IEEE_F32LE, mem_type = H5T_NATIVE_FLOAT;
    if (encoding == Encoding::kFp16 || encoding == Encoding::kBf16) {
      file_half = half_float_type<IoError>(half_format(encoding), H5T_IEEE_F32LE, path_);
      mem_half = half_float_type<IoError>(half_format(encoding), H5T_NATIVE_FLOAT, path_);
      file_type = file_half;
      mem_type = mem_half;
    } else if (encoding == Encoding::kInt8) {
      file_type = H5T_STD_I8LE;
      mem_type = H5T_NATIVE_INT8;
    }
    if (sparse) {
      const Csr csr = to_csr(values, keep);
      write_dataset(group, "values", {nnz}, file_type, mem_type, csr.values.data_ptr(), name);
      csr_structure(group, csr, shape, nnz, name);
    } else {
      write_dataset(group, "values", shape, file_type, mem_type, values.data_ptr(), name);
    }
    if (encoding != Encoding::kInt8) return;
    const at::Tensor scale = q->scale.to(at::kCPU).contiguous();
    const at::Tensor zero_point = q->zero_point.to(at::kCPU).contiguous();
    write_dataset(group, "scale", {scale.numel()}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                  scale.data_ptr(), name);
    write_dataset(group, "zero_point", {zero_point.numel()}, H5T_STD_I32LE, H5T_NATIVE_INT32,
                  zero_point.data_ptr(), name);
  }

  // Group /tensors/<name> of a codebook tensor (docs/format.md §4.8): the shared values and
  // the packed codes, dense or CSR over the entries whose code is not the zero code.
  void codebook_tensor(hid_t tensors, const std::string& name, const QuantizedTensor& q,
                       bool pruned) {
    const at::Tensor codes = q.values.to(at::kCPU).contiguous();
    const at::Tensor book = q.codebook.to(at::kCPU).contiguous();
    const std::vector<int64_t> shape = codes.sizes().vec();
    const int64_t zero = zero_code(book);
    const at::Tensor keep = zero >= 0 ? codes.ne(zero) : at::ones_like(codes, at::kBool);
    const int64_t nnz = keep.sum().item<int64_t>();
    const LayoutBytes bytes = codebook_layout_bytes(shape, q.bits, nnz);
    const bool sparse = zero >= 0 && bytes.sparse < bytes.dense;

    Handle group = create_group(tensors, name);
    shape_attr(group, shape);
    string_attr(group, "encoding", to_string(Encoding::kCodebook));
    string_attr(group, "layout", sparse ? "sparse" : "dense");
    scalar_attr<int32_t>(group, "bits", H5T_STD_I32LE, H5T_NATIVE_INT32,
                         static_cast<int32_t>(q.bits));
    if (pruned) scalar_attr<int8_t>(group, "pruned", H5T_STD_I8LE, H5T_NATIVE_INT8, 1);
    write_dataset(group, "codebook", {book.numel()}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                  book.data_ptr(), name);
    at::Tensor stored = codes.reshape({-1});
    if (sparse) {
      const Csr csr = to_csr(codes, keep);
      csr_structure(group, csr, shape, nnz, name);
      stored = csr.values;
    }
    const std::vector<uint8_t> packed =
        pack_codes(stored.data_ptr<uint8_t>(), stored.numel(), q.bits);
    write_dataset(group, "codes", {static_cast<int64_t>(packed.size())}, H5T_STD_U8LE,
                  H5T_NATIVE_UINT8, packed.data(), name);
  }

  // /history/entries (docs/format.md §6): the entries as JSON Lines, deflated like a tensor.
  // A raw line break inside an entry can only be whitespace between JSON tokens (JSON escapes
  // it inside strings), so it becomes a space and every entry stays one line.
  void history(hid_t group, const std::vector<std::string>& entries) {
    if (entries.empty()) return;
    std::string lines;
    for (const std::string& entry : entries) {
      for (char c : entry) lines += c == '\n' || c == '\r' ? ' ' : c;
      lines += '\n';
    }
    write_dataset(group, "entries", {static_cast<int64_t>(lines.size())}, H5T_STD_U8LE,
                  H5T_NATIVE_UINT8, lines.data(), "history");
  }

  // Group /activations/<key> with attrs scale, zero_point, observer.
  void activation(hid_t activations, const std::string& key, const ActivationQParams& params) {
    Handle group = create_group(activations, key);
    scalar_attr<double>(group, "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, params.scale);
    scalar_attr<int64_t>(group, "zero_point", H5T_STD_I64LE, H5T_NATIVE_INT64, params.zero_point);
    string_attr(group, "observer", params.observer);
  }

 private:
  // The CSR structure of a sparse tensor besides its values: density, columns (row-delta
  // coded) and row offsets.
  void csr_structure(hid_t group, const Csr& csr, const std::vector<int64_t>& shape, int64_t nnz,
                     const std::string& name) {
    const double density = static_cast<double>(nnz) / static_cast<double>(product(shape));
    scalar_attr<double>(group, "density", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, density);
    const at::Tensor gaps = column_gaps(csr);
    const auto max_gap = static_cast<uint64_t>(nnz > 0 ? gaps.max().item<int64_t>() : 0);
    write_dataset(group, "indices_delta", {nnz}, index_type(max_gap).file_type, H5T_NATIVE_INT64,
                  gaps.data_ptr(), name);
    write_dataset(group, "indptr", {shape[0] + 1}, index_type(static_cast<uint64_t>(nnz)).file_type,
                  H5T_NATIVE_INT64, csr.indptr.data_ptr(), name);
  }

  // The values as stored (contiguous, on the CPU), refusing any a load would reject: a file
  // mcompress writes must be one it can load again. `q` passed check_quantized.
  at::Tensor stored_values(const std::string& name, const at::Tensor& master,
                           const QuantizedTensor* q) {
    if (q == nullptr) {
      MCOMPRESS_CHECK(master.scalar_type() == at::kFloat, ModelError, path_, ": tensor '", name,
                      "' has dtype ", master.scalar_type(), ", expected float32");
      at::Tensor values = master.to(at::kCPU).contiguous();
      float bad = 0.0f;
      const int64_t index = first_non_finite(values, &bad);
      MCOMPRESS_CHECK(index < 0, ModelError, path_, ": tensor '", name,
                      "' has a non-finite value (", bad, ") at flat index ", index,
                      "; refusing to save it");
      return values;
    }
    at::Tensor values = q->values.to(at::kCPU).contiguous();
    if (q->encoding == Encoding::kFp16 || q->encoding == Encoding::kBf16) {
      float bad = 0.0f;
      const int64_t index = first_non_finite(values.to(at::kFloat).contiguous(), &bad);
      MCOMPRESS_CHECK(index < 0, ModelError, path_, ": tensor '", name, "' (",
                      to_string(q->encoding), ") has a non-finite value (", bad, ") at flat index ",
                      index, "; refusing to save it");
    }
    return values;
  }

  // Fixed-length (`bytes` with the terminator), so the text lives in the attribute itself.
  // Variable-length strings go to the global heap, whose collections take at least 4 KiB
  // each: 8 KB of a 46 KB pruned, quantized mlp file (docs/format.md §2).
  Handle utf8_string_type(size_t bytes) {
    Handle type =
        checked<IoError>(H5Tcopy(H5T_C_S1), H5Tclose, path_, "cannot create a string type");
    h5_check<IoError>(H5Tset_size(type, bytes), path_, "cannot create a string type");
    h5_check<IoError>(H5Tset_strpad(type, H5T_STR_NULLTERM), path_, "cannot create a string type");
    h5_check<IoError>(H5Tset_cset(type, H5T_CSET_UTF8), path_, "cannot create a string type");
    return type;
  }

  void write_dataset(hid_t loc, const std::string& name, const std::vector<int64_t>& shape,
                     hid_t file_type, hid_t mem_type, const void* data, const std::string& owner) {
    const std::string subject =
        owner == "history" ? std::string("/history") : "tensor '" + owner + "'";
    std::vector<hsize_t> dims(shape.begin(), shape.end());
    Handle space =
        dims.empty()
            ? checked<IoError>(H5Screate(H5S_SCALAR), H5Sclose, path_, "cannot create a dataspace")
            : checked<IoError>(
                  H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose,
                  path_, "cannot create a dataspace");
    Handle dcpl = checked<IoError>(H5Pcreate(H5P_DATASET_CREATE), H5Pclose, path_,
                                   "cannot create a property list");
    h5_check<IoError>(H5Pset_obj_track_times(dcpl, false), path_, "cannot disable time tracking");
    // Datasets carry no attributes, so their object headers need no room reserved for them:
    // ~140 bytes less per dataset, which shows in the file of a pruned, quantized model.
    h5_check<IoError>(H5Pset_dset_no_attrs_hint(dcpl, true), path_, "cannot minimize headers");
    const bool empty = std::any_of(dims.begin(), dims.end(), [](hsize_t d) { return d == 0; });
    // HDF5 cannot chunk a scalar or an empty dataset; those (never produced by today's
    // layers) are stored contiguous and unfiltered, as docs/format.md allows.
    if (!dims.empty() && !empty) {
      std::vector<hsize_t> chunk = chunk_dims(dims);
      const std::string what = "cannot set up chunking/filters for " + subject;
      h5_check<IoError>(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), path_,
                        what);
      // Order matters: the checksum is computed last, over the compressed bytes on disk.
      h5_check<IoError>(H5Pset_shuffle(dcpl), path_, what);
      h5_check<IoError>(H5Pset_deflate(dcpl, kDeflateLevel), path_, what);
      h5_check<IoError>(H5Pset_fletcher32(dcpl), path_, what);
    }
    Handle dset = checked<IoError>(
        H5Dcreate2(loc, name.c_str(), file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose,
        path_, "cannot create a dataset for " + subject);
    if (!empty) {
      h5_check<IoError>(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), path_,
                        "cannot write " + subject);
    }
  }

  // Whole trailing dimensions first, then as many rows of the leading ones as fit the target.
  static std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims) {
    std::vector<hsize_t> chunk(dims.size(), 1);
    hsize_t inner = 1;
    for (size_t i = dims.size(); i-- > 0;) {
      const hsize_t fit = std::max<hsize_t>(1, kChunkTargetElements / inner);
      chunk[i] = std::min(dims[i], fit);
      inner *= chunk[i];
    }
    return chunk;
  }

  std::string path_;
  Handle gcpl_;
};

void write_model(hid_t file, const Model& model, const std::string& path) {
  Writer writer(path);
  Handle root = checked<IoError>(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose, path,
                                 "cannot open the root group");
  writer.string_attr(root, "format", kModelFormatName);
  writer.scalar_attr<int32_t>(root, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32,
                              kModelFormatVersion);
  writer.string_attr(root, "arch", model.spec().to_json_text());
  writer.string_attr(root, "producer", "mcompress " + version());
  writer.scalar_attr<uint64_t>(root, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, model.seed);
  writer.string_attr(root, "quant_mode", model.quant.mode);

  {
    Handle tensors = writer.create_group(root, "tensors");
    for (const TensorInfo& info : model.tensor_infos()) {
      MCOMPRESS_CHECK(
          !info.name.empty() && info.name.find('/') == std::string::npos && info.name != ".",
          ModelError, path, ": tensor name '", info.name, "' cannot be an HDF5 group name");
      auto quantized = model.quant.tensors.find(info.name);
      writer.tensor(tensors, info.name, model.tensor(info.name),
                    quantized != model.quant.tensors.end() ? &quantized->second : nullptr,
                    model.masks.count(info.name) != 0);
    }
  }
  if (!model.quant.activations.empty()) {
    Handle activations = writer.create_group(root, "activations");
    for (const auto& [key, params] : model.quant.activations)  // std::map: sorted, deterministic
      writer.activation(activations, key, params);
  }
  {
    Handle history = writer.create_group(root, "history");
    writer.history(history, model.history);
  }
  {
    Handle recipe = writer.create_group(root, "recipe");
    writer.string_attr(recipe, "text", model.recipe);
    writer.scalar_attr<uint64_t>(recipe, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, model.seed);
  }
}

// Everything in model.quant that would make the file unloadable, checked before the temporary
// file is created.
void check_quant_state(const Model& model, const std::string& path) {
  check_quant_mode<ModelError>(path, model.quant.mode);
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorInfo& info : model.tensor_infos()) shapes.emplace(info.name, info.shape);
  for (const auto& [name, quantized] : model.quant.tensors) {
    auto it = shapes.find(name);
    MCOMPRESS_CHECK(it != shapes.end(), ModelError, path, ": quantized tensor '", name,
                    "' is not a tensor of the architecture");
    check_quantized<ModelError>(path, name, quantized, it->second);
  }
  for (const auto& [key, params] : model.quant.activations)
    check_activation<ModelError>(path, key, params);
}

// The file stores a mask as its tensor's non-zero pattern (docs/format.md §4.7), so a mask
// that leaves a non-zero value where it says "pruned" would come back different: refuse it.
void check_masks(const Model& model, const std::string& path) {
  for (const auto& [name, mask] : model.masks) {
    MCOMPRESS_CHECK(model.has_tensor(name), ModelError, path, ": pruning mask '", name,
                    "' is not a tensor of the architecture");
    const at::Tensor& master = model.tensor(name);
    MCOMPRESS_CHECK(mask.defined() && mask.sizes() == master.sizes(), ModelError, path,
                    ": pruning mask of tensor '", name, "' has shape ",
                    mask.defined() ? shape_to_string(mask.sizes().vec()) : std::string("(none)"),
                    ", expected ", shape_to_string(master.sizes().vec()));
    auto quantized = model.quant.tensors.find(name);
    const at::Tensor stored = quantized != model.quant.tensors.end()
                                  ? quantized->second.dequantize()
                                  : master.to(at::kCPU);
    const at::Tensor leaked =
        stored.ne(0).logical_and(mask.to(at::kCPU).to(at::kBool).logical_not());
    const int64_t count = leaked.sum().item<int64_t>();
    MCOMPRESS_CHECK(count == 0, ModelError, path, ": tensor '", name, "' has ", count,
                    " non-zero values where its pruning mask is false (first at flat index ",
                    count > 0 ? leaked.reshape({-1}).nonzero()[0].item<int64_t>() : -1,
                    "); the file stores a mask as the tensor's zero pattern, so apply the mask "
                    "(Model::set_mask) before saving");
  }
}

void fsync_path(const std::string& path, int flags) {
  int fd = ::open(path.c_str(), flags);
  if (fd < 0) return;  // durability is best effort for folders some file systems refuse
  ::fsync(fd);
  ::close(fd);
}

// ---------------------------------------------------------------------------------------------
// Reading

// An open, format-checked model file.
class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {
    std::error_code ec;
    const auto status = fs::status(path, ec);
    MCOMPRESS_CHECK(fs::exists(status), IoError, path, ": no such file");
    MCOMPRESS_CHECK(!fs::is_directory(status), IoError, path,
                    ": is a directory, expected a model file");
    check_signature();
    file_ = checked<FormatError>(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose, path,
                                 "cannot open the HDF5 file; it is truncated or corrupt");
    root_ = checked<FormatError>(H5Gopen2(file_, "/", H5P_DEFAULT), H5Gclose, path,
                                 "cannot open the root group");

    std::optional<std::string> format = string_attr(root_, "format", "/");
    MCOMPRESS_CHECK(format && *format == kModelFormatName, FormatError, path,
                    ": is not an mcompress model file (the root attribute 'format' is ",
                    format ? "'" + *format + "'" : std::string("missing"), ", expected '",
                    kModelFormatName, "')");
    std::optional<int64_t> version =
        integer_attr<int64_t>(root_, "format_version", "/", H5T_NATIVE_INT64);
    MCOMPRESS_CHECK(version.has_value(), FormatError, path,
                    ": the root attribute 'format_version' is missing");
    MCOMPRESS_CHECK(*version <= kModelFormatVersion, FormatError, path,
                    ": this mcompress supports model format v", kModelFormatVersion,
                    " or below, but the file has v", *version,
                    "; it was written by a newer mcompress");
    MCOMPRESS_CHECK(*version >= 1, FormatError, path, ": invalid format_version ", *version,
                    ", expected 1 to ", kModelFormatVersion);
    format_version_ = static_cast<int>(*version);
  }

  const std::string& path() const { return path_; }
  int format_version() const { return format_version_; }
  hid_t root() const { return root_; }

  std::string required_string(hid_t loc, const std::string& name, const std::string& where) {
    std::optional<std::string> value = string_attr(loc, name, where);
    MCOMPRESS_CHECK(value.has_value(), FormatError, path_, ": attribute '", name, "' of ", where,
                    " is missing");
    return *value;
  }

  ArchSpec arch(std::string* json = nullptr) {
    std::string text = required_string(root_, "arch", "/");
    if (json != nullptr) *json = text;
    try {
      return ArchSpec::from_json_text(text);
    } catch (const ModelError& e) {
      throw ModelError(path_ + ": invalid architecture in attribute 'arch': " + e.what());
    }
  }

  // Entries of /history: the lines of its dataset `entries` (version 2), or its attributes in
  // numeric order (version 1; attributes whose names are not numbers are ignored).
  std::vector<std::string> history() {
    std::vector<std::string> entries;
    if (!link_exists(root_, "history")) return entries;
    Handle group = open_group(root_, "history", "/history");
    if (link_exists(group, "entries")) {
      Handle dataset = open_dataset(group, "entries", "/history/entries");
      const std::vector<int64_t> shape = dataset_shape(dataset, "/history/entries");
      Handle type = checked<FormatError>(H5Dget_type(dataset), H5Tclose, path_,
                                         "cannot read the type of /history/entries");
      MCOMPRESS_CHECK(
          shape.size() == 1 && H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1,
          FormatError, path_,
          ": /history/entries must be a one-dimensional dataset of bytes (UTF-8 "
          "JSON Lines)");
      std::string text(static_cast<size_t>(shape[0]), '\0');
      if (!text.empty() &&
          H5Dread(dataset, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, text.data()) < 0) {
        throw FormatError(path_ + ": cannot read /history/entries; the data is corrupt (HDF5: " +
                          hdf5_error_detail() + ")");
      }
      size_t begin = 0;
      while (begin < text.size()) {
        size_t end = text.find('\n', begin);
        if (end == std::string::npos) end = text.size();
        if (end > begin) entries.push_back(text.substr(begin, end - begin));
        begin = end + 1;
      }
      return entries;
    }
    std::vector<std::pair<uint64_t, std::string>> numbered;
    for (const std::string& name : attribute_names(group, "/history")) {
      if (name.empty() || name.size() > 18 ||
          !std::all_of(name.begin(), name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        continue;
      }
      numbered.emplace_back(std::stoull(name), name);
    }
    std::sort(numbered.begin(), numbered.end());
    for (const auto& [index, name] : numbered)
      entries.push_back(required_string(group, name, "/history"));
    return entries;
  }

  // The recipe text; empty when the file has none.
  std::string recipe() {
    if (!link_exists(root_, "recipe")) return {};
    Handle group = open_group(root_, "recipe", "/recipe");
    return string_attr(group, "text", "/recipe").value_or(std::string());
  }

  uint64_t seed() {
    if (auto seed = integer_attr<uint64_t>(root_, "seed", "/", H5T_NATIVE_UINT64)) return *seed;
    if (!link_exists(root_, "recipe")) return 0;
    Handle group = open_group(root_, "recipe", "/recipe");
    return integer_attr<uint64_t>(group, "seed", "/recipe", H5T_NATIVE_UINT64).value_or(0);
  }

  Handle tensors_group() {
    MCOMPRESS_CHECK(link_exists(root_, "tensors"), FormatError, path_,
                    ": the group /tensors is missing");
    return open_group(root_, "tensors", "/tensors");
  }

  std::vector<std::string> member_names(hid_t group, const std::string& where) {
    std::vector<std::string> names;
    hsize_t index = 0;
    h5_check<FormatError>(
        H5Literate(group, H5_INDEX_NAME, H5_ITER_INC, &index, collect_name, &names), path_,
        "cannot list the members of " + where);
    return names;
  }

  bool link_exists(hid_t loc, const std::string& name) {
    htri_t exists = H5Lexists(loc, name.c_str(), H5P_DEFAULT);
    if (exists < 0) h5_fail<FormatError>(path_, "cannot look up " + describe_path(name));
    return exists > 0;
  }

  Handle open_group(hid_t loc, const std::string& name, const std::string& where) {
    H5O_info_t info;
    h5_check<FormatError>(H5Oget_info_by_name(loc, name.c_str(), &info, H5P_DEFAULT), path_,
                          "cannot look up " + where);
    MCOMPRESS_CHECK(info.type == H5O_TYPE_GROUP, FormatError, path_, ": ", where,
                    " is not a group");
    return checked<FormatError>(H5Gopen2(loc, name.c_str(), H5P_DEFAULT), H5Gclose, path_,
                                "cannot open " + where);
  }

  Handle open_dataset(hid_t loc, const std::string& name, const std::string& where) {
    MCOMPRESS_CHECK(link_exists(loc, name), FormatError, path_, ": ", where, " is missing");
    H5O_info_t info;
    h5_check<FormatError>(H5Oget_info_by_name(loc, name.c_str(), &info, H5P_DEFAULT), path_,
                          "cannot look up " + where);
    MCOMPRESS_CHECK(info.type == H5O_TYPE_DATASET, FormatError, path_, ": ", where,
                    " is not a dataset");
    return checked<FormatError>(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose, path_,
                                "cannot open " + where);
  }

  // A string attribute (variable- or fixed-length, scalar or one element); nullopt if absent.
  std::optional<std::string> string_attr(hid_t loc, const std::string& name,
                                         const std::string& where) {
    Handle attr;
    if (!open_attr(loc, name, where, attr)) return std::nullopt;
    const std::string what = "attribute '" + name + "' of " + where;
    Handle file_type =
        checked<FormatError>(H5Aget_type(attr), H5Tclose, path_, "cannot read " + what);
    MCOMPRESS_CHECK(H5Tget_class(file_type) == H5T_STRING, FormatError, path_, ": ", what,
                    " is not a string");
    require_single_value(attr, what);
    htri_t variable = H5Tis_variable_str(file_type);
    if (variable < 0) h5_fail<FormatError>(path_, "cannot read " + what);
    if (variable > 0) {
      Handle mem_type =
          checked<FormatError>(H5Tcopy(H5T_C_S1), H5Tclose, path_, "cannot read " + what);
      h5_check<FormatError>(H5Tset_size(mem_type, H5T_VARIABLE), path_, "cannot read " + what);
      h5_check<FormatError>(H5Tset_cset(mem_type, H5Tget_cset(file_type)), path_,
                            "cannot read " + what);
      char* buffer = nullptr;
      h5_check<FormatError>(H5Aread(attr, mem_type, &buffer), path_, "cannot read " + what);
      std::string value = buffer != nullptr ? buffer : "";
      H5free_memory(buffer);
      return value;
    }
    const size_t size = H5Tget_size(file_type);
    std::string buffer(size, '\0');
    h5_check<FormatError>(H5Aread(attr, file_type, buffer.data()), path_, "cannot read " + what);
    buffer.resize(std::strlen(buffer.c_str()));  // null-terminated or null-padded
    while (!buffer.empty() && buffer.back() == ' ') buffer.pop_back();  // space-padded
    return buffer;
  }

  // A scalar integer attribute converted to T (HDF5 rejects out-of-range values); nullopt if
  // absent.
  template <typename T>
  std::optional<T> integer_attr(hid_t loc, const std::string& name, const std::string& where,
                                hid_t mem_type) {
    Handle attr;
    if (!open_attr(loc, name, where, attr)) return std::nullopt;
    const std::string what = "attribute '" + name + "' of " + where;
    Handle file_type =
        checked<FormatError>(H5Aget_type(attr), H5Tclose, path_, "cannot read " + what);
    MCOMPRESS_CHECK(H5Tget_class(file_type) == H5T_INTEGER, FormatError, path_, ": ", what,
                    " is not an integer");
    require_single_value(attr, what);
    T value{};
    h5_check<FormatError>(H5Aread(attr, mem_type, &value), path_, "cannot read " + what);
    return value;
  }

  // A one-dimensional integer attribute (e.g. shape); nullopt if absent.
  std::optional<std::vector<int64_t>> integer_array_attr(hid_t loc, const std::string& name,
                                                         const std::string& where) {
    Handle attr;
    if (!open_attr(loc, name, where, attr)) return std::nullopt;
    const std::string what = "attribute '" + name + "' of " + where;
    Handle file_type =
        checked<FormatError>(H5Aget_type(attr), H5Tclose, path_, "cannot read " + what);
    MCOMPRESS_CHECK(H5Tget_class(file_type) == H5T_INTEGER, FormatError, path_, ": ", what,
                    " is not an integer array");
    Handle space = checked<FormatError>(H5Aget_space(attr), H5Sclose, path_, "cannot read " + what);
    MCOMPRESS_CHECK(H5Sget_simple_extent_ndims(space) <= 1, FormatError, path_, ": ", what,
                    " must be one-dimensional");
    hssize_t count = H5Sget_simple_extent_npoints(space);
    if (count < 0) h5_fail<FormatError>(path_, "cannot read " + what);
    std::vector<int64_t> values(static_cast<size_t>(count));
    if (!values.empty()) {
      h5_check<FormatError>(H5Aread(attr, H5T_NATIVE_INT64, values.data()), path_,
                            "cannot read " + what);
    }
    return values;
  }

  // The dataset's dimensions; {} for a scalar.
  std::vector<int64_t> dataset_shape(hid_t dataset, const std::string& where) {
    Handle space =
        checked<FormatError>(H5Dget_space(dataset), H5Sclose, path_, "cannot read " + where);
    int rank = H5Sget_simple_extent_ndims(space);
    if (rank < 0) h5_fail<FormatError>(path_, "cannot read the shape of " + where);
    std::vector<hsize_t> dims(static_cast<size_t>(rank));
    if (rank > 0 && H5Sget_simple_extent_dims(space, dims.data(), nullptr) < 0) {
      h5_fail<FormatError>(path_, "cannot read the shape of " + where);
    }
    return std::vector<int64_t>(dims.begin(), dims.end());
  }

  // Reads a whole dataset converted to float; a failure here means damaged chunks.
  void read_floats(hid_t dataset, float* out, const std::string& tensor) {
    read_data(dataset, H5T_NATIVE_FLOAT, out, tensor, "values");
  }

  // Reads a whole dataset of tensor `tensor` (`member`: values, scale, ...) as `mem_type`.
  void read_data(hid_t dataset, hid_t mem_type, void* out, const std::string& tensor,
                 const std::string& member) {
    if (H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0) return;
    const std::string detail = hdf5_error_detail();
    const bool checksum = detail.find("Fletcher32") != std::string::npos ||
                          detail.find("checksum") != std::string::npos;
    throw FormatError(
        path_ + ": tensor '" + tensor + "': cannot read its " + member + "; the data is corrupt (" +
        (checksum ? "Fletcher-32 checksum mismatch" : "checksum or decompression failure") +
        ") (HDF5: " + detail + ")");
  }

  // A scalar float attribute converted to double; nullopt if absent.
  std::optional<double> float_attr(hid_t loc, const std::string& name, const std::string& where) {
    Handle attr;
    if (!open_attr(loc, name, where, attr)) return std::nullopt;
    const std::string what = "attribute '" + name + "' of " + where;
    Handle file_type =
        checked<FormatError>(H5Aget_type(attr), H5Tclose, path_, "cannot read " + what);
    MCOMPRESS_CHECK(H5Tget_class(file_type) == H5T_FLOAT, FormatError, path_, ": ", what,
                    " is not a float");
    require_single_value(attr, what);
    double value = 0.0;
    h5_check<FormatError>(H5Aread(attr, H5T_NATIVE_DOUBLE, &value), path_, "cannot read " + what);
    return value;
  }

  // The root attribute quant_mode; "" when absent (files of plain fp32 models may omit it).
  std::string quant_mode() {
    std::string mode = string_attr(root_, "quant_mode", "/").value_or(std::string());
    check_quant_mode<FormatError>(path_, mode);
    return mode;
  }

  // /activations/<key>; empty when the group is absent.
  std::map<std::string, ActivationQParams> activations() {
    std::map<std::string, ActivationQParams> out;
    if (!link_exists(root_, "activations")) return out;
    Handle group = open_group(root_, "activations", "/activations");
    for (const std::string& key : member_names(group, "/activations")) {
      const std::string where = "/activations/" + key;
      Handle member = open_group(group, key, where);
      ActivationQParams params;
      std::optional<double> scale = float_attr(member, "scale", where);
      MCOMPRESS_CHECK(scale.has_value(), FormatError, path_, ": activation '", key,
                      "' has no 'scale' attribute");
      std::optional<int64_t> zero_point =
          integer_attr<int64_t>(member, "zero_point", where, H5T_NATIVE_INT64);
      MCOMPRESS_CHECK(zero_point.has_value(), FormatError, path_, ": activation '", key,
                      "' has no 'zero_point' attribute");
      params.scale = *scale;
      params.zero_point = *zero_point;
      params.observer = string_attr(member, "observer", where).value_or(std::string());
      check_activation<FormatError>(path_, key, params);
      out.emplace(key, std::move(params));
    }
    return out;
  }

 private:
  // Refuses files without the HDF5 signature before HDF5 prints a long error chain. The
  // superblock may sit at 0, 512, 1024, 2048, ... (a user block shifts it).
  void check_signature() {
    static const char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
    std::ifstream in(path_, std::ios::binary);
    MCOMPRESS_CHECK(in.good(), IoError, path_, ": cannot open for reading: ", std::strerror(errno));
    std::error_code ec;
    const uintmax_t size = fs::file_size(path_, ec);
    MCOMPRESS_CHECK(!ec, IoError, path_, ": cannot read the file size: ", ec.message());
    for (uintmax_t offset = 0; offset + sizeof(kSignature) <= size;
         offset = offset == 0 ? 512 : offset * 2) {
      char buffer[sizeof(kSignature)];
      in.seekg(static_cast<std::streamoff>(offset));
      if (!in.read(buffer, sizeof(buffer))) break;
      if (std::memcmp(buffer, kSignature, sizeof(kSignature)) == 0) return;
    }
    throw FormatError(path_ +
                      ": not an HDF5 file (no HDF5 signature), so not an mcompress model file");
  }

  bool open_attr(hid_t loc, const std::string& name, const std::string& where, Handle& attr) {
    htri_t exists = H5Aexists(loc, name.c_str());
    if (exists < 0)
      h5_fail<FormatError>(path_, "cannot look up attribute '" + name + "' of " + where);
    if (exists == 0) return false;
    attr = checked<FormatError>(H5Aopen(loc, name.c_str(), H5P_DEFAULT), H5Aclose, path_,
                                "cannot open attribute '" + name + "' of " + where);
    return true;
  }

  void require_single_value(hid_t attr, const std::string& what) {
    Handle space = checked<FormatError>(H5Aget_space(attr), H5Sclose, path_, "cannot read " + what);
    MCOMPRESS_CHECK(H5Sget_simple_extent_npoints(space) == 1, FormatError, path_, ": ", what,
                    " must hold exactly one value");
  }

  std::vector<std::string> attribute_names(hid_t loc, const std::string& where) {
    std::vector<std::string> names;
    hsize_t index = 0;
    h5_check<FormatError>(
        H5Aiterate2(loc, H5_INDEX_NAME, H5_ITER_INC, &index, collect_attr_name, &names), path_,
        "cannot list the attributes of " + where);
    return names;
  }

  static herr_t collect_name(hid_t, const char* name, const H5L_info_t*, void* data) {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  }
  static herr_t collect_attr_name(hid_t, const char* name, const H5A_info_t*, void* data) {
    static_cast<std::vector<std::string>*>(data)->emplace_back(name);
    return 0;
  }

  std::string path_;
  Handle file_;
  Handle root_;
  int format_version_ = 0;
};

std::string parse_encoding(Reader& reader, hid_t group, const std::string& tensor) {
  const std::string where = "/tensors/" + tensor;
  std::string encoding = reader.required_string(group, "encoding", where);
  MCOMPRESS_CHECK(
      std::find(kKnownEncodings.begin(), kKnownEncodings.end(), encoding) != kKnownEncodings.end(),
      FormatError, reader.path(), ": tensor '", tensor, "' has unknown encoding '", encoding,
      "'; accepted: ", join(kKnownEncodings));
  return encoding;
}

std::string parse_layout(Reader& reader, hid_t group, const std::string& tensor) {
  const std::string where = "/tensors/" + tensor;
  std::string layout = reader.required_string(group, "layout", where);
  MCOMPRESS_CHECK(
      std::find(kKnownLayouts.begin(), kKnownLayouts.end(), layout) != kKnownLayouts.end(),
      FormatError, reader.path(), ": tensor '", tensor, "' has unknown layout '", layout,
      "'; accepted: ", join(kKnownLayouts));
  return layout;
}

// One tensor as loaded: the fp32 master, the stored encoding when it is not fp32, and the
// pruning mask when the file marks the tensor as pruned.
struct LoadedTensor {
  at::Tensor master;
  std::optional<QuantizedTensor> quantized;
  at::Tensor mask;
};

// The values dataset of a tensor, checked to have the encoding's type and read with `shape`
// (the tensor's shape when dense, [nnz] when sparse): float32, at::kHalf / at::kBFloat16 bit
// patterns, or int8 codes.
at::Tensor read_values(Reader& reader, hid_t values, Encoding encoding,
                       const std::vector<int64_t>& shape, const std::string& name) {
  const std::string& path = reader.path();
  Handle type = checked<FormatError>(H5Dget_type(values), H5Tclose, path,
                                     "cannot read the type of /tensors/" + name + "/values");
  at::Tensor out = at::empty(shape, value_dtype(encoding));
  switch (encoding) {
    case Encoding::kFp32:
      // Reading a float64 dataset as float32 would silently round; fp32 means 32-bit floats.
      MCOMPRESS_CHECK(H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4, FormatError, path,
                      ": tensor '", name,
                      "' has encoding fp32 but its values are not 32-bit floats (",
                      H5Tget_size(type), "-byte ",
                      H5Tget_class(type) == H5T_FLOAT ? "float" : "non-float", ")");
      if (out.numel() > 0) reader.read_floats(values, out.data_ptr<float>(), name);
      break;
    case Encoding::kFp16:
    case Encoding::kBf16: {
      const HalfFormat& format = half_format(encoding);
      MCOMPRESS_CHECK(is_half_format(type, format), FormatError, path, ": tensor '", name,
                      "' has encoding ", to_string(encoding), " but its values are not ",
                      format.description, " (", describe_type(type), ")");
      if (out.numel() > 0) {
        // Memory type = the stored type (up to byte order): HDF5 copies the 16-bit patterns.
        Handle mem_type = half_float_type<FormatError>(format, H5T_NATIVE_FLOAT, path);
        reader.read_data(values, mem_type, out.data_ptr(), name, "values");
      }
      break;
    }
    case Encoding::kInt8:
      MCOMPRESS_CHECK(H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1 &&
                          H5Tget_sign(type) == H5T_SGN_2,
                      FormatError, path, ": tensor '", name,
                      "' has encoding int8 but its values are not 8-bit signed integers (",
                      describe_type(type), ")");
      if (out.numel() > 0)
        reader.read_data(values, H5T_NATIVE_INT8, out.data_ptr(), name, "values");
      break;
    case Encoding::kCodebook:  // read_codebook reads its packed `codes` instead
      throw FormatError(path + ": tensor '" + name + "' (codebook) has no values dataset");
  }
  return out;
}

// A one-dimensional float32 dataset of a tensor group (an int8 tensor's scale, a codebook's
// shared values), checked for its rank and type.
at::Tensor read_float_vector(Reader& reader, hid_t group, const std::string& name,
                             const char* encoding, const char* member) {
  const std::string& path = reader.path();
  const std::string where = "/tensors/" + name + "/" + member;
  Handle dataset = reader.open_dataset(group, member, where);
  const std::vector<int64_t> shape = reader.dataset_shape(dataset, where);
  MCOMPRESS_CHECK(shape.size() == 1, FormatError, path, ": tensor '", name, "' (", encoding,
                  ") has a ", member, " dataset of shape ", shape_to_string(shape),
                  ", expected one dimension");
  Handle type = checked<FormatError>(H5Dget_type(dataset), H5Tclose, path,
                                     "cannot read the type of " + where);
  MCOMPRESS_CHECK(H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4, FormatError, path,
                  ": tensor '", name, "' (", encoding, ") has a ", member,
                  " dataset that is not 32-bit floats (", describe_type(type), ")");
  at::Tensor out = at::empty(shape, at::kFloat);
  if (out.numel() > 0) reader.read_data(dataset, H5T_NATIVE_FLOAT, out.data_ptr(), name, member);
  return out;
}

// The datasets and attributes of an int8 tensor besides "values" (left undefined).
QuantizedTensor read_int8_params(Reader& reader, hid_t group, const std::string& name) {
  const std::string& path = reader.path();
  const std::string where = "/tensors/" + name;
  QuantizedTensor q;
  q.encoding = Encoding::kInt8;

  std::optional<int64_t> axis =
      reader.integer_attr<int64_t>(group, "axis", where, H5T_NATIVE_INT64);
  MCOMPRESS_CHECK(axis.has_value(), FormatError, path, ": tensor '", name,
                  "' (int8) has no 'axis' attribute");
  q.axis = *axis;

  q.scale = read_float_vector(reader, group, name, "int8", "scale");

  Handle zero_point = reader.open_dataset(group, "zero_point", where + "/zero_point");
  const std::vector<int64_t> zp_shape = reader.dataset_shape(zero_point, where + "/zero_point");
  MCOMPRESS_CHECK(zp_shape.size() == 1, FormatError, path, ": tensor '", name,
                  "' (int8) has a zero_point dataset of shape ", shape_to_string(zp_shape),
                  ", expected one dimension");
  Handle zp_type = checked<FormatError>(H5Dget_type(zero_point), H5Tclose, path,
                                        "cannot read the type of " + where + "/zero_point");
  MCOMPRESS_CHECK(H5Tget_class(zp_type) == H5T_INTEGER, FormatError, path, ": tensor '", name,
                  "' (int8) has a zero_point dataset that is not integers (",
                  describe_type(zp_type), ")");
  // Read wide, then narrow with saturation so that an out-of-range value stays out of range
  // for check_quantized to report.
  std::vector<int64_t> wide(static_cast<size_t>(zp_shape[0]));
  if (!wide.empty())
    reader.read_data(zero_point, H5T_NATIVE_INT64, wide.data(), name, "zero_point");
  q.zero_point = at::empty(zp_shape, at::kInt);
  int32_t* zp = q.zero_point.data_ptr<int32_t>();
  for (size_t i = 0; i < wide.size(); ++i) {
    zp[i] = static_cast<int32_t>(std::clamp<int64_t>(wide[i], std::numeric_limits<int32_t>::min(),
                                                     std::numeric_limits<int32_t>::max()));
  }
  return q;
}

// A one-dimensional integer dataset of a sparse tensor (indices, indptr) as int64; any
// integer type is accepted.
std::vector<int64_t> read_index_dataset(Reader& reader, hid_t group, const std::string& name,
                                        const std::string& member) {
  const std::string& path = reader.path();
  const std::string where = "/tensors/" + name + "/" + member;
  Handle dataset = reader.open_dataset(group, member, where);
  const std::vector<int64_t> shape = reader.dataset_shape(dataset, where);
  MCOMPRESS_CHECK(shape.size() == 1, FormatError, path, ": tensor '", name, "' (sparse) has an ",
                  member, " dataset of shape ", shape_to_string(shape), ", expected one dimension");
  Handle type = checked<FormatError>(H5Dget_type(dataset), H5Tclose, path,
                                     "cannot read the type of " + where);
  MCOMPRESS_CHECK(H5Tget_class(type) == H5T_INTEGER, FormatError, path, ": tensor '", name,
                  "' (sparse) has an ", member, " dataset that is not integers (",
                  describe_type(type), ")");
  std::vector<int64_t> out(static_cast<size_t>(shape[0]));
  if (!out.empty()) reader.read_data(dataset, H5T_NATIVE_INT64, out.data(), name, member);
  return out;
}

// The CSR structure of a sparse tensor with `nnz` stored values, checked against docs/format.md
// §4.6, as the flat (row-major) position of each stored value in the dense tensor.
std::vector<int64_t> read_csr_positions(Reader& reader, hid_t group, const std::string& name,
                                        const std::vector<int64_t>& shape, int64_t nnz) {
  const std::string& path = reader.path();
  const std::string where = "/tensors/" + name;
  MCOMPRESS_CHECK(!shape.empty(), FormatError, path, ": tensor '", name,
                  "' is sparse but has rank 0; the sparse layout needs at least one dimension");
  const int64_t rows = shape[0];
  const int64_t columns = csr_columns(shape);
  const std::vector<int64_t> indptr = read_index_dataset(reader, group, name, "indptr");
  const std::string tensor = "tensor '" + name + "' (sparse)";
  // Version 2 writes the column indices row-delta coded, version 1 absolute; a reader takes
  // whichever one the group has.
  const bool has_absolute = reader.link_exists(group, "indices");
  const bool delta = reader.link_exists(group, "indices_delta");
  MCOMPRESS_CHECK(!(has_absolute && delta), FormatError, path, ": ", tensor,
                  " has both 'indices' and 'indices_delta'; expected one of them");
  const std::vector<int64_t> indices =
      read_index_dataset(reader, group, name, delta ? "indices_delta" : "indices");

  MCOMPRESS_CHECK(static_cast<int64_t>(indptr.size()) == rows + 1, FormatError, path, ": ", tensor,
                  " has an indptr of ", indptr.size(), " entries, expected ", rows + 1,
                  " (shape[0] + 1)");
  MCOMPRESS_CHECK(static_cast<int64_t>(indices.size()) == nnz, FormatError, path, ": ", tensor,
                  " has ", indices.size(), " indices but ", nnz,
                  " values; expected one column index per stored value");
  MCOMPRESS_CHECK(indptr.front() == 0, FormatError, path, ": ", tensor,
                  " has indptr[0] = ", indptr.front(), ", expected 0");
  for (int64_t r = 0; r < rows; ++r) {
    const auto i = static_cast<size_t>(r);
    MCOMPRESS_CHECK(indptr[i + 1] >= indptr[i], FormatError, path, ": ", tensor,
                    " has a decreasing indptr at row ", r, " (", indptr[i], " then ", indptr[i + 1],
                    "); it must be non-decreasing");
  }
  MCOMPRESS_CHECK(indptr.back() == nnz, FormatError, path, ": ", tensor, " has indptr ending at ",
                  indptr.back(), ", expected ", nnz, " (the number of stored values)");

  std::vector<int64_t> positions(indices.size());
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t begin = indptr[static_cast<size_t>(r)];
    int64_t previous = -1;
    for (int64_t k = begin; k < indptr[static_cast<size_t>(r) + 1]; ++k) {
      const int64_t stored = indices[static_cast<size_t>(k)];
      if (delta && k > begin) {
        MCOMPRESS_CHECK(stored >= 1, FormatError, path, ": ", tensor,
                        " has column indices out of order in row ", r, " (gap ", stored,
                        " after column ", previous, "); each gap in indices_delta must be ≥ 1");
        // Checked before adding, so a huge gap cannot overflow.
        MCOMPRESS_CHECK(stored < columns - previous, FormatError, path, ": ", tensor,
                        " has column index ", previous, " + ", stored, " in row ", r,
                        ", expected 0 to ", columns - 1);
      }
      const int64_t column = delta && k > begin ? previous + stored : stored;
      MCOMPRESS_CHECK(column >= 0 && column < columns, FormatError, path, ": ", tensor,
                      " has column index ", column, " in row ", r, ", expected 0 to ", columns - 1);
      MCOMPRESS_CHECK(k == begin || column > previous, FormatError, path, ": ", tensor,
                      " has column indices out of order in row ", r, " (", column, " after ",
                      previous, "); they must be strictly increasing within a row");
      positions[static_cast<size_t>(k)] = r * columns + column;
      previous = column;
    }
  }

  std::optional<double> density = reader.float_attr(group, "density", where);
  MCOMPRESS_CHECK(density.has_value(), FormatError, path, ": ", tensor,
                  " has no 'density' attribute");
  const double expected = static_cast<double>(nnz) / static_cast<double>(product(shape));
  // 1e-6 leaves room for a writer that stores density as float32.
  MCOMPRESS_CHECK(std::abs(*density - expected) <= 1e-6, FormatError, path, ": ", tensor,
                  " has density ", *density, " but stores ", nnz, " of ", product(shape),
                  " entries (", expected, ")");
  return positions;
}

// The dense tensor of a sparse one: the implicit zeros (+0.0, or for int8 each channel's zero
// point; `q` passed check_quantized) with the stored values at their positions.
at::Tensor densify(const at::Tensor& stored, const std::vector<int64_t>& positions,
                   const std::vector<int64_t>& shape, const QuantizedTensor* q) {
  at::Tensor dense = at::zeros(shape, stored.scalar_type());
  if (q != nullptr && q->encoding == Encoding::kInt8) dense.copy_(zero_codes(*q, dense.dim()));
  if (!positions.empty()) {
    const at::Tensor index = at::tensor(positions, at::kLong);
    dense.view({-1}).index_copy_(0, index, stored);
  }
  return dense;
}

// A codebook tensor (docs/format.md §4.8): bits, shared values and codes, unpacked and, when
// sparse, placed at their CSR positions with the zero code everywhere else.
QuantizedTensor read_codebook(Reader& reader, hid_t group, const std::string& name,
                              const std::vector<int64_t>& shape, bool sparse) {
  const std::string& path = reader.path();
  const std::string where = "/tensors/" + name;
  QuantizedTensor q;
  q.encoding = Encoding::kCodebook;
  const std::optional<int64_t> bits =
      reader.integer_attr<int64_t>(group, "bits", where, H5T_NATIVE_INT64);
  MCOMPRESS_CHECK(bits.has_value(), FormatError, path, ": tensor '", name,
                  "' (codebook) has no 'bits' attribute");
  MCOMPRESS_CHECK(*bits >= 1 && *bits <= 8, FormatError, path, ": tensor '", name,
                  "' (codebook) has bits ", *bits, ", expected 1 to 8");
  q.bits = *bits;

  q.codebook = read_float_vector(reader, group, name, "codebook", "codebook");

  // How many codes: one per entry when dense, one per stored entry (per column index) when
  // sparse.
  int64_t count = product(shape);
  if (sparse) {
    const std::string member =
        reader.link_exists(group, "indices_delta") ? "indices_delta" : "indices";
    Handle index = reader.open_dataset(group, member, where + "/" + member);
    const std::vector<int64_t> index_shape = reader.dataset_shape(index, where + "/" + member);
    MCOMPRESS_CHECK(index_shape.size() == 1, FormatError, path, ": tensor '", name,
                    "' (sparse) has an ", member, " dataset of shape ",
                    shape_to_string(index_shape), ", expected one dimension");
    count = index_shape[0];
  }
  Handle codes = reader.open_dataset(group, "codes", where + "/codes");
  const std::vector<int64_t> codes_shape = reader.dataset_shape(codes, where + "/codes");
  Handle codes_type = checked<FormatError>(H5Dget_type(codes), H5Tclose, path,
                                           "cannot read the type of " + where + "/codes");
  MCOMPRESS_CHECK(H5Tget_class(codes_type) == H5T_INTEGER && H5Tget_size(codes_type) == 1 &&
                      H5Tget_sign(codes_type) == H5T_SGN_NONE,
                  FormatError, path, ": tensor '", name,
                  "' (codebook) has codes that are not 8-bit unsigned integers (",
                  describe_type(codes_type), ")");
  const int64_t expected = (count * q.bits + 7) / 8;
  MCOMPRESS_CHECK(codes_shape == std::vector<int64_t>{expected}, FormatError, path, ": tensor '",
                  name, "' (codebook) has a codes dataset of shape ", shape_to_string(codes_shape),
                  ", expected [", expected, "] (", count, " codes of ", q.bits, " bits, packed)");
  std::vector<uint8_t> packed(static_cast<size_t>(expected));
  if (!packed.empty()) reader.read_data(codes, H5T_NATIVE_UINT8, packed.data(), name, "codes");
  const std::vector<uint8_t> unpacked = unpack_codes(packed, count, q.bits);
  at::Tensor stored = at::empty({count}, at::kByte);
  std::copy(unpacked.begin(), unpacked.end(), stored.data_ptr<uint8_t>());

  if (!sparse) {
    q.values = stored.reshape(shape);
    return q;
  }
  const int64_t zero = zero_code(q.codebook);
  MCOMPRESS_CHECK(zero >= 0, FormatError, path, ": tensor '", name,
                  "' (codebook, sparse) has no +0.0 among its shared values; the entries a sparse "
                  "tensor does not store need one");
  const std::vector<int64_t> positions = read_csr_positions(reader, group, name, shape, count);
  q.values = at::full(shape, zero, at::kByte);
  if (!positions.empty())
    q.values.view({-1}).index_copy_(0, at::tensor(positions, at::kLong), stored);
  return q;
}

// The `values` of a non-codebook tensor, dense (sparse ones densified); int8 also gives its
// quantization parameters.
std::pair<std::optional<QuantizedTensor>, at::Tensor> read_stored_values(
    Reader& reader, hid_t group, const TensorInfo& info, Encoding encoding, bool sparse) {
  const std::string& name = info.name;
  const std::string& path = reader.path();
  const std::string where = "/tensors/" + name;
  Handle values = reader.open_dataset(group, "values", where + "/values");
  const std::vector<int64_t> stored = reader.dataset_shape(values, where + "/values");
  if (sparse) {
    MCOMPRESS_CHECK(stored.size() == 1, FormatError, path, ": tensor '", name,
                    "' (sparse) has a values dataset of shape ", shape_to_string(stored),
                    ", expected one dimension (the stored entries)");
  } else {
    MCOMPRESS_CHECK(stored == info.shape, FormatError, path, ": tensor '", name,
                    "' has a values dataset of shape ", shape_to_string(stored), ", expected ",
                    shape_to_string(info.shape));
  }

  std::optional<QuantizedTensor> q;
  if (encoding == Encoding::kInt8) {
    q = read_int8_params(reader, group, name);
    // Checked before densify() fills omitted entries with the zero points.
    q->values = at::empty(info.shape, at::kChar);
    check_quantized<FormatError>(path, name, *q, info.shape);
  }
  at::Tensor dense = read_values(reader, values, encoding, stored, name);
  if (sparse) {
    const std::vector<int64_t> positions =
        read_csr_positions(reader, group, name, info.shape, stored[0]);
    dense = densify(dense, positions, info.shape, q ? &*q : nullptr);
  }
  return {std::move(q), dense};
}

LoadedTensor read_tensor(Reader& reader, hid_t tensors, const TensorInfo& info) {
  const std::string& name = info.name;
  const std::string& path = reader.path();
  const std::string where = "/tensors/" + name;
  MCOMPRESS_CHECK(reader.link_exists(tensors, name), FormatError, path, ": missing tensor '", name,
                  "' (", shape_to_string(info.shape), ") that the architecture needs");
  Handle group = reader.open_group(tensors, name, where);

  const Encoding encoding = mcompress::parse_encoding(parse_encoding(reader, group, name));
  const bool sparse = parse_layout(reader, group, name) == "sparse";

  std::optional<std::vector<int64_t>> shape = reader.integer_array_attr(group, "shape", where);
  MCOMPRESS_CHECK(shape.has_value(), FormatError, path, ": tensor '", name,
                  "' has no 'shape' attribute");
  MCOMPRESS_CHECK(*shape == info.shape, FormatError, path, ": tensor '", name, "' has shape ",
                  shape_to_string(*shape), " in its 'shape' attribute, expected ",
                  shape_to_string(info.shape), " from the architecture");

  std::optional<QuantizedTensor> q;
  at::Tensor dense;
  if (encoding == Encoding::kCodebook) {
    q = read_codebook(reader, group, name, info.shape, sparse);
  } else {
    std::tie(q, dense) = read_stored_values(reader, group, info, encoding, sparse);
  }

  LoadedTensor out;
  if (encoding == Encoding::kFp32) {
    out.master = dense;
  } else {
    if (!q) {
      q.emplace();
      q->encoding = encoding;
    }
    if (encoding != Encoding::kCodebook) q->values = dense;
    check_quantized<FormatError>(path, name, *q, info.shape);
    // The model computes with the dequantized values (Model::quant's contract).
    out.master = q->dequantize().contiguous();
    out.quantized = std::move(q);
  }

  // fp16/bf16 Inf/NaN, or an int8 scale so large that (q - zero_point)·scale overflows.
  float bad = 0.0f;
  const int64_t index = first_non_finite(out.master, &bad);
  MCOMPRESS_CHECK(index < 0, ModelError, path, ": tensor '", name, "' has a non-finite value (",
                  bad, ") at flat index ", index,
                  encoding == Encoding::kInt8 ? " after dequantization" : "");

  // A pruned tensor's mask is its non-zero pattern (docs/format.md §4.7).
  const auto pruned = reader.integer_attr<int64_t>(group, "pruned", where, H5T_NATIVE_INT64);
  if (pruned.value_or(0) != 0) out.mask = out.master.ne(0);
  return out;
}

// Every tensor group of the file: the spec's in spec order, then any others by name.
std::vector<std::string> ordered_tensor_names(const std::vector<std::string>& in_file,
                                              const ArchSpec& spec) {
  std::set<std::string> remaining(in_file.begin(), in_file.end());
  std::vector<std::string> ordered;
  for (const TensorInfo& info : spec.tensors()) {
    if (remaining.erase(info.name) > 0) ordered.push_back(info.name);
  }
  ordered.insert(ordered.end(), remaining.begin(), remaining.end());
  return ordered;
}

StoredTensorInfo inspect_tensor(Reader& reader, hid_t tensors, const std::string& name) {
  const std::string where = "/tensors/" + name;
  Handle group = reader.open_group(tensors, name, where);
  StoredTensorInfo out;
  out.name = name;
  out.encoding = parse_encoding(reader, group, name);
  out.layout = parse_layout(reader, group, name);
  out.shape = reader.integer_array_attr(group, "shape", where).value_or(std::vector<int64_t>{});
  out.parameters = product(out.shape);

  for (const std::string& member : reader.member_names(group, where)) {
    H5O_info_t info;
    h5_check<FormatError>(H5Oget_info_by_name(group, member.c_str(), &info, H5P_DEFAULT),
                          reader.path(), "cannot look up " + where + "/" + member);
    if (info.type != H5O_TYPE_DATASET) continue;
    Handle dataset = reader.open_dataset(group, member, where + "/" + member);
    out.bytes_on_disk += static_cast<int64_t>(H5Dget_storage_size(dataset));
  }

  if (out.encoding == "codebook") {
    const QuantizedTensor q = read_codebook(reader, group, name, out.shape, out.layout == "sparse");
    check_quantized<FormatError>(reader.path(), name, q, out.shape);
    out.nonzeros = q.dequantize().ne(0).sum().item<int64_t>();
    return out;
  }
  // Non-zeros: stored values other than their element's zero (0, or for int8 the channel's
  // zero point); the entries a sparse tensor omits are zeros by definition.
  if (!reader.link_exists(group, "values")) return out;
  Handle values = reader.open_dataset(group, "values", where + "/values");
  std::vector<float> data(static_cast<size_t>(
      product(reader.dataset_shape(values, where + "/values"))));  // any encoding, as float
  if (!data.empty()) reader.read_floats(values, data.data(), name);
  // Inspection is lenient: with a zero_point that does not fit the tensor, codes are compared
  // with 0.
  std::vector<float> zero(1, 0.0f);
  int64_t inner = 1;  // elements per step of the channel axis
  if (out.encoding == "int8" && reader.link_exists(group, "zero_point")) {
    Handle zp = reader.open_dataset(group, "zero_point", where + "/zero_point");
    std::vector<float> stored(
        static_cast<size_t>(product(reader.dataset_shape(zp, where + "/zero_point"))));
    if (!stored.empty()) reader.read_data(zp, H5T_NATIVE_FLOAT, stored.data(), name, "zero_point");
    const int64_t axis =
        reader.integer_attr<int64_t>(group, "axis", where, H5T_NATIVE_INT64).value_or(-1);
    const auto& shape = out.shape;
    const bool per_channel =
        axis >= 0 && axis < static_cast<int64_t>(shape.size()) &&
        static_cast<int64_t>(stored.size()) == shape[static_cast<size_t>(axis)];
    if (stored.size() == 1 || per_channel) zero = stored;
    if (per_channel) {
      for (size_t d = static_cast<size_t>(axis) + 1; d < shape.size(); ++d) inner *= shape[d];
    }
  }
  std::vector<int64_t> positions;  // flat position of each stored value
  if (out.layout == "sparse") {
    positions =
        read_csr_positions(reader, group, name, out.shape, static_cast<int64_t>(data.size()));
  }
  const int64_t channels = static_cast<int64_t>(zero.size());
  for (size_t i = 0; i < data.size(); ++i) {
    const int64_t flat = positions.empty() ? static_cast<int64_t>(i) : positions[i];
    if (data[i] != zero[static_cast<size_t>((flat / inner) % channels)]) ++out.nonzeros;
  }
  return out;
}

// Removes the temporary file unless the save got as far as renaming it.
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  ~TempFileGuard() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove(path_, ec);
    }
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

std::string temp_path_for(const std::string& path) {
  static std::atomic<unsigned> counter{0};
  return path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
}

}  // namespace

void save_model(const Model& model, const std::string& path, const SaveOptions& options) {
  QuietHdf5Errors quiet;
  MCOMPRESS_CHECK(!path.empty(), IoError, "cannot save a model to an empty path");
  const fs::path target(path);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  const auto folder_status = fs::status(folder, ec);
  MCOMPRESS_CHECK(fs::exists(folder_status), IoError, path, ": cannot save, the folder '",
                  folder.string(), "' does not exist");
  MCOMPRESS_CHECK(fs::is_directory(folder_status), IoError, path, ": cannot save, '",
                  folder.string(), "' is not a folder");
  const auto target_status = fs::symlink_status(target, ec);
  if (fs::exists(target_status)) {
    MCOMPRESS_CHECK(!fs::is_directory(target_status), IoError, path,
                    ": is a folder; cannot save a model there");
    MCOMPRESS_CHECK(options.overwrite, IoError, path,
                    ": file exists; pass --force to overwrite it");
  }
  check_quant_state(model, path);
  check_masks(model, path);

  const std::string temp = temp_path_for(path);
  TempFileGuard guard(temp);
  {
    Handle fcpl = checked<IoError>(H5Pcreate(H5P_FILE_CREATE), H5Pclose, path,
                                   "cannot create a property list");
    // The root group is created with the file; keep its header free of timestamps too.
    h5_check<IoError>(H5Pset_obj_track_times(fcpl, false), path, "cannot disable time tracking");
    // HDF5's detail carries the errno text (e.g. "Permission denied" for a read-only folder).
    Handle fapl = checked<IoError>(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, path,
                                   "cannot create a property list");
    // The 1.10 object formats (single-chunk index, compact groups) cut the metadata of a
    // ResNet-8 file from ~200 KB to ~37 KB, which matters when reports compare file sizes.
    // Pinning both bounds keeps the bytes the same when the HDF5 library is upgraded.
    h5_check<IoError>(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110), path,
                      "cannot select the HDF5 1.10 file format");
    // No 2 KiB aggregation blocks for metadata and small datasets: their unused tails were
    // ~2 KB of a 38 KB pruned int8 mlp file. Each object gets exactly the space it needs.
    h5_check<IoError>(H5Pset_meta_block_size(fapl, 0), path, "cannot set the metadata block size");
    h5_check<IoError>(H5Pset_small_data_block_size(fapl, 0), path,
                      "cannot set the small-data block size");
    Handle file = checked<IoError>(
        H5Fcreate(temp.c_str(), H5F_ACC_EXCL, fcpl, fapl), H5Fclose, path,
        "cannot create the temporary file '" + temp + "'; is the folder writable?");
    write_model(file, model, path);
    h5_check<IoError>(H5Fflush(file, H5F_SCOPE_GLOBAL), path, "cannot flush '" + temp + "'");
    h5_check<IoError>(file.close(), path, "cannot close '" + temp + "'");
  }
  fsync_path(temp, O_RDONLY);
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    throw IoError(path + ": cannot rename the temporary file '" + temp +
                  "' into place: " + std::strerror(errno));
  }
  guard.release();
  fsync_path(folder.string(), O_RDONLY | O_DIRECTORY);  // makes the rename itself durable
}

Model load_model(const std::string& path) {
  QuietHdf5Errors quiet;
  Reader reader(path);
  ArchSpec spec = reader.arch();

  std::map<std::string, at::Tensor> tensors;
  QuantState quant;
  std::map<std::string, at::Tensor> masks;
  quant.mode = reader.quant_mode();
  {
    Handle group = reader.tensors_group();
    std::vector<TensorInfo> infos = spec.tensors();
    std::set<std::string> expected;
    for (const TensorInfo& info : infos) expected.insert(info.name);
    // A stray tensor means the file and its architecture disagree; refuse rather than guess.
    for (const std::string& name : reader.member_names(group, "/tensors")) {
      MCOMPRESS_CHECK(expected.count(name) != 0, FormatError, path, ": tensor '", name,
                      "' is stored in the file but is not a tensor of the architecture");
    }
    for (const TensorInfo& info : infos) {
      LoadedTensor loaded = read_tensor(reader, group, info);
      tensors.emplace(info.name, std::move(loaded.master));
      if (loaded.quantized) quant.tensors.emplace(info.name, std::move(*loaded.quantized));
      if (loaded.mask.defined()) masks.emplace(info.name, std::move(loaded.mask));
    }
  }
  quant.activations = reader.activations();

  Model model = [&] {
    try {
      return Model::from_tensors(spec, std::move(tensors));
    } catch (const ModelError& e) {
      throw ModelError(path + ": " + e.what());
    }
  }();
  model.quant = std::move(quant);
  model.masks = std::move(masks);
  model.history = reader.history();
  model.recipe = reader.recipe();
  model.seed = reader.seed();
  return model;
}

ModelFileSummary inspect_model_file(const std::string& path) {
  QuietHdf5Errors quiet;
  Reader reader(path);
  ModelFileSummary summary;
  summary.path = path;
  summary.format_version = reader.format_version();
  summary.producer = reader.string_attr(reader.root(), "producer", "/").value_or(std::string());
  ArchSpec spec = reader.arch(&summary.arch_json);
  {
    Handle group = reader.tensors_group();
    for (const std::string& name :
         ordered_tensor_names(reader.member_names(group, "/tensors"), spec)) {
      summary.tensors.push_back(inspect_tensor(reader, group, name));
    }
  }
  summary.history = reader.history();
  std::error_code ec;
  summary.file_bytes = static_cast<int64_t>(fs::file_size(path, ec));
  MCOMPRESS_CHECK(!ec, IoError, path, ": cannot read the file size: ", ec.message());
  return summary;
}

}  // namespace mcompress
