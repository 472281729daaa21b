#include "tensor_entry.h"

#include <nlohmann/json.hpp>

#include "tensor_codec.h"

namespace mcompress::model_file {
namespace {

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
      if (reader_.object_type(group_, member, where_ + "/" + member) == H5O_TYPE_DATASET) {
        out.push_back(member);
      }
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

}  // namespace

std::unique_ptr<TensorEntry> StoredTensors::open(const std::string& name) {
  if (reader_.format_version() < 3) return std::make_unique<GroupEntry>(reader_, tensors_, name);
  return std::make_unique<PackedEntry>(reader_, *reader_.manifest_tensor(name), name);
}

}  // namespace mcompress::model_file
