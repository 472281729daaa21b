#pragma once
// Stored tensors, in either container: what the decoding in tensor_reader.cpp reads a tensor
// through (group attributes and datasets in v1/v2, a manifest entry and blob arrays in v3).

#include <hdf5.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "hdf5_handle.h"
#include "mcompress/core/error.h"
#include "model_reader.h"
#include "packed_arrays.h"

namespace mcompress::model_file {

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
  std::unique_ptr<TensorEntry> open(const std::string& name);

 private:
  Reader& reader_;
  Handle tensors_;
  std::vector<std::string> names_;
};

}  // namespace mcompress::model_file
