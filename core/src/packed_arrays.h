#pragma once
// The arrays of the packed model container (format v3, docs/format.md §9): element types,
// codecs and element conversions. No HDF5 here: model_writer.cpp stores the blob these arrays
// live in and the manifest that describes them, and tensor_entry.cpp reads them back.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mcompress::packed {

// Element types of an array, all little-endian.
enum class Dtype {
  kFloat32,
  kFloat16,
  kBFloat16,
  kInt8,
  kUInt8,
  kUInt16,
  kUInt32,
  kUInt64,
  kInt32,
  kInt64
};

const char* dtype_name(Dtype dtype);
std::optional<Dtype> parse_dtype(const std::string& name);
std::string known_dtypes();  // "float32, float16, ..." for error messages
size_t itemsize(Dtype dtype);
bool is_integer(Dtype dtype);

// Where an array's encoded bytes are in the blob, and how to decode them.
struct ArrayDescriptor {
  Dtype dtype = Dtype::kUInt8;
  std::vector<int64_t> shape;  // {} is a scalar
  uint64_t offset = 0;         // byte range [offset, offset + size) of the blob
  uint64_t size = 0;
  std::string codec;  // raw, zlib, shuffle-zlib
};

const std::vector<std::string>& known_codecs();

// Appends `count` elements of type `given` (native memory), stored as `stored`, to `blob`:
// shuffle-zlib for multi-byte types, zlib for bytes, raw when compression does not pay.
// `given` may differ from `stored` only for integers whose values fit (int64 column gaps
// stored as uint8, ...). zlib `level` 1-9.
ArrayDescriptor append_array(std::vector<uint8_t>& blob, Dtype stored, Dtype given,
                             const std::vector<int64_t>& shape, const void* data, int level);

// The number of bytes `array` decodes to (product(shape) * itemsize), checked without reading
// the blob of `blob_size` bytes: its range lies inside, its codec is known and its shape fits
// its bytes (raw: exactly; zlib: within the ~1032x deflate limit). Otherwise nullopt with the
// reason in `why`.
std::optional<uint64_t> decoded_size(const ArrayDescriptor& array, uint64_t blob_size,
                                     std::string* why);

// The decoded bytes of `array` (product(shape) * itemsize of them), or nullopt with the
// reason in `why` (range outside the blob, unknown codec, corrupt or wrong-sized stream).
std::optional<std::vector<uint8_t>> decode_array(const std::vector<uint8_t>& blob,
                                                 const ArrayDescriptor& array, std::string* why);

// Converts `count` elements from `from` to `to`: any type to float32 or int64 (integers only),
// and each type to itself. False when the pair is not supported.
bool convert(Dtype from, const uint8_t* src, int64_t count, Dtype to, void* dst);

}  // namespace mcompress::packed
