#include "tensor_codec.h"

#include <cmath>
#include <limits>

namespace mcompress::model_file {

std::string join(const std::vector<std::string>& items, const char* sep) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

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

// The sparse layout (docs/format.md §4.6): CSR over the tensor viewed as shape[0] rows by
// product(shape[1:]) columns.

// Columns of that matrix.
int64_t csr_columns(const std::vector<int64_t>& shape) {
  return product(std::vector<int64_t>(shape.begin() + 1, shape.end()));
}

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

}  // namespace mcompress::model_file
