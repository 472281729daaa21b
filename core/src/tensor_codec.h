#pragma once
// How the model file stores one tensor's values (docs/format.md §4.6, §4.8): the stored dtype
// of each encoding, the sparse (CSR) layout with row-delta coded columns, and codebook code
// packing. No HDF5 here: model_writer.cpp and tensor_reader.cpp put these arrays into either
// container, and tests/core test the codec on its own.

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/core/model.h"
#include "packed_arrays.h"

namespace mcompress::model_file {

std::string join(const std::vector<std::string>& items, const char* sep = ", ");
int64_t product(const std::vector<int64_t>& shape);

// The 16-bit float types of the fp16 and bf16 encodings, as HDF5 float field positions.
struct HalfFormat {
  Encoding encoding;
  const char* description;
  size_t sign_pos, exp_pos, exp_size, mant_pos, mant_size, exp_bias;
};
// IEEE 754 binary16, which h5py reads as numpy float16.
inline constexpr HalfFormat kFp16Format{
    Encoding::kFp16, "IEEE binary16 floats", 15, 10, 5, 0, 10, 15};
// bfloat16: the upper half of an IEEE binary32 bit pattern.
inline constexpr HalfFormat kBf16Format{Encoding::kBf16, "bfloat16 floats", 15, 7, 8, 0, 7, 127};

const HalfFormat& half_format(Encoding encoding);

// The ATen dtype that holds the stored values of an encoding.
at::ScalarType value_dtype(Encoding encoding);
// The element type of an encoding's stored values (docs/format.md §9.4).
packed::Dtype stored_dtype(Encoding encoding);
// Finds the first non-finite value of a float32 tensor: its flat index, or -1.
int64_t first_non_finite(const at::Tensor& tensor, float* value);

// The sparse layout (docs/format.md §4.6): CSR over the tensor viewed as shape[0] rows by
// product(shape[1:]) columns.

// Columns of that matrix.
int64_t csr_columns(const std::vector<int64_t>& shape);

struct IndexType {
  packed::Dtype dtype;
  int64_t bytes;
};

// The smallest unsigned integer type holding `max_value`.
IndexType index_type(uint64_t max_value);
// int8 zero-point codes shaped to broadcast against the tensor (per channel along q.axis).
at::Tensor zero_codes(const QuantizedTensor& q, int64_t rank);
// The entries a sparse layout stores: every entry but the implicit zero.
at::Tensor stored_entries(const at::Tensor& values, const QuantizedTensor* q);

// A tensor in CSR form: row offsets, column indices and the stored values, row-major order.
struct Csr {
  at::Tensor indptr;   // int64 [rows + 1]
  at::Tensor indices;  // int64 [nnz]
  at::Tensor values;   // [nnz], the dtype of the dense values
};

Csr to_csr(const at::Tensor& values, const at::Tensor& keep);
// The row-delta form of the column indices: a row's first entry is its column, each later one
// the distance to the previous column (≥ 1).
at::Tensor column_gaps(const Csr& csr);

// Bytes of the tensor's datasets in each layout, before compression (scale and zero_point
// are the same in both and left out).
struct LayoutBytes {
  int64_t dense = 0, sparse = 0;
};

LayoutBytes layout_bytes(const std::vector<int64_t>& shape, int64_t element_bytes, int64_t nnz);

// The codebook encoding (docs/format.md §4.8): codes packed `bits` to a code, most significant
// bit first, the last byte padded with zero bits.

std::vector<uint8_t> pack_codes(const uint8_t* codes, int64_t count, int64_t bits);
std::vector<uint8_t> unpack_codes(const std::vector<uint8_t>& packed, int64_t count, int64_t bits);
// The code a sparse codebook tensor leaves implicit: the first shared value that is +0.0, or
// -1 when there is none (the tensor is then stored dense).
int64_t zero_code(const at::Tensor& codebook);
// Bytes of a codebook tensor's codes and CSR structure in each layout, before compression.
LayoutBytes codebook_layout_bytes(const std::vector<int64_t>& shape, int64_t bits, int64_t nnz);

}  // namespace mcompress::model_file
