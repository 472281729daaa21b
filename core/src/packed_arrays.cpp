#include "packed_arrays.h"

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <limits>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the packed container stores little-endian arrays by copying memory; port this first"
#endif

namespace mcompress::packed {
namespace {

struct DtypeInfo {
  Dtype dtype;
  const char* name;
  size_t size;
  bool integer;
};

constexpr DtypeInfo kDtypes[] = {
    {Dtype::kFloat32, "float32", 4, false},   {Dtype::kFloat16, "float16", 2, false},
    {Dtype::kBFloat16, "bfloat16", 2, false}, {Dtype::kInt8, "int8", 1, true},
    {Dtype::kUInt8, "uint8", 1, true},        {Dtype::kUInt16, "uint16", 2, true},
    {Dtype::kUInt32, "uint32", 4, true},      {Dtype::kUInt64, "uint64", 8, true},
    {Dtype::kInt32, "int32", 4, true},        {Dtype::kInt64, "int64", 8, true},
};

const DtypeInfo& info(Dtype dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.dtype == dtype) return d;
  }
  return kDtypes[0];
}

int64_t product(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

template <typename T>
void integers_to(Dtype from, const uint8_t* src, int64_t count, T* dst) {
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* p = src + i * static_cast<int64_t>(info(from).size);
    switch (from) {
      case Dtype::kInt8:
        dst[i] = static_cast<T>(*reinterpret_cast<const int8_t*>(p));
        break;
      case Dtype::kUInt8:
        dst[i] = static_cast<T>(*p);
        break;
      case Dtype::kUInt16: {
        uint16_t v;
        std::memcpy(&v, p, 2);
        dst[i] = static_cast<T>(v);
        break;
      }
      case Dtype::kUInt32: {
        uint32_t v;
        std::memcpy(&v, p, 4);
        dst[i] = static_cast<T>(v);
        break;
      }
      case Dtype::kUInt64: {
        uint64_t v;
        std::memcpy(&v, p, 8);
        // Saturate: an index this large is out of range anyway, and the reader says so.
        dst[i] = static_cast<T>(std::min<uint64_t>(v, std::numeric_limits<int64_t>::max()));
        break;
      }
      case Dtype::kInt32: {
        int32_t v;
        std::memcpy(&v, p, 4);
        dst[i] = static_cast<T>(v);
        break;
      }
      case Dtype::kInt64: {
        int64_t v;
        std::memcpy(&v, p, 8);
        dst[i] = static_cast<T>(v);
        break;
      }
      default:
        break;
    }
  }
}

// HDF5's shuffle: byte 0 of every element, then byte 1 of every element, ... Runs of equal
// high bytes (small indices, float exponents) then compress far better.
std::vector<uint8_t> shuffle(const uint8_t* data, int64_t count, size_t size) {
  std::vector<uint8_t> out(static_cast<size_t>(count) * size);
  for (int64_t i = 0; i < count; ++i) {
    for (size_t b = 0; b < size; ++b) out[b * static_cast<size_t>(count) + i] = data[i * size + b];
  }
  return out;
}

std::vector<uint8_t> unshuffle(const std::vector<uint8_t>& data, size_t size) {
  const size_t count = data.size() / size;
  std::vector<uint8_t> out(data.size());
  for (size_t i = 0; i < count; ++i) {
    for (size_t b = 0; b < size; ++b) out[i * size + b] = data[b * count + i];
  }
  return out;
}

std::vector<uint8_t> deflate(const std::vector<uint8_t>& data, int level) {
  uLongf bound = compressBound(static_cast<uLong>(data.size()));
  std::vector<uint8_t> out(bound);
  if (compress2(out.data(), &bound, data.data(), static_cast<uLong>(data.size()), level) != Z_OK)
    return {};  // cannot happen with a bound-sized buffer; raw is then chosen
  out.resize(bound);
  return out;
}

