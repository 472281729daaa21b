// The tensor codec of the model file (core/src/tensor_codec.h, docs/format.md §4.6, §4.8) on its
// own, without HDF5: CSR and row-delta columns, the index types and layout sizes that choose
// dense or sparse, codebook code packing, and the dtypes of each encoding.

#include "tensor_codec.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace mcompress::model_file {
namespace {

std::vector<int64_t> longs(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kLong).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

TEST(TensorCodecTest, CsrOfAMatrixWithAnEmptyRow) {
  const at::Tensor values =
      at::tensor({0.0f, 1.0f, 0.0f, 2.0f, 0.0f, 0.0f, 0.0f, 0.0f, 3.0f, 0.0f, 0.0f, 4.0f})
          .reshape({3, 4});
  const Csr csr = to_csr(values, stored_entries(values, nullptr));
  EXPECT_EQ(longs(csr.indptr), (std::vector<int64_t>{0, 2, 2, 4}));
  EXPECT_EQ(longs(csr.indices), (std::vector<int64_t>{1, 3, 0, 3}));
  EXPECT_TRUE(csr.values.equal(at::tensor({1.0f, 2.0f, 3.0f, 4.0f})));
  // Each row starts with its column; later entries are the gap to the previous column.
  EXPECT_EQ(longs(column_gaps(csr)), (std::vector<int64_t>{1, 2, 0, 3}));
}

TEST(TensorCodecTest, CsrViewsHigherRanksAsRowsByTheRest) {
  EXPECT_EQ(csr_columns({3, 4, 5}), 20);
  EXPECT_EQ(csr_columns({7}), 1);
  at::Tensor values = at::zeros({2, 2, 3});
  values.index_put_({1, 1, 2}, 5.0f);
  const Csr csr = to_csr(values, stored_entries(values, nullptr));
  EXPECT_EQ(longs(csr.indptr), (std::vector<int64_t>{0, 0, 1}));
  EXPECT_EQ(longs(csr.indices), (std::vector<int64_t>{5}));
}

TEST(TensorCodecTest, StoredEntriesKeepNegativeZeroAndOmitTheZeroPoint) {
  const at::Tensor floats = at::tensor({0.0f, -0.0f, 1.0f});
  EXPECT_EQ(longs(stored_entries(floats, nullptr)), (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(longs(stored_entries(floats.to(at::kHalf), nullptr)), (std::vector<int64_t>{0, 1, 1}));
  EXPECT_EQ(longs(stored_entries(floats.to(at::kBFloat16), nullptr)),
            (std::vector<int64_t>{0, 1, 1}));

  QuantizedTensor q;
  q.encoding = Encoding::kInt8;
  q.axis = 0;
  q.zero_point = at::tensor({1, -2}, at::kInt);
  const at::Tensor codes = at::tensor({1, 0, -2, 5}, at::kChar).reshape({2, 2});
  EXPECT_EQ(longs(stored_entries(codes, &q)), (std::vector<int64_t>{0, 1, 0, 1}));
  EXPECT_EQ(longs(zero_codes(q, 2)), (std::vector<int64_t>{1, -2}));
  q.axis = -1;
  q.zero_point = at::tensor({0}, at::kInt);
  EXPECT_EQ(zero_codes(q, 2).dim(), 0);
}

TEST(TensorCodecTest, IndexTypeIsTheSmallestThatHoldsTheValue) {
  EXPECT_EQ(index_type(0).dtype, packed::Dtype::kUInt8);
  EXPECT_EQ(index_type(0xFF).bytes, 1);
  EXPECT_EQ(index_type(0x100).dtype, packed::Dtype::kUInt16);
  EXPECT_EQ(index_type(0xFFFF).bytes, 2);
  EXPECT_EQ(index_type(0x10000).dtype, packed::Dtype::kUInt32);
  EXPECT_EQ(index_type(0xFFFFFFFFu).bytes, 4);
  EXPECT_EQ(index_type(uint64_t{1} << 32).dtype, packed::Dtype::kUInt64);
  EXPECT_EQ(index_type(uint64_t{1} << 32).bytes, 8);
}

TEST(TensorCodecTest, LayoutBytesCountValuesAndCsrStructure) {
  // [300, 784] float32 with no stored entries: 784 columns need uint16, nnz 0 fits uint8.
  LayoutBytes b = layout_bytes({300, 784}, 4, 0);
  EXPECT_EQ(b.dense, 300 * 784 * 4);
  EXPECT_EQ(b.sparse, 301);
  b = layout_bytes({300, 784}, 4, 1000);
  EXPECT_EQ(b.sparse, 1000 * (4 + 2) + 301 * 2);
  b = layout_bytes({3, 4}, 4, 12);
  EXPECT_EQ(b.dense, 48);
  EXPECT_EQ(b.sparse, 12 * (4 + 1) + 4 * 1);
  // Rank 0 and empty tensors have no sparse form.
  EXPECT_EQ(layout_bytes({}, 4, 1).sparse, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(layout_bytes({0, 3}, 4, 0).sparse, std::numeric_limits<int64_t>::max());
}

TEST(TensorCodecTest, CodesArePackedMostSignificantBitFirst) {
  const std::vector<uint8_t> two_bits = {1, 2, 3};  // 01 10 11, padded with 00
  EXPECT_EQ(pack_codes(two_bits.data(), 3, 2), (std::vector<uint8_t>{0x6C}));
  const std::vector<uint8_t> three_bits = {5, 1, 7};  // 101 001 111, padded with 0000000
  EXPECT_EQ(pack_codes(three_bits.data(), 3, 3), (std::vector<uint8_t>{0xA7, 0x80}));
  EXPECT_EQ(unpack_codes({0xA7, 0x80}, 3, 3), three_bits);
  EXPECT_TRUE(pack_codes(nullptr, 0, 4).empty());
}

TEST(TensorCodecTest, PackedCodesRoundTripForEveryWidth) {
  std::mt19937 rng(7);
  for (int64_t bits = 1; bits <= 8; ++bits) {
    SCOPED_TRACE(bits);
    for (int64_t count : {1, 7, 127, 255}) {
      std::vector<uint8_t> codes(static_cast<size_t>(count));
      for (uint8_t& c : codes) c = static_cast<uint8_t>(rng() % (1u << bits));
      const std::vector<uint8_t> packed = pack_codes(codes.data(), count, bits);
      EXPECT_EQ(static_cast<int64_t>(packed.size()), (count * bits + 7) / 8);
      EXPECT_EQ(unpack_codes(packed, count, bits), codes);
    }
  }
}

TEST(TensorCodecTest, ZeroCodeIsTheFirstPositiveZero) {
  EXPECT_EQ(zero_code(at::tensor({-0.0f, 1.0f, 0.0f, 0.0f})), 2);
  EXPECT_EQ(zero_code(at::tensor({1.0f, 2.0f})), -1);
  // 100 codes of 2 bits: 25 bytes dense; 5 stored codes: 2 bytes, 5 uint8 columns, 11 indptr.
  const LayoutBytes b = codebook_layout_bytes({10, 10}, 2, 5);
  EXPECT_EQ(b.dense, 25);
  EXPECT_EQ(b.sparse, 2 + 5 + 11);
  EXPECT_EQ(codebook_layout_bytes({}, 2, 1).sparse, std::numeric_limits<int64_t>::max());
}

TEST(TensorCodecTest, EncodingDtypesAndSmallHelpers) {
  EXPECT_EQ(value_dtype(Encoding::kFp32), at::kFloat);
  EXPECT_EQ(value_dtype(Encoding::kFp16), at::kHalf);
  EXPECT_EQ(value_dtype(Encoding::kBf16), at::kBFloat16);
  EXPECT_EQ(value_dtype(Encoding::kInt8), at::kChar);
  EXPECT_EQ(value_dtype(Encoding::kCodebook), at::kByte);
  EXPECT_EQ(stored_dtype(Encoding::kFp32), packed::Dtype::kFloat32);
  EXPECT_EQ(stored_dtype(Encoding::kFp16), packed::Dtype::kFloat16);
  EXPECT_EQ(stored_dtype(Encoding::kBf16), packed::Dtype::kBFloat16);
  EXPECT_EQ(stored_dtype(Encoding::kInt8), packed::Dtype::kInt8);
  EXPECT_EQ(stored_dtype(Encoding::kCodebook), packed::Dtype::kUInt8);
  EXPECT_EQ(&half_format(Encoding::kFp16), &kFp16Format);
  EXPECT_EQ(&half_format(Encoding::kBf16), &kBf16Format);

  float bad = 0.0f;
  EXPECT_EQ(first_non_finite(at::tensor({1.0f, 2.0f}), &bad), -1);
  EXPECT_EQ(first_non_finite(at::tensor({1.0f, std::nanf(""), INFINITY}), &bad), 1);
  EXPECT_TRUE(std::isnan(bad));

  EXPECT_EQ(product({}), 1);
  EXPECT_EQ(product({3, 0, 2}), 0);
  EXPECT_EQ(product({3, 4, 2}), 24);
  EXPECT_EQ(join({"a", "b", "c"}), "a, b, c");
  EXPECT_EQ(join({"x"}, "; "), "x");
}

}  // namespace
}  // namespace mcompress::model_file
