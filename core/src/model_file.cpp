// The HDF5 model file, format "mcompress-model" v3 (the packed container; v2's groups container
// is still written on request, and v1 read). docs/format.md is the specification; keep the two
// in step.
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
#include <nlohmann/json.hpp>

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
#include "packed_arrays.h"

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

// The element type of an encoding's stored values (docs/format.md §9.4).
packed::Dtype stored_dtype(Encoding encoding) {
  switch (encoding) {
    case Encoding::kFp16:
      return packed::Dtype::kFloat16;
    case Encoding::kBf16:
      return packed::Dtype::kBFloat16;
    case Encoding::kInt8:
      return packed::Dtype::kInt8;
    case Encoding::kCodebook:
      return packed::Dtype::kUInt8;
    case Encoding::kFp32:
      break;
  }
  return packed::Dtype::kFloat32;
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
                  packed::dtype_name(stored_dtype(q.encoding)));
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

// ---------------------------------------------------------------------------------------------
// The sparse layout (docs/format.md §4.6): CSR over the tensor viewed as shape[0] rows by
// product(shape[1:]) columns.

// Columns of that matrix.
int64_t csr_columns(const std::vector<int64_t>& shape) {
  return product(std::vector<int64_t>(shape.begin() + 1, shape.end()));
}

struct IndexType {
  packed::Dtype dtype;
  int64_t bytes;
};