// Inflates exactly `expected` bytes from a zlib stream that must end at the end of `in`. zlib
// counts in 32-bit windows, so both buffers are fed in windows of at most 1 GiB.
bool inflate_exact(const uint8_t* in, size_t in_size, size_t expected, std::vector<uint8_t>* out,
                   std::string* why) {
  constexpr size_t kWindow = size_t{1} << 30;
  out->assign(expected, 0);
  z_stream stream{};
  if (inflateInit(&stream) != Z_OK) {
    *why = "cannot start zlib";
    return false;
  }
  size_t fed_in = 0, given_out = 0;
  uint8_t spare = 0;  // one byte past `expected` shows a stream that holds more
  bool spare_given = false;
  int status = Z_OK;
  while (status == Z_OK) {
    if (stream.avail_in == 0 && fed_in < in_size) {
      const size_t n = std::min(kWindow, in_size - fed_in);
      stream.next_in = const_cast<Bytef*>(in + fed_in);
      stream.avail_in = static_cast<uInt>(n);
      fed_in += n;
    }
    if (stream.avail_out == 0) {
      if (given_out < expected) {
        const size_t n = std::min(kWindow, expected - given_out);
        stream.next_out = out->data() + given_out;
        stream.avail_out = static_cast<uInt>(n);
        given_out += n;
      } else if (!spare_given) {
        stream.next_out = &spare;
        stream.avail_out = 1;
        spare_given = true;
      } else {
        break;  // the spare byte was written: more data than the shape says
      }
    }
    status = inflate(&stream, Z_NO_FLUSH);
    if (status == Z_BUF_ERROR && stream.avail_in == 0 && fed_in == in_size) break;  // truncated
    if (status == Z_BUF_ERROR) status = Z_OK;  // no progress this call; feed the next window
  }
  const auto produced = static_cast<size_t>(stream.total_out);
  const auto consumed = static_cast<size_t>(stream.total_in);
  const std::string message = stream.msg != nullptr ? stream.msg : zError(status);
  inflateEnd(&stream);
  if (produced > expected) {
    *why = "its zlib stream holds more than the " + std::to_string(expected) +
           " bytes its shape and dtype give";
    return false;
  }
  if (status != Z_STREAM_END) {
    *why = "its zlib stream is corrupt or truncated (zlib: " + message + ")";
    return false;
  }
  if (produced != expected) {
    *why = "its zlib stream holds " + std::to_string(produced) + " bytes, expected " +
           std::to_string(expected) + " from its shape and dtype";
    return false;
  }
  if (consumed != in_size) {
    *why = "its zlib stream ends " + std::to_string(in_size - consumed) +
           " bytes before the end of its range";
    return false;
  }
  return true;
}

}  // namespace

const char* dtype_name(Dtype dtype) { return info(dtype).name; }

std::optional<Dtype> parse_dtype(const std::string& name) {
  for (const DtypeInfo& d : kDtypes) {
    if (name == d.name) return d.dtype;
  }
  return std::nullopt;
}

std::string known_dtypes() {
  std::string out;
  for (const DtypeInfo& d : kDtypes) out += (out.empty() ? "" : ", ") + std::string(d.name);
  return out;
}

size_t itemsize(Dtype dtype) { return info(dtype).size; }
bool is_integer(Dtype dtype) { return info(dtype).integer; }

const std::vector<std::string>& known_codecs() {
  static const std::vector<std::string> codecs = {"raw", "zlib", "shuffle-zlib"};
  return codecs;
}

ArrayDescriptor append_array(std::vector<uint8_t>& blob, Dtype stored, Dtype given,
                             const std::vector<int64_t>& shape, const void* data, int level) {
  const int64_t count = product(shape);
  const size_t size = itemsize(stored);
  std::vector<uint8_t> raw(static_cast<size_t>(count) * size);
  if (stored == given) {
    if (!raw.empty()) std::memcpy(raw.data(), data, raw.size());
  } else {  // integer narrowing; the caller chose a type that holds every value
    const auto* src = static_cast<const uint8_t*>(data);
    std::vector<int64_t> wide(static_cast<size_t>(count));
    integers_to(given, src, count, wide.data());
    for (int64_t i = 0; i < count; ++i) {
      const auto v = static_cast<uint64_t>(wide[static_cast<size_t>(i)]);
      std::memcpy(raw.data() + i * static_cast<int64_t>(size), &v, size);  // little-endian
    }
  }
  ArrayDescriptor d;
  d.dtype = stored;
  d.shape = shape;
  d.offset = blob.size();
  std::vector<uint8_t> packed = deflate(size > 1 ? shuffle(raw.data(), count, size) : raw, level);
  if (!packed.empty() && packed.size() < raw.size()) {
    d.codec = size > 1 ? "shuffle-zlib" : "zlib";
  } else {
    d.codec = "raw";
    packed = std::move(raw);
  }
  d.size = packed.size();
  blob.insert(blob.end(), packed.begin(), packed.end());
  return d;
}

