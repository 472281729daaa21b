// The arrays of the packed container (core/src/packed_arrays.h, docs/format.md §9.4): codecs
// round trip, the writer's codec choice, every way a stored array can disagree with its
// descriptor, and the element conversions the reader uses.

#include "packed_arrays.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace mcompress::packed {
namespace {

std::vector<uint8_t> zlib_of(const std::vector<uint8_t>& bytes) {
  uLongf size = compressBound(static_cast<uLong>(bytes.size()));
  std::vector<uint8_t> out(size);
  EXPECT_EQ(compress2(out.data(), &size, bytes.data(), static_cast<uLong>(bytes.size()), 9), Z_OK);
  out.resize(size);
  return out;
}

// The decode failure reason, or "" when it decodes.
std::string why_not(const std::vector<uint8_t>& blob, const ArrayDescriptor& d) {
  std::string why;
  return decode_array(blob, d, &why) ? std::string() : why;
}

TEST(PackedArraysTest, EveryDtypeRoundTripsAndTheWriterPicksTheCodec) {
  std::vector<uint8_t> blob;
  // Compressible uint16 (small values: high bytes all zero) -> shuffle-zlib.
  std::vector<uint16_t> gaps(4000);
  for (size_t i = 0; i < gaps.size(); ++i) gaps[i] = static_cast<uint16_t>(1 + i % 7);
  const ArrayDescriptor a =
      append_array(blob, Dtype::kUInt16, Dtype::kUInt16, {4000}, gaps.data(), 9);
  EXPECT_EQ(a.codec, "shuffle-zlib");
  EXPECT_LT(a.size, 8000u / 10);
  // Bytes -> zlib; three incompressible floats -> raw (zlib would add its header).
  const std::vector<uint8_t> codes(1000, 5);
  const ArrayDescriptor b =
      append_array(blob, Dtype::kUInt8, Dtype::kUInt8, {1000}, codes.data(), 9);
  EXPECT_EQ(b.codec, "zlib");
  const std::vector<float> three = {0.1f, -2.5f, 3e7f};
  const ArrayDescriptor c =
      append_array(blob, Dtype::kFloat32, Dtype::kFloat32, {3}, three.data(), 9);
  EXPECT_EQ(c.codec, "raw");
  EXPECT_EQ(c.size, 12u);
  // Back to back, without gaps.
  EXPECT_EQ(b.offset, a.offset + a.size);
  EXPECT_EQ(c.offset, b.offset + b.size);
  EXPECT_EQ(blob.size(), c.offset + c.size);

  std::string why;
  const auto ga = decode_array(blob, a, &why);
  ASSERT_TRUE(ga) << why;
  EXPECT_EQ(std::memcmp(ga->data(), gaps.data(), ga->size()), 0);
  const auto gb = decode_array(blob, b, &why);
  ASSERT_TRUE(gb) << why;
  EXPECT_EQ(*gb, codes);
  const auto gc = decode_array(blob, c, &why);
  ASSERT_TRUE(gc) << why;
  EXPECT_EQ(std::memcmp(gc->data(), three.data(), 12), 0);
}

TEST(PackedArraysTest, NarrowsInt64IndicesToTheStoredType) {
  std::vector<uint8_t> blob;
  const std::vector<int64_t> wide = {0, 1, 255, 65535, 7};
  const ArrayDescriptor d = append_array(blob, Dtype::kUInt16, Dtype::kInt64, {5}, wide.data(), 9);
  std::string why;
  const auto bytes = decode_array(blob, d, &why);
  ASSERT_TRUE(bytes) << why;
  std::vector<int64_t> back(5);
  ASSERT_TRUE(convert(Dtype::kUInt16, bytes->data(), 5, Dtype::kInt64, back.data()));
  EXPECT_EQ(back, wide);
}

TEST(PackedArraysTest, ShuffleIsHdf5sByteShuffle) {
  // docs/format.md §9.4's example: uint16 [0x0102, 0x0304] shuffles to 02 04 01 03.
  std::vector<uint8_t> blob;
  const std::vector<uint16_t> two = {0x0102, 0x0304};
  ArrayDescriptor d = append_array(blob, Dtype::kUInt16, Dtype::kUInt16, {2}, two.data(), 9);
  ASSERT_EQ(d.codec, "raw");  // too small to compress; build the shuffled stream by hand
  blob = zlib_of({0x02, 0x04, 0x01, 0x03});
  d.offset = 0;
  d.size = blob.size();
  d.codec = "shuffle-zlib";
  std::string why;
  const auto bytes = decode_array(blob, d, &why);
  ASSERT_TRUE(bytes) << why;
  EXPECT_EQ(*bytes, (std::vector<uint8_t>{0x02, 0x01, 0x04, 0x03}));
}

TEST(PackedArraysTest, EveryDisagreementWithTheDescriptorIsNamed) {
  const std::vector<uint8_t> payload(100, 9);
  std::vector<uint8_t> blob = zlib_of(payload);
  const size_t stream = blob.size();
  ArrayDescriptor d;
  d.dtype = Dtype::kUInt8;
  d.shape = {100};
  d.offset = 0;
  d.size = stream;
  d.codec = "zlib";
  EXPECT_EQ(why_not(blob, d), "");

  ArrayDescriptor outside = d;
  outside.offset = 5;
  EXPECT_NE(why_not(blob, outside).find("lie outside the blob of"), std::string::npos);
  ArrayDescriptor huge = d;
  huge.offset = ~uint64_t{0};
  EXPECT_NE(why_not(blob, huge).find("lie outside"), std::string::npos);  // no overflow

  ArrayDescriptor fewer = d;
  fewer.shape = {99};
  EXPECT_NE(why_not(blob, fewer).find("holds more than the 99 bytes"), std::string::npos);
  ArrayDescriptor more = d;
  more.shape = {101};
  EXPECT_NE(why_not(blob, more).find("holds 100 bytes, expected 101"), std::string::npos);
  ArrayDescriptor impossible = d;
  impossible.shape = {int64_t{1} << 40};
  EXPECT_NE(why_not(blob, impossible).find("more than its"), std::string::npos);
  ArrayDescriptor overflow = d;
  overflow.shape = {int64_t{1} << 40, int64_t{1} << 40};
  EXPECT_NE(why_not(blob, overflow).find("impossibly large"), std::string::npos);

  ArrayDescriptor truncated = d;
  truncated.size = stream - 3;
  EXPECT_NE(why_not(blob, truncated).find("corrupt or truncated"), std::string::npos);
  blob.push_back(0);  // one byte of the range after the stream's end
  ArrayDescriptor trailing = d;
  trailing.size = stream + 1;
  EXPECT_EQ(why_not(blob, trailing), "its zlib stream ends 1 bytes before the end of its range");
  std::vector<uint8_t> flipped = blob;
  flipped[stream / 2] ^= 0x40;
  EXPECT_NE(why_not(flipped, d), "");  // a deflate error or an Adler-32 mismatch

  ArrayDescriptor raw = d;
  raw.codec = "raw";
  EXPECT_NE(why_not(blob, raw).find("it is raw with"), std::string::npos);
  ArrayDescriptor unknown = d;
  unknown.codec = "lz4";
  EXPECT_NE(why_not(blob, unknown).find("unknown codec 'lz4'"), std::string::npos);
}

TEST(PackedArraysTest, ConvertsToFloatAndInt64OrRefuses) {
  const uint16_t half_one = 0x3C00, bf16_minus_two = 0xC000;
  float f = 0.0f;
  ASSERT_TRUE(convert(Dtype::kFloat16, reinterpret_cast<const uint8_t*>(&half_one), 1,
                      Dtype::kFloat32, &f));
  EXPECT_EQ(f, 1.0f);
  ASSERT_TRUE(convert(Dtype::kBFloat16, reinterpret_cast<const uint8_t*>(&bf16_minus_two), 1,
                      Dtype::kFloat32, &f));
  EXPECT_EQ(f, -2.0f);
  const int8_t code = -7;
  ASSERT_TRUE(
      convert(Dtype::kInt8, reinterpret_cast<const uint8_t*>(&code), 1, Dtype::kFloat32, &f));
  EXPECT_EQ(f, -7.0f);
  int64_t i = 0;
  const uint64_t too_big = ~uint64_t{0};
  ASSERT_TRUE(
      convert(Dtype::kUInt64, reinterpret_cast<const uint8_t*>(&too_big), 1, Dtype::kInt64, &i));
  EXPECT_EQ(i, INT64_MAX);  // saturated: out of range for every index, which the reader says
  const float x = 1.5f;
  EXPECT_FALSE(
      convert(Dtype::kFloat32, reinterpret_cast<const uint8_t*>(&x), 1, Dtype::kInt64, &i));
  EXPECT_FALSE(convert(Dtype::kFloat32, reinterpret_cast<const uint8_t*>(&x), 1, Dtype::kInt8, &i));
  EXPECT_EQ(parse_dtype("bfloat16"), Dtype::kBFloat16);
  EXPECT_FALSE(parse_dtype("float8").has_value());
}

}  // namespace
}  // namespace mcompress::packed