// The smallest unsigned integer type holding `max_value`: a 784-column layer spends 2 bytes
// per column index instead of 8, which is what makes CSR pay off at moderate sparsity.
IndexType index_type(uint64_t max_value) {
  if (max_value <= 0xFFu) return {packed::Dtype::kUInt8, 1};
  if (max_value <= 0xFFFFu) return {packed::Dtype::kUInt16, 2};
  if (max_value <= 0xFFFFFFFFu) return {packed::Dtype::kUInt32, 4};
  return {packed::Dtype::kUInt64, 8};
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

// Where save_model puts one tensor: a /tensors/<name> group of datasets (the groups container,
// format v2) or a manifest entry with its arrays in the blob (the packed container, v3). The
// encoding decisions (dense or CSR, packing codes) are made once, above this interface.
class TensorSink {
 public:
  virtual ~TensorSink() = default;
  virtual void begin(const std::string& name, const std::vector<int64_t>& shape, Encoding encoding,
                     bool sparse) = 0;
  virtual void axis(int64_t axis) = 0;  // int8
  virtual void bits(int64_t bits) = 0;  // codebook
  virtual void pruned() = 0;
  virtual void density(double density) = 0;  // sparse; the packed container derives it
  // `data` holds product(shape) elements of type `given`, stored as `stored` (an integer type
  // that holds every value when the two differ).
  virtual void array(const std::string& member, const std::vector<int64_t>& shape,
                     packed::Dtype stored, packed::Dtype given, const void* data) = 0;
  virtual void end() = 0;
};

// The values as stored (contiguous, on the CPU), refusing any a load would reject: a file
// mcompress writes must be one it can load again. `q` passed check_quantized.
at::Tensor stored_values(const std::string& path, const std::string& name, const at::Tensor& master,
                         const QuantizedTensor* q) {
  if (q == nullptr) {
    MCOMPRESS_CHECK(master.scalar_type() == at::kFloat, ModelError, path, ": tensor '", name,
                    "' has dtype ", master.scalar_type(), ", expected float32");
    at::Tensor values = master.to(at::kCPU).contiguous();
    float bad = 0.0f;
    const int64_t index = first_non_finite(values, &bad);
    MCOMPRESS_CHECK(index < 0, ModelError, path, ": tensor '", name, "' has a non-finite value (",
                    bad, ") at flat index ", index, "; refusing to save it");
    return values;
  }
  at::Tensor values = q->values.to(at::kCPU).contiguous();
  if (q->encoding == Encoding::kFp16 || q->encoding == Encoding::kBf16) {
    float bad = 0.0f;
    const int64_t index = first_non_finite(values.to(at::kFloat).contiguous(), &bad);
    MCOMPRESS_CHECK(index < 0, ModelError, path, ": tensor '", name, "' (", to_string(q->encoding),
                    ") has a non-finite value (", bad, ") at flat index ", index,
                    "; refusing to save it");
  }
  return values;
}

// The CSR structure of a sparse tensor besides its values: density, columns (row-delta
// coded) and row offsets.
void write_csr_structure(TensorSink& sink, const Csr& csr, const std::vector<int64_t>& shape,
                         int64_t nnz) {
  sink.density(static_cast<double>(nnz) / static_cast<double>(product(shape)));
  const at::Tensor gaps = column_gaps(csr);
  const auto max_gap = static_cast<uint64_t>(nnz > 0 ? gaps.max().item<int64_t>() : 0);
  sink.array("indices_delta", {nnz}, index_type(max_gap).dtype, packed::Dtype::kInt64,
             gaps.data_ptr());
  sink.array("indptr", {shape[0] + 1}, index_type(static_cast<uint64_t>(nnz)).dtype,
             packed::Dtype::kInt64, csr.indptr.data_ptr());
}

// A codebook tensor (docs/format.md §4.8): the shared values and the packed codes, dense or
// CSR over the entries whose code is not the zero code.
void write_codebook_tensor(TensorSink& sink, const std::string& name, const QuantizedTensor& q,
                           bool pruned) {
  const at::Tensor codes = q.values.to(at::kCPU).contiguous();
  const at::Tensor book = q.codebook.to(at::kCPU).contiguous();
  const std::vector<int64_t> shape = codes.sizes().vec();
  const int64_t zero = zero_code(book);
  const at::Tensor keep = zero >= 0 ? codes.ne(zero) : at::ones_like(codes, at::kBool);
  const int64_t nnz = keep.sum().item<int64_t>();
  const LayoutBytes bytes = codebook_layout_bytes(shape, q.bits, nnz);
  const bool sparse = zero >= 0 && bytes.sparse < bytes.dense;

  sink.begin(name, shape, Encoding::kCodebook, sparse);
  sink.bits(q.bits);
  if (pruned) sink.pruned();
  sink.array("codebook", {book.numel()}, packed::Dtype::kFloat32, packed::Dtype::kFloat32,
             book.data_ptr());
  at::Tensor stored = codes.reshape({-1});
  if (sparse) {
    const Csr csr = to_csr(codes, keep);
    write_csr_structure(sink, csr, shape, nnz);
    stored = csr.values;
  }
  const std::vector<uint8_t> packed_codes =
      pack_codes(stored.data_ptr<uint8_t>(), stored.numel(), q.bits);
  sink.array("codes", {static_cast<int64_t>(packed_codes.size())}, packed::Dtype::kUInt8,
             packed::Dtype::kUInt8, packed_codes.data());
  sink.end();
}

// One tensor: the fp32 master, or its reduced encoding `q`. Dense or sparse, whichever has
// fewer bytes; `pruned` marks a tensor whose zeros are its mask.
void write_tensor(TensorSink& sink, const std::string& path, const std::string& name,
                  const at::Tensor& master, const QuantizedTensor* q, bool pruned) {
  if (q != nullptr && q->encoding == Encoding::kCodebook) {
    write_codebook_tensor(sink, name, *q, pruned);
    return;
  }
  const Encoding encoding = q != nullptr ? q->encoding : Encoding::kFp32;
  const at::Tensor values = stored_values(path, name, master, q);
  const std::vector<int64_t> shape = values.sizes().vec();
  const at::Tensor keep = stored_entries(values, q);
  const int64_t nnz = keep.sum().item<int64_t>();
  const LayoutBytes bytes = layout_bytes(shape, values.element_size(), nnz);
  const bool sparse = bytes.sparse < bytes.dense;
  const packed::Dtype dtype = stored_dtype(encoding);

  sink.begin(name, shape, encoding, sparse);
  if (encoding == Encoding::kInt8) sink.axis(q->axis);
  if (pruned) sink.pruned();
  if (sparse) {
    const Csr csr = to_csr(values, keep);
    sink.array("values", {nnz}, dtype, dtype, csr.values.data_ptr());
    write_csr_structure(sink, csr, shape, nnz);
  } else {
    sink.array("values", shape, dtype, dtype, values.data_ptr());
  }
  if (encoding == Encoding::kInt8) {
    const at::Tensor scale = q->scale.to(at::kCPU).contiguous();
    const at::Tensor zero_point = q->zero_point.to(at::kCPU).contiguous();
    sink.array("scale", {scale.numel()}, packed::Dtype::kFloat32, packed::Dtype::kFloat32,
               scale.data_ptr());
    sink.array("zero_point", {zero_point.numel()}, packed::Dtype::kInt32, packed::Dtype::kInt32,
               zero_point.data_ptr());
  }
  sink.end();
}

// The entries as JSON Lines (docs/format.md §6). A raw line break inside an entry can only be
// whitespace between JSON tokens (JSON escapes it inside strings), so it becomes a space and
// every entry stays one line.
std::string history_lines(const std::vector<std::string>& entries) {
  std::string lines;
  for (const std::string& entry : entries) {
    for (char c : entry) lines += c == '\n' || c == '\r' ? ' ' : c;
    lines += '\n';
  }
  return lines;
}

// HDF5 objects of the file: groups, attributes and datasets, for both containers.
class Writer {
 public:
  Writer(std::string path, bool shuffle_bytes)
      : path_(std::move(path)), shuffle_bytes_(shuffle_bytes) {
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

  // A dataset of `shape` in the file type of `stored`, written from memory of type `given`.
  // `filtered`: shuffle + deflate + Fletcher-32; otherwise Fletcher-32 only (the packed blob,
  // whose arrays are compressed one by one).
  void dataset(hid_t loc, const std::string& name, const std::vector<int64_t>& shape,
               packed::Dtype stored, packed::Dtype given, const void* data,
               const std::string& subject, bool filtered = true) {
    Handle file_half, mem_half;
    const hid_t file_type = hdf5_type<IoError>(stored, /*file=*/true, file_half, path_);
    const hid_t mem_type = hdf5_type<IoError>(given, /*file=*/false, mem_half, path_);
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
      std::vector<hsize_t> chunk =
          chunk_dims(dims, filtered ? kChunkTargetElements : kChunkTargetElements * 4);
      const std::string what = "cannot set up chunking/filters for " + subject;
      h5_check<IoError>(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), path_,
                        what);
      // Order matters: the checksum is computed last, over the compressed bytes on disk.
      if (filtered) {
        // The groups container shuffles every dataset (docs/format.md §4.5); the packed one
        // only where it does something, on multi-byte elements (none of its three datasets).
        if (shuffle_bytes_ || packed::itemsize(stored) > 1)
          h5_check<IoError>(H5Pset_shuffle(dcpl), path_, what);
        h5_check<IoError>(H5Pset_deflate(dcpl, kDeflateLevel), path_, what);
      }
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

 private:
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

  // Whole trailing dimensions first, then as many rows of the leading ones as fit the target.
  static std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims, hsize_t target) {
    std::vector<hsize_t> chunk(dims.size(), 1);
    hsize_t inner = 1;
    for (size_t i = dims.size(); i-- > 0;) {
      const hsize_t fit = std::max<hsize_t>(1, target / inner);
      chunk[i] = std::min(dims[i], fit);
      inner *= chunk[i];
    }
    return chunk;
  }

  std::string path_;
  bool shuffle_bytes_;
  Handle gcpl_;
};

// The groups container (format v2): /tensors/<name> with attributes and one dataset per array.
class GroupSink : public TensorSink {
 public:
  GroupSink(Writer& writer, hid_t tensors) : writer_(writer), tensors_(tensors) {}

  void begin(const std::string& name, const std::vector<int64_t>& shape, Encoding encoding,
             bool sparse) override {
    name_ = name;
    group_ = writer_.create_group(tensors_, name);
    writer_.shape_attr(group_, shape);
    writer_.string_attr(group_, "encoding", to_string(encoding));
    writer_.string_attr(group_, "layout", sparse ? "sparse" : "dense");
  }
  void axis(int64_t axis) override {
    writer_.scalar_attr<int64_t>(group_, "axis", H5T_STD_I64LE, H5T_NATIVE_INT64, axis);
  }
  void bits(int64_t bits) override {
    writer_.scalar_attr<int32_t>(group_, "bits", H5T_STD_I32LE, H5T_NATIVE_INT32,
                                 static_cast<int32_t>(bits));
  }
  void pruned() override {
    writer_.scalar_attr<int8_t>(group_, "pruned", H5T_STD_I8LE, H5T_NATIVE_INT8, 1);
  }
  void density(double density) override {
    writer_.scalar_attr<double>(group_, "density", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, density);
  }
  void array(const std::string& member, const std::vector<int64_t>& shape, packed::Dtype stored,
             packed::Dtype given, const void* data) override {
    writer_.dataset(group_, member, shape, stored, given, data, "tensor '" + name_ + "'");
  }
  void end() override { group_ = Handle(); }

 private:
  Writer& writer_;
  hid_t tensors_;
  std::string name_;
  Handle group_;
};

// The packed container (format v3): one manifest entry per tensor, its arrays compressed one
// by one into the blob.
class PackedSink : public TensorSink {
 public:
  void begin(const std::string& name, const std::vector<int64_t>& shape, Encoding encoding,
             bool sparse) override {
    entry_ = nlohmann::json::object();
    entry_["name"] = name;
    entry_["shape"] = shape;
    entry_["encoding"] = to_string(encoding);
    entry_["layout"] = sparse ? "sparse" : "dense";
    entry_["arrays"] = nlohmann::json::object();
  }
  void axis(int64_t axis) override { entry_["axis"] = axis; }
  void bits(int64_t bits) override { entry_["bits"] = bits; }
  void pruned() override { entry_["pruned"] = true; }
  void density(double) override {}
  void array(const std::string& member, const std::vector<int64_t>& shape, packed::Dtype stored,
             packed::Dtype given, const void* data) override {
    // Level 9 costs little on the small arrays of compressed models; level 4 is within ~1% of
    // it on large float32 weights at a fraction of the time.
    const int64_t bytes = product(shape) * static_cast<int64_t>(packed::itemsize(stored));
    const int level = bytes <= (int64_t{1} << 16) ? 9 : static_cast<int>(kDeflateLevel);
    const packed::ArrayDescriptor d =
        packed::append_array(blob_, stored, given, shape, data, level);
    entry_["arrays"][member] = {{"dtype", packed::dtype_name(d.dtype)},
                                {"shape", d.shape},
                                {"offset", d.offset},
                                {"size", d.size},
                                {"codec", d.codec}};
  }
  void end() override { tensors_.push_back(std::move(entry_)); }

  nlohmann::json take_tensors() { return std::move(tensors_); }
  const std::vector<uint8_t>& blob() const { return blob_; }

 private:
  nlohmann::json entry_;
  nlohmann::json tensors_ = nlohmann::json::array();
  std::vector<uint8_t> blob_;
};

void check_tensor_name(const std::string& path, const std::string& name) {
  MCOMPRESS_CHECK(!name.empty() && name.find('/') == std::string::npos && name != ".", ModelError,
                  path, ": tensor name '", name, "' cannot be an HDF5 group name");
}

void write_tensors(TensorSink& sink, const Model& model, const std::string& path) {
  for (const TensorInfo& info : model.tensor_infos()) {
    check_tensor_name(path, info.name);
    auto quantized = model.quant.tensors.find(info.name);
    write_tensor(sink, path, info.name, model.tensor(info.name),
                 quantized != model.quant.tensors.end() ? &quantized->second : nullptr,
                 model.masks.count(info.name) != 0);
  }
}

void write_root_attrs(Writer& writer, hid_t root, const Model& model, int format_version) {
  writer.string_attr(root, "format", kModelFormatName);
  writer.scalar_attr<int32_t>(root, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32,
                              format_version);
  writer.string_attr(root, "arch", model.spec().to_json_text());
  writer.string_attr(root, "producer", "mcompress " + version());
  writer.scalar_attr<uint64_t>(root, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, model.seed);
  writer.string_attr(root, "quant_mode", model.quant.mode);
}

void write_groups_model(hid_t file, const Model& model, const std::string& path) {
  Writer writer(path, /*shuffle_bytes=*/true);
  Handle root = checked<IoError>(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose, path,
                                 "cannot open the root group");
  write_root_attrs(writer, root, model, kGroupsFormatVersion);
  {
    Handle tensors = writer.create_group(root, "tensors");
    GroupSink sink(writer, tensors);
    write_tensors(sink, model, path);
  }
  if (!model.quant.activations.empty()) {
    Handle activations = writer.create_group(root, "activations");
    for (const auto& [key, params] : model.quant.activations) {  // std::map: sorted
      Handle group = writer.create_group(activations, key);
      writer.scalar_attr<double>(group, "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, params.scale);
      writer.scalar_attr<int64_t>(group, "zero_point", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                  params.zero_point);
      writer.string_attr(group, "observer", params.observer);
    }
  }
  {
    Handle history = writer.create_group(root, "history");
    if (!model.history.empty()) {
      const std::string lines = history_lines(model.history);
      writer.dataset(history, "entries", {static_cast<int64_t>(lines.size())},
                     packed::Dtype::kUInt8, packed::Dtype::kUInt8, lines.data(), "/history");
    }
  }
  {
    Handle recipe = writer.create_group(root, "recipe");
    writer.string_attr(recipe, "text", model.recipe);
    writer.scalar_attr<uint64_t>(recipe, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, model.seed);
  }
}

// docs/format.md §9: root attributes, /manifest (JSON), /blob (the arrays), /history.
void write_packed_model(hid_t file, const Model& model, const std::string& path) {
  Writer writer(path, /*shuffle_bytes=*/false);
  Handle root = checked<IoError>(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose, path,
                                 "cannot open the root group");
  write_root_attrs(writer, root, model, kModelFormatVersion);
  if (!model.recipe.empty()) writer.string_attr(root, "recipe", model.recipe);

  PackedSink sink;
  write_tensors(sink, model, path);
  nlohmann::json manifest = {{"tensors", sink.take_tensors()}};
  if (!model.quant.activations.empty()) {
    nlohmann::json activations = nlohmann::json::object();
    for (const auto& [key, params] : model.quant.activations) {
      activations[key] = {{"scale", params.scale},
                          {"zero_point", params.zero_point},
                          {"observer", params.observer}};
    }
    manifest["activations"] = std::move(activations);
  }
  const std::string text = manifest.dump();
  writer.dataset(root, "manifest", {static_cast<int64_t>(text.size())}, packed::Dtype::kUInt8,
                 packed::Dtype::kUInt8, text.data(), "/manifest");
  const std::vector<uint8_t>& blob = sink.blob();
  writer.dataset(root, "blob", {static_cast<int64_t>(blob.size())}, packed::Dtype::kUInt8,
                 packed::Dtype::kUInt8, blob.data(), "/blob", /*filtered=*/false);
  if (!model.history.empty()) {
    const std::string lines = history_lines(model.history);
    writer.dataset(root, "history", {static_cast<int64_t>(lines.size())}, packed::Dtype::kUInt8,
                   packed::Dtype::kUInt8, lines.data(), "/history");
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
    if (format_version_ >= 3) read_manifest();
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
    if (format_version_ >= 3) return split_lines(read_bytes(root_, "history", "/history"));
    Handle group = open_group(root_, "history", "/history");
    if (link_exists(group, "entries"))
      return split_lines(read_bytes(group, "entries", "/history/entries"));
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

  // A one-dimensional dataset of bytes (JSON text, the blob), whole.
  std::string read_bytes(hid_t loc, const std::string& name, const std::string& where) {
    Handle dataset = open_dataset(loc, name, where);
    const std::vector<int64_t> shape = dataset_shape(dataset, where);
    Handle type = checked<FormatError>(H5Dget_type(dataset), H5Tclose, path_,
                                       "cannot read the type of " + where);
    MCOMPRESS_CHECK(
        shape.size() == 1 && H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1,
        FormatError, path_, ": ", where, " must be a one-dimensional dataset of bytes");
    std::string bytes(static_cast<size_t>(shape[0]), '\0');
    if (!bytes.empty() &&
        H5Dread(dataset, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()) < 0) {
      throw FormatError(path_ + ": cannot read " + where + "; the data is corrupt " +
                        corrupt_data_detail());
    }
    return bytes;
  }

  static std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> entries;
    size_t begin = 0;
    while (begin < text.size()) {
      size_t end = text.find('\n', begin);
      if (end == std::string::npos) end = text.size();
      if (end > begin) entries.push_back(text.substr(begin, end - begin));
      begin = end + 1;
    }
    return entries;
  }

  // The recipe text; empty when the file has none.
  std::string recipe() {
    if (format_version_ >= 3) return string_attr(root_, "recipe", "/").value_or(std::string());
    if (!link_exists(root_, "recipe")) return {};
    Handle group = open_group(root_, "recipe", "/recipe");
    return string_attr(group, "text", "/recipe").value_or(std::string());
  }

  uint64_t seed() {
    if (auto seed = integer_attr<uint64_t>(root_, "seed", "/", H5T_NATIVE_UINT64)) return *seed;
    if (format_version_ >= 3 || !link_exists(root_, "recipe")) return 0;
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

  // Reads a whole dataset of tensor `tensor` (`member`: values, scale, ...) as `mem_type`.
  void read_data(hid_t dataset, hid_t mem_type, void* out, const std::string& tensor,
                 const std::string& member) {
    if (H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0) return;
    throw FormatError(path_ + ": tensor '" + tensor + "': cannot read its " + member +
                      "; the data is corrupt " + corrupt_data_detail());
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
    if (format_version_ >= 3) return manifest_activations();
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

  // The packed container (format v3): the manifest's tensor entries by name, in file order.
  const std::vector<std::string>& manifest_names() const { return manifest_order_; }
  const nlohmann::json* manifest_tensor(const std::string& name) const {
    auto it = manifest_tensors_.find(name);
    return it != manifest_tensors_.end() ? &it->second : nullptr;
  }
  // /blob, read once (every checksum of it verified on the way).
  const std::vector<uint8_t>& blob() {
    if (!blob_) {
      std::string bytes = read_bytes(root_, "blob", "/blob");
      blob_.emplace(bytes.begin(), bytes.end());
    }
    return *blob_;
  }

 private:
  // /manifest (docs/format.md §9.2): a JSON object with a "tensors" array of objects, each
  // with a unique string "name".
  void read_manifest() {
    MCOMPRESS_CHECK(link_exists(root_, "manifest"), FormatError, path_,
                    ": the dataset /manifest is missing (format v", format_version_,
                    " keeps its tensors in /manifest and /blob)");
    const std::string text = read_bytes(root_, "manifest", "/manifest");
    nlohmann::json manifest = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    MCOMPRESS_CHECK(!manifest.is_discarded(), FormatError, path_, ": /manifest is not valid JSON");
    MCOMPRESS_CHECK(
        manifest.is_object() && manifest.contains("tensors") && manifest["tensors"].is_array(),
        FormatError, path_, ": /manifest must be a JSON object with a 'tensors' array");
    size_t index = 0;
    for (nlohmann::json& entry : manifest["tensors"]) {
      MCOMPRESS_CHECK(entry.is_object() && entry.contains("name") && entry["name"].is_string(),
                      FormatError, path_, ": /manifest tensors[", index,
                      "] must be an object with a string 'name'");
      const std::string name = entry["name"].get<std::string>();
      MCOMPRESS_CHECK(!manifest_tensors_.count(name), FormatError, path_,
                      ": /manifest lists tensor '", name, "' twice");
      manifest_order_.push_back(name);
      manifest_tensors_.emplace(name, std::move(entry));
      ++index;
    }
    if (manifest.contains("activations")) {
      activations_ = std::move(manifest["activations"]);
      MCOMPRESS_CHECK(activations_.is_object(), FormatError, path_,
                      ": /manifest 'activations' must be a JSON object");
    }
  }

  std::map<std::string, ActivationQParams> manifest_activations() {
    std::map<std::string, ActivationQParams> out;
    if (activations_.is_null()) return out;
    for (const auto& [key, value] : activations_.items()) {
      const std::string where = ": /manifest activation '" + key + "'";
      MCOMPRESS_CHECK(value.is_object(), FormatError, path_, where, " must be a JSON object");
      MCOMPRESS_CHECK(value.contains("scale") && value["scale"].is_number(), FormatError, path_,
                      ": activation '", key, "' has no 'scale' number");
      MCOMPRESS_CHECK(value.contains("zero_point") && value["zero_point"].is_number_integer(),
                      FormatError, path_, ": activation '", key, "' has no 'zero_point' integer");
      ActivationQParams params;
      params.scale = value["scale"].get<double>();
      params.zero_point = value["zero_point"].get<int64_t>();
      if (value.contains("observer")) {
        MCOMPRESS_CHECK(value["observer"].is_string(), FormatError, path_, where,
                        ": 'observer' must be a string");
        params.observer = value["observer"].get<std::string>();
      }
      check_activation<FormatError>(path_, key, params);
      out.emplace(key, std::move(params));
    }
    return out;
  }

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
  std::vector<std::string> manifest_order_;
  std::map<std::string, nlohmann::json> manifest_tensors_;
  nlohmann::json activations_;
  std::optional<std::vector<uint8_t>> blob_;
};

// ---------------------------------------------------------------------------------------------
// Stored tensors, in either container

// An array of a stored tensor: its dimensions and element type.
struct ArrayInfo {
  std::vector<int64_t> shape;
  std::optional<packed::Dtype> dtype;  // nullopt: a type none of the encodings uses
  bool integer = false;
  std::string type;  // for messages: "4-byte float", "uint16", ...
};

// What a stored tensor offers the decoding below: its attributes (group attributes in v1/v2,
// manifest keys in v3) and its named arrays (datasets in v1/v2, blob arrays in v3).
class TensorEntry {
 public:
  TensorEntry(std::string path, std::string name)
      : path_(std::move(path)), name_(std::move(name)) {}
  virtual ~TensorEntry() = default;
  TensorEntry(const TensorEntry&) = delete;
  TensorEntry& operator=(const TensorEntry&) = delete;

  const std::string& path() const { return path_; }
  const std::string& name() const { return name_; }

  virtual std::optional<std::string> text(const std::string& key) = 0;
  virtual std::optional<int64_t> integer(const std::string& key) = 0;
  virtual std::optional<double> real(const std::string& key) = 0;
  virtual std::optional<std::vector<int64_t>> integers(const std::string& key) = 0;
  virtual bool has(const std::string& array) = 0;
  virtual std::vector<std::string> arrays() = 0;
  virtual ArrayInfo info(const std::string& array) = 0;  // FormatError when missing
  // The whole array as `as`: float32 from any type, int64 from any integer type, or its own
  // type. FormatError when the stored bytes are corrupt.
  virtual void read(const std::string& array, packed::Dtype as, void* out) = 0;
  virtual int64_t stored_bytes(const std::string& array) = 0;

  std::string required_text(const std::string& key) {
    std::optional<std::string> value = text(key);
    MCOMPRESS_CHECK(value.has_value(), FormatError, path_, ": attribute '", key, "' of ", where(),
                    " is missing");
    return *value;
  }
  virtual std::string where() const = 0;
  // Whether the container records a sparse tensor's density (v1/v2 do; v3 leaves it implicit).
  virtual bool stores_density() const = 0;

 private:
  std::string path_;
  std::string name_;
};

// Format v1/v2: the group /tensors/<name>.
class GroupEntry : public TensorEntry {
 public:
  GroupEntry(Reader& reader, hid_t tensors, const std::string& name)
      : TensorEntry(reader.path(), name), reader_(reader), where_("/tensors/" + name) {
    group_ = reader.open_group(tensors, name, where_);
  }
  std::string where() const override { return where_; }
  bool stores_density() const override { return true; }

  std::optional<std::string> text(const std::string& key) override {
    return reader_.string_attr(group_, key, where_);
  }
  std::optional<int64_t> integer(const std::string& key) override {
    return reader_.integer_attr<int64_t>(group_, key, where_, H5T_NATIVE_INT64);
  }
  std::optional<double> real(const std::string& key) override {
    return reader_.float_attr(group_, key, where_);
  }
  std::optional<std::vector<int64_t>> integers(const std::string& key) override {
    return reader_.integer_array_attr(group_, key, where_);
  }
  bool has(const std::string& array) override { return reader_.link_exists(group_, array); }
  std::vector<std::string> arrays() override {
    std::vector<std::string> out;
    for (const std::string& member : reader_.member_names(group_, where_)) {
      H5O_info_t info;
      h5_check<FormatError>(H5Oget_info_by_name(group_, member.c_str(), &info, H5P_DEFAULT), path(),
                            "cannot look up " + where_ + "/" + member);
      if (info.type == H5O_TYPE_DATASET) out.push_back(member);
    }
    return out;
  }
  ArrayInfo info(const std::string& array) override {
    const std::string where = where_ + "/" + array;
    Handle dataset = reader_.open_dataset(group_, array, where);
    ArrayInfo out;
    out.shape = reader_.dataset_shape(dataset, where);
    Handle type = checked<FormatError>(H5Dget_type(dataset), H5Tclose, path(),
                                       "cannot read the type of " + where);
    out.type = describe_type(type);
    const size_t size = H5Tget_size(type);
    using packed::Dtype;
    if (H5Tget_class(type) == H5T_FLOAT) {
      if (size == 4) out.dtype = Dtype::kFloat32;
      if (is_half_format(type, kFp16Format)) out.dtype = Dtype::kFloat16;
      if (is_half_format(type, kBf16Format)) out.dtype = Dtype::kBFloat16;
    } else if (H5Tget_class(type) == H5T_INTEGER) {
      out.integer = true;
      const bool is_signed = H5Tget_sign(type) == H5T_SGN_2;
      if (size == 1) out.dtype = is_signed ? Dtype::kInt8 : Dtype::kUInt8;
      if (size == 2 && !is_signed) out.dtype = Dtype::kUInt16;
      if (size == 4) out.dtype = is_signed ? Dtype::kInt32 : Dtype::kUInt32;
      if (size == 8) out.dtype = is_signed ? Dtype::kInt64 : Dtype::kUInt64;
    }
    return out;
  }
  void read(const std::string& array, packed::Dtype as, void* out) override {
    const std::string where = where_ + "/" + array;
    Handle dataset = reader_.open_dataset(group_, array, where);
    if (product(reader_.dataset_shape(dataset, where)) == 0) return;
    Handle half;  // HDF5 converts from the stored type (callers checked it) to `as`
    const hid_t mem_type = hdf5_type<FormatError>(as, /*file=*/false, half, path());
    reader_.read_data(dataset, mem_type, out, name(), array);
  }
  int64_t stored_bytes(const std::string& array) override {
    Handle dataset = reader_.open_dataset(group_, array, where_ + "/" + array);
    return static_cast<int64_t>(H5Dget_storage_size(dataset));
  }

 private:
  Reader& reader_;
  std::string where_;
  Handle group_;
};

// Format v3: a manifest entry and its arrays in /blob (docs/format.md §9).
class PackedEntry : public TensorEntry {
 public:
  PackedEntry(Reader& reader, const nlohmann::json& entry, const std::string& name)
      : TensorEntry(reader.path(), name), reader_(reader), entry_(entry) {
    if (entry_.contains("arrays")) {
      MCOMPRESS_CHECK(entry_["arrays"].is_object(), FormatError, path(), ": ", where(),
                      ": 'arrays' must be a JSON object");
    }
  }
  std::string where() const override { return "tensor '" + name() + "' of /manifest"; }
  bool stores_density() const override { return false; }

  std::optional<std::string> text(const std::string& key) override {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    MCOMPRESS_CHECK(value->is_string(), FormatError, path(), ": ", where(), ": '", key,
                    "' must be a string");
    return value->get<std::string>();
  }
  std::optional<int64_t> integer(const std::string& key) override {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    if (value->is_boolean()) return value->get<bool>() ? 1 : 0;
    MCOMPRESS_CHECK(value->is_number_integer(), FormatError, path(), ": ", where(), ": '", key,
                    "' must be an integer");
    return value->get<int64_t>();
  }
  std::optional<double> real(const std::string& key) override {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    MCOMPRESS_CHECK(value->is_number(), FormatError, path(), ": ", where(), ": '", key,
                    "' must be a number");
    return value->get<double>();
  }
  std::optional<std::vector<int64_t>> integers(const std::string& key) override {
    const nlohmann::json* value = find(key);
    if (value == nullptr) return std::nullopt;
    return integer_list(*value, "'" + key + "'");
  }
  bool has(const std::string& array) override {
    return entry_.contains("arrays") && entry_["arrays"].contains(array);
  }
  std::vector<std::string> arrays() override {
    std::vector<std::string> out;
    if (entry_.contains("arrays")) {
      for (const auto& [key, value] : entry_["arrays"].items()) out.push_back(key);
    }
    return out;
  }
  ArrayInfo info(const std::string& array) override {
    const packed::ArrayDescriptor d = descriptor(array);
    ArrayInfo out;
    out.shape = d.shape;
    out.dtype = d.dtype;
    out.integer = packed::is_integer(d.dtype);
    out.type = packed::dtype_name(d.dtype);
    return out;
  }
  void read(const std::string& array, packed::Dtype as, void* out) override {
    const packed::ArrayDescriptor d = descriptor(array);
    std::string why;
    std::optional<std::vector<uint8_t>> bytes = packed::decode_array(reader_.blob(), d, &why);
    MCOMPRESS_CHECK(bytes.has_value(), FormatError, path(), ": tensor '", name(), "': array '",
                    array, "' cannot be read: ", why);
    const int64_t count = product(d.shape);
    MCOMPRESS_CHECK(packed::convert(d.dtype, bytes->data(), count, as, out), FormatError, path(),
                    ": tensor '", name(), "': array '", array, "' has dtype ",
                    packed::dtype_name(d.dtype), ", which cannot be read as ",
                    packed::dtype_name(as));
  }
  int64_t stored_bytes(const std::string& array) override {
    return static_cast<int64_t>(descriptor(array).size);
  }

 private:
  const nlohmann::json* find(const std::string& key) const {
    auto it = entry_.find(key);
    return it != entry_.end() ? &*it : nullptr;
  }

  std::vector<int64_t> integer_list(const nlohmann::json& value, const std::string& what) {
    MCOMPRESS_CHECK(value.is_array(), FormatError, path(), ": ", where(), ": ", what,
                    " must be a list of integers");
    std::vector<int64_t> out;
    for (const nlohmann::json& item : value) {
      MCOMPRESS_CHECK(item.is_number_integer(), FormatError, path(), ": ", where(), ": ", what,
                      " must be a list of integers");
      out.push_back(item.get<int64_t>());
    }
    return out;
  }

  packed::ArrayDescriptor descriptor(const std::string& array) {
    MCOMPRESS_CHECK(has(array), FormatError, path(), ": tensor '", name(), "' has no array '",
                    array, "' in /manifest");
    const nlohmann::json& d = entry_["arrays"][array];
    const std::string what = "tensor '" + name() + "': array '" + array + "'";
    MCOMPRESS_CHECK(d.is_object(), FormatError, path(), ": ", what, " must be a JSON object");
    for (const char* key : {"dtype", "codec"}) {
      MCOMPRESS_CHECK(d.contains(key) && d[key].is_string(), FormatError, path(), ": ", what,
                      " needs a string '", key, "'");
    }
    for (const char* key : {"offset", "size"}) {
      MCOMPRESS_CHECK(d.contains(key) && d[key].is_number_unsigned(), FormatError, path(), ": ",
                      what, " needs a non-negative integer '", key, "'");
    }
    MCOMPRESS_CHECK(d.contains("shape"), FormatError, path(), ": ", what, " needs a 'shape'");
    packed::ArrayDescriptor out;
    const std::string dtype = d["dtype"].get<std::string>();
    const std::optional<packed::Dtype> parsed = packed::parse_dtype(dtype);
    MCOMPRESS_CHECK(parsed.has_value(), FormatError, path(), ": ", what, " has unknown dtype '",
                    dtype, "'; accepted: ", packed::known_dtypes());
    out.dtype = *parsed;
    out.shape = integer_list(d["shape"], "the shape of array '" + array + "'");
    for (int64_t dim : out.shape) {
      MCOMPRESS_CHECK(dim >= 0, FormatError, path(), ": ", what, " has a negative dimension ", dim);
    }
    out.offset = d["offset"].get<uint64_t>();
    out.size = d["size"].get<uint64_t>();
    out.codec = d["codec"].get<std::string>();
    const auto& codecs = packed::known_codecs();
    MCOMPRESS_CHECK(std::find(codecs.begin(), codecs.end(), out.codec) != codecs.end(), FormatError,
                    path(), ": ", what, " has unknown codec '", out.codec,
                    "'; accepted: ", join(codecs));
    // Before anyone allocates for its shape: the shape must fit the bytes it claims.
    std::string why;
    MCOMPRESS_CHECK(packed::decoded_size(out, reader_.blob().size(), &why).has_value(), FormatError,
                    path(), ": ", what, " cannot be read: ", why);
    return out;
  }

  Reader& reader_;
  const nlohmann::json& entry_;
};

// The stored tensors of a file, in either container.
class StoredTensors {
 public:
  explicit StoredTensors(Reader& reader) : reader_(reader) {
    if (reader.format_version() < 3) {
      tensors_ = reader.tensors_group();
      names_ = reader.member_names(tensors_, "/tensors");
    } else {
      names_ = reader.manifest_names();
    }
  }
  const std::vector<std::string>& names() const { return names_; }
  bool has(const std::string& name) const {
    return std::find(names_.begin(), names_.end(), name) != names_.end();
  }
  std::unique_ptr<TensorEntry> open(const std::string& name) {
    if (reader_.format_version() < 3) return std::make_unique<GroupEntry>(reader_, tensors_, name);
    return std::make_unique<PackedEntry>(reader_, *reader_.manifest_tensor(name), name);
  }

 private:
  Reader& reader_;
  Handle tensors_;
  std::vector<std::string> names_;
};

std::string parse_encoding(TensorEntry& entry) {
  std::string encoding = entry.required_text("encoding");
  MCOMPRESS_CHECK(
      std::find(kKnownEncodings.begin(), kKnownEncodings.end(), encoding) != kKnownEncodings.end(),
      FormatError, entry.path(), ": tensor '", entry.name(), "' has unknown encoding '", encoding,
      "'; accepted: ", join(kKnownEncodings));
  return encoding;
}

std::string parse_layout(TensorEntry& entry) {
  std::string layout = entry.required_text("layout");
  MCOMPRESS_CHECK(
      std::find(kKnownLayouts.begin(), kKnownLayouts.end(), layout) != kKnownLayouts.end(),
      FormatError, entry.path(), ": tensor '", entry.name(), "' has unknown layout '", layout,
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

// The values array of a tensor, checked to have the encoding's type and read with `shape`
// (the tensor's shape when dense, [nnz] when sparse): float32, at::kHalf / at::kBFloat16 bit
// patterns, or int8 codes.
at::Tensor read_values(TensorEntry& entry, const ArrayInfo& info, Encoding encoding,
                       const std::vector<int64_t>& shape) {
  const std::string& path = entry.path();
  const std::string& name = entry.name();
  at::Tensor out = at::empty(shape, value_dtype(encoding));
  switch (encoding) {
    case Encoding::kFp32:
      // Reading a float64 dataset as float32 would silently round; fp32 means 32-bit floats.
      MCOMPRESS_CHECK(info.dtype == packed::Dtype::kFloat32, FormatError, path, ": tensor '", name,
                      "' has encoding fp32 but its values are not 32-bit floats (", info.type, ")");
      break;
    case Encoding::kFp16:
    case Encoding::kBf16: {
      const HalfFormat& format = half_format(encoding);
      MCOMPRESS_CHECK(info.dtype == stored_dtype(encoding), FormatError, path, ": tensor '", name,
                      "' has encoding ", to_string(encoding), " but its values are not ",
                      format.description, " (", info.type, ")");
      break;
    }
    case Encoding::kInt8:
      MCOMPRESS_CHECK(info.dtype == packed::Dtype::kInt8, FormatError, path, ": tensor '", name,
                      "' has encoding int8 but its values are not 8-bit signed integers (",
                      info.type, ")");
      break;
    case Encoding::kCodebook:  // read_codebook reads its packed `codes` instead
      throw FormatError(path + ": tensor '" + name + "' (codebook) has no values dataset");
  }
  if (out.numel() > 0) entry.read("values", stored_dtype(encoding), out.data_ptr());
  return out;
}

// A one-dimensional float32 array of a tensor (an int8 tensor's scale, a codebook's shared
// values), checked for its rank and type.
at::Tensor read_float_vector(TensorEntry& entry, const char* encoding, const char* member) {
  const std::string& path = entry.path();
  const std::string& name = entry.name();
  const ArrayInfo info = entry.info(member);
  MCOMPRESS_CHECK(info.shape.size() == 1, FormatError, path, ": tensor '", name, "' (", encoding,
                  ") has a ", member, " dataset of shape ", shape_to_string(info.shape),
                  ", expected one dimension");
  MCOMPRESS_CHECK(info.dtype == packed::Dtype::kFloat32, FormatError, path, ": tensor '", name,
                  "' (", encoding, ") has a ", member, " dataset that is not 32-bit floats (",
                  info.type, ")");
  at::Tensor out = at::empty(info.shape, at::kFloat);
  if (out.numel() > 0) entry.read(member, packed::Dtype::kFloat32, out.data_ptr());
  return out;
}

// A one-dimensional integer array of a tensor (indices, indptr, zero_point) as int64; any
// integer type is accepted.
std::vector<int64_t> read_integer_vector(TensorEntry& entry, const std::string& member,
                                         const char* owner) {
  const std::string& path = entry.path();
  const ArrayInfo info = entry.info(member);
  const char* article = member[0] == 'i' ? "an " : "a ";  // indices, indptr; zero_point
  MCOMPRESS_CHECK(info.shape.size() == 1, FormatError, path, ": tensor '", entry.name(), "' (",
                  owner, ") has ", article, member, " dataset of shape ",
                  shape_to_string(info.shape), ", expected one dimension");
  MCOMPRESS_CHECK(info.integer, FormatError, path, ": tensor '", entry.name(), "' (", owner,
                  ") has ", article, member, " dataset that is not integers (", info.type, ")");
  std::vector<int64_t> out(static_cast<size_t>(info.shape[0]));
  if (!out.empty()) entry.read(member, packed::Dtype::kInt64, out.data());
  return out;
}

// The arrays and attributes of an int8 tensor besides "values" (left undefined).
QuantizedTensor read_int8_params(TensorEntry& entry) {
  const std::string& path = entry.path();
  const std::string& name = entry.name();
  QuantizedTensor q;
  q.encoding = Encoding::kInt8;

  std::optional<int64_t> axis = entry.integer("axis");
  MCOMPRESS_CHECK(axis.has_value(), FormatError, path, ": tensor '", name,
                  "' (int8) has no 'axis' attribute");
  q.axis = *axis;

  q.scale = read_float_vector(entry, "int8", "scale");
  // Read wide, then narrow with saturation so that an out-of-range value stays out of range
  // for check_quantized to report.
  const std::vector<int64_t> wide = read_integer_vector(entry, "zero_point", "int8");
  q.zero_point = at::empty({static_cast<int64_t>(wide.size())}, at::kInt);
  int32_t* zp = q.zero_point.data_ptr<int32_t>();
  for (size_t i = 0; i < wide.size(); ++i) {
    zp[i] = static_cast<int32_t>(std::clamp<int64_t>(wide[i], std::numeric_limits<int32_t>::min(),
                                                     std::numeric_limits<int32_t>::max()));
  }
  return q;
}

// The name of a sparse tensor's column-index array: indices_delta (v2, v3) or indices (v1).
std::string index_member(TensorEntry& entry) {
  const bool absolute = entry.has("indices");
  const bool delta = entry.has("indices_delta");
  MCOMPRESS_CHECK(!(absolute && delta), FormatError, entry.path(), ": tensor '", entry.name(),
                  "' (sparse) has both 'indices' and 'indices_delta'; expected one of them");
  return delta ? "indices_delta" : "indices";
}

// The CSR structure of a sparse tensor with `nnz` stored values, checked against docs/format.md
// §4.6, as the flat (row-major) position of each stored value in the dense tensor.
std::vector<int64_t> read_csr_positions(TensorEntry& entry, const std::vector<int64_t>& shape,
                                        int64_t nnz) {
  const std::string& path = entry.path();
  const std::string& name = entry.name();
  MCOMPRESS_CHECK(!shape.empty(), FormatError, path, ": tensor '", name,
                  "' is sparse but has rank 0; the sparse layout needs at least one dimension");
  const int64_t rows = shape[0];
  const int64_t columns = csr_columns(shape);
  const std::vector<int64_t> indptr = read_integer_vector(entry, "indptr", "sparse");
  const std::string tensor = "tensor '" + name + "' (sparse)";
  // Version 2 and 3 write the column indices row-delta coded, version 1 absolute.
  const std::string member = index_member(entry);
  const bool delta = member == "indices_delta";
  const std::vector<int64_t> indices = read_integer_vector(entry, member, "sparse");

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

  // v1/v2 store the density (v3 leaves it implicit); when present it must agree.
  std::optional<double> density = entry.real("density");
  MCOMPRESS_CHECK(density.has_value() || !entry.stores_density(), FormatError, path, ": ", tensor,
                  " has no 'density' attribute");
  if (density) {
    const double expected = static_cast<double>(nnz) / static_cast<double>(product(shape));
    // 1e-6 leaves room for a writer that stores density as float32.
    MCOMPRESS_CHECK(std::abs(*density - expected) <= 1e-6, FormatError, path, ": ", tensor,
                    " has density ", *density, " but stores ", nnz, " of ", product(shape),
                    " entries (", expected, ")");
  }
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
QuantizedTensor read_codebook(TensorEntry& entry, const std::vector<int64_t>& shape, bool sparse) {
  const std::string& path = entry.path();
  const std::string& name = entry.name();
  QuantizedTensor q;
  q.encoding = Encoding::kCodebook;
  const std::optional<int64_t> bits = entry.integer("bits");
  MCOMPRESS_CHECK(bits.has_value(), FormatError, path, ": tensor '", name,
                  "' (codebook) has no 'bits' attribute");
  MCOMPRESS_CHECK(*bits >= 1 && *bits <= 8, FormatError, path, ": tensor '", name,
                  "' (codebook) has bits ", *bits, ", expected 1 to 8");
  q.bits = *bits;

  q.codebook = read_float_vector(entry, "codebook", "codebook");

  // How many codes: one per entry when dense, one per stored entry (per column index) when
  // sparse.
  int64_t count = product(shape);
  if (sparse) {
    const std::string member = index_member(entry);
    const ArrayInfo index = entry.info(member);
    MCOMPRESS_CHECK(index.shape.size() == 1, FormatError, path, ": tensor '", name,
                    "' (sparse) has an ", member, " dataset of shape ",
                    shape_to_string(index.shape), ", expected one dimension");
    count = index.shape[0];
  }
  const ArrayInfo codes = entry.info("codes");
  MCOMPRESS_CHECK(codes.dtype == packed::Dtype::kUInt8, FormatError, path, ": tensor '", name,
                  "' (codebook) has codes that are not 8-bit unsigned integers (", codes.type, ")");
  const int64_t expected = (count * q.bits + 7) / 8;
  MCOMPRESS_CHECK(codes.shape == std::vector<int64_t>{expected}, FormatError, path, ": tensor '",
                  name, "' (codebook) has a codes dataset of shape ", shape_to_string(codes.shape),
                  ", expected [", expected, "] (", count, " codes of ", q.bits, " bits, packed)");
  std::vector<uint8_t> packed_codes(static_cast<size_t>(expected));
  if (!packed_codes.empty()) entry.read("codes", packed::Dtype::kUInt8, packed_codes.data());
  const std::vector<uint8_t> unpacked = unpack_codes(packed_codes, count, q.bits);
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
  const std::vector<int64_t> positions = read_csr_positions(entry, shape, count);
  q.values = at::full(shape, zero, at::kByte);
  if (!positions.empty())
    q.values.view({-1}).index_copy_(0, at::tensor(positions, at::kLong), stored);
  return q;
}

// The `values` of a non-codebook tensor, dense (sparse ones densified); int8 also gives its
// quantization parameters.
std::pair<std::optional<QuantizedTensor>, at::Tensor> read_stored_values(TensorEntry& entry,
                                                                         const TensorInfo& info,
                                                                         Encoding encoding,
                                                                         bool sparse) {
  const std::string& name = info.name;
  const std::string& path = entry.path();
  const ArrayInfo values = entry.info("values");
  const std::vector<int64_t>& stored = values.shape;
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
    q = read_int8_params(entry);
    // Checked before densify() fills omitted entries with the zero points.
    q->values = at::empty(info.shape, at::kChar);
    check_quantized<FormatError>(path, name, *q, info.shape);
  }
  at::Tensor dense = read_values(entry, values, encoding, stored);
  if (sparse) {
    const std::vector<int64_t> positions = read_csr_positions(entry, info.shape, stored[0]);
    dense = densify(dense, positions, info.shape, q ? &*q : nullptr);
  }
  return {std::move(q), dense};
}

LoadedTensor read_tensor(StoredTensors& stored, const TensorInfo& info, const std::string& path) {
  const std::string& name = info.name;
  MCOMPRESS_CHECK(stored.has(name), FormatError, path, ": missing tensor '", name, "' (",
                  shape_to_string(info.shape), ") that the architecture needs");
  std::unique_ptr<TensorEntry> entry = stored.open(name);

  const Encoding encoding = mcompress::parse_encoding(parse_encoding(*entry));
  const bool sparse = parse_layout(*entry) == "sparse";

  std::optional<std::vector<int64_t>> shape = entry->integers("shape");
  MCOMPRESS_CHECK(shape.has_value(), FormatError, path, ": tensor '", name,
                  "' has no 'shape' attribute");
  MCOMPRESS_CHECK(*shape == info.shape, FormatError, path, ": tensor '", name, "' has shape ",
                  shape_to_string(*shape), " in its 'shape' attribute, expected ",
                  shape_to_string(info.shape), " from the architecture");

  std::optional<QuantizedTensor> q;
  at::Tensor dense;
  if (encoding == Encoding::kCodebook) {
    q = read_codebook(*entry, info.shape, sparse);
  } else {
    std::tie(q, dense) = read_stored_values(*entry, info, encoding, sparse);
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
  if (entry->integer("pruned").value_or(0) != 0) out.mask = out.master.ne(0);
  return out;
}

// Every stored tensor of the file: the spec's in spec order, then any others by name.
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

StoredTensorInfo inspect_tensor(StoredTensors& stored, const std::string& name) {
  std::unique_ptr<TensorEntry> entry = stored.open(name);
  StoredTensorInfo out;
  out.name = name;
  out.encoding = parse_encoding(*entry);
  out.layout = parse_layout(*entry);
  out.shape = entry->integers("shape").value_or(std::vector<int64_t>{});
  out.parameters = product(out.shape);
  for (const std::string& array : entry->arrays()) out.bytes_on_disk += entry->stored_bytes(array);

  if (out.encoding == "codebook") {
    const QuantizedTensor q = read_codebook(*entry, out.shape, out.layout == "sparse");
    check_quantized<FormatError>(entry->path(), name, q, out.shape);
    out.nonzeros = q.dequantize().ne(0).sum().item<int64_t>();
    return out;
  }
  // Non-zeros: stored values other than their element's zero (0, or for int8 the channel's
  // zero point); the entries a sparse tensor omits are zeros by definition.
  if (!entry->has("values")) return out;
  std::vector<float> data(static_cast<size_t>(product(entry->info("values").shape)));
  if (!data.empty()) entry->read("values", packed::Dtype::kFloat32, data.data());  // as float
  // Inspection is lenient: with a zero_point that does not fit the tensor, codes are compared
  // with 0.
  std::vector<float> zero(1, 0.0f);
  int64_t inner = 1;  // elements per step of the channel axis
  if (out.encoding == "int8" && entry->has("zero_point")) {
    std::vector<float> zp(static_cast<size_t>(product(entry->info("zero_point").shape)));
    if (!zp.empty()) entry->read("zero_point", packed::Dtype::kFloat32, zp.data());
    const int64_t axis = entry->integer("axis").value_or(-1);
    const auto& shape = out.shape;
    const bool per_channel = axis >= 0 && axis < static_cast<int64_t>(shape.size()) &&
                             static_cast<int64_t>(zp.size()) == shape[static_cast<size_t>(axis)];
    if (zp.size() == 1 || per_channel) zero = zp;
    if (per_channel) {
      for (size_t d = static_cast<size_t>(axis) + 1; d < shape.size(); ++d) inner *= shape[d];
    }
  }
  std::vector<int64_t> positions;  // flat position of each stored value
  if (out.layout == "sparse")
    positions = read_csr_positions(*entry, out.shape, static_cast<int64_t>(data.size()));
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
    if (options.container == ModelContainer::kGroups) {
      write_groups_model(file, model, path);
    } else {
      write_packed_model(file, model, path);
    }
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
    StoredTensors stored(reader);
    std::vector<TensorInfo> infos = spec.tensors();
    std::set<std::string> expected;
    for (const TensorInfo& info : infos) expected.insert(info.name);
    // A stray tensor means the file and its architecture disagree; refuse rather than guess.
    for (const std::string& name : stored.names()) {
      MCOMPRESS_CHECK(expected.count(name) != 0, FormatError, path, ": tensor '", name,
                      "' is stored in the file but is not a tensor of the architecture");
    }
    for (const TensorInfo& info : infos) {
      LoadedTensor loaded = read_tensor(stored, info, path);
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
  summary.container = reader.format_version() >= 3 ? "packed" : "groups";
  {
    StoredTensors stored(reader);
    for (const std::string& name : ordered_tensor_names(stored.names(), spec))
      summary.tensors.push_back(inspect_tensor(stored, name));
  }
  summary.history = reader.history();
  std::error_code ec;
  summary.file_bytes = static_cast<int64_t>(fs::file_size(path, ec));
  MCOMPRESS_CHECK(!ec, IoError, path, ": cannot read the file size: ", ec.message());
  return summary;
}

}  // namespace mcompress