std::optional<uint64_t> decoded_size(const ArrayDescriptor& array, uint64_t blob_size,
                                     std::string* why) {
  const size_t size = itemsize(array.dtype);
  int64_t count = 1;
  for (int64_t d : array.shape) {
    if (d < 0 || (d > 0 && count > std::numeric_limits<int64_t>::max() / 16 / d)) {
      *why = "its shape has a negative or impossibly large dimension";
      return std::nullopt;
    }
    count *= d;
  }
  const auto expected = static_cast<uint64_t>(count) * size;
  if (array.offset > blob_size || array.size > blob_size - array.offset) {
    *why = "its bytes (offset " + std::to_string(array.offset) + ", size " +
           std::to_string(array.size) + ") lie outside the blob of " + std::to_string(blob_size) +
           " bytes";
    return std::nullopt;
  }
  if (array.codec == "raw") {
    if (array.size != expected) {
      *why = "it is raw with " + std::to_string(array.size) + " bytes, expected " +
             std::to_string(expected) + " from its shape and dtype";
      return std::nullopt;
    }
    return expected;
  }
  if (array.codec != "zlib" && array.codec != "shuffle-zlib") {
    *why = "it has unknown codec '" + array.codec + "'; accepted: raw, zlib, shuffle-zlib";
    return std::nullopt;
  }
  // A zlib stream expands at most ~1032x; a larger claim is a corrupt shape, not a reason to
  // allocate gigabytes.
  if (expected / 1032 > array.size + 1) {
    *why = "its shape and dtype claim " + std::to_string(expected) + " bytes, more than its " +
           std::to_string(array.size) + "-byte zlib stream can hold";
    return std::nullopt;
  }
  return expected;
}

std::optional<std::vector<uint8_t>> decode_array(const std::vector<uint8_t>& blob,
                                                 const ArrayDescriptor& array, std::string* why) {
  const std::optional<uint64_t> expected = decoded_size(array, blob.size(), why);
  if (!expected) return std::nullopt;
  const uint8_t* begin = blob.data() + array.offset;
  std::vector<uint8_t> out;
  if (array.codec == "raw") {
    out.assign(begin, begin + array.size);
    return out;
  }
  if (!inflate_exact(begin, static_cast<size_t>(array.size), static_cast<size_t>(*expected), &out,
                     why)) {
    return std::nullopt;
  }
  const size_t size = itemsize(array.dtype);
  if (array.codec == "shuffle-zlib" && size > 1) out = unshuffle(out, size);
  return out;
}

bool convert(Dtype from, const uint8_t* src, int64_t count, Dtype to, void* dst) {
  if (from == to) {
    if (count > 0) std::memcpy(dst, src, static_cast<size_t>(count) * itemsize(from));
    return true;
  }
  if (to == Dtype::kInt64) {
    if (!is_integer(from)) return false;
    integers_to(from, src, count, static_cast<int64_t*>(dst));
    return true;
  }
  if (to != Dtype::kFloat32) return false;
  auto* out = static_cast<float*>(dst);
  if (from == Dtype::kFloat16 || from == Dtype::kBFloat16) {
    for (int64_t i = 0; i < count; ++i) {
      uint16_t bits;
      std::memcpy(&bits, src + 2 * i, 2);
      out[i] = from == Dtype::kFloat16
                   ? static_cast<float>(c10::Half(bits, c10::Half::from_bits()))
                   : static_cast<float>(c10::BFloat16(bits, c10::BFloat16::from_bits()));
    }
    return true;
  }
  integers_to(from, src, count, out);
  return true;
}

}  // namespace mcompress::packed
