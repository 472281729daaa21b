#include "tensor_reader.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <tuple>
#include <utility>

#include "mcompress/core/error.h"
#include "model_checks.h"
#include "packed_arrays.h"
#include "tensor_codec.h"

namespace mcompress::model_file {
namespace {

const std::vector<std::string> kKnownEncodings = {"fp32", "fp16", "bf16", "int8", "codebook"};
const std::vector<std::string> kKnownLayouts = {"dense", "sparse"};

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

}  // namespace

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

// Every stored tensor of the file: the architecture's in its order, then any others by name.
std::vector<std::string> ordered_tensor_names(const std::vector<std::string>& in_file,
                                              const std::vector<TensorInfo>& architecture) {
  std::set<std::string> remaining(in_file.begin(), in_file.end());
  std::vector<std::string> ordered;
  for (const TensorInfo& info : architecture) {
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
  // The parameters the runtime would divide and offset by are checked as on load.
  if (out.encoding == "int8") {
    check_int8_params<FormatError>(entry->path(), name, read_int8_params(*entry), out.shape);
  }
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

}  // namespace mcompress::model_file
