// The HDF5 model file, format "mcompress-model" v1. docs/format.md is the specification; keep
// the two in step.
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

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "mcompress/core/error.h"
#include "mcompress/core/version.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;

// zlib level 4 compresses float32 weights within ~1% of level 9 at a fraction of the time.
constexpr unsigned kDeflateLevel = 4;
// 256 Ki elements = 1 MiB of float32 per chunk: large enough for deflate, small enough that
// one flipped bit costs one chunk.
constexpr hsize_t kChunkTargetElements = hsize_t{1} << 18;

const std::vector<std::string> kKnownEncodings = {"fp32", "fp16", "bf16", "int8"};
const std::vector<std::string> kKnownLayouts = {"dense", "sparse"};

std::string join(const std::vector<std::string>& items, const char* sep = ", ") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
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

// ---------------------------------------------------------------------------------------------
// Writing

class Writer {
 public:
  explicit Writer(std::string path) : path_(std::move(path)) {
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
    Handle type = utf8_string_type();
    Handle space =
        checked<IoError>(H5Screate(H5S_SCALAR), H5Sclose, path_, "cannot create a dataspace");
    Handle attr =
        checked<IoError>(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT),
                         H5Aclose, path_, "cannot create attribute " + describe_path(name));
    const char* data = value.c_str();
    h5_check<IoError>(H5Awrite(attr, type, &data), path_,
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

  // Group /tensors/<name> with attrs shape, encoding, layout and the dataset "values".
  void dense_fp32_tensor(hid_t tensors, const std::string& name, const at::Tensor& tensor) {
    MCOMPRESS_CHECK(tensor.scalar_type() == at::kFloat, ModelError, path_, ": tensor '", name,
                    "' has dtype ", tensor.scalar_type(), ", expected float32");
    at::Tensor values = tensor.to(at::kCPU).contiguous();
    const float* data = values.data_ptr<float>();
    const int64_t count = values.numel();
    // A file mcompress writes must be one it can load again.
    for (int64_t i = 0; i < count; ++i) {
      MCOMPRESS_CHECK(std::isfinite(data[i]), ModelError, path_, ": tensor '", name,
                      "' has a non-finite value (", data[i], ") at flat index ", i,
                      "; refusing to save it");
    }

    std::vector<int64_t> shape = values.sizes().vec();
    Handle group = create_group(tensors, name);
    shape_attr(group, shape);
    string_attr(group, "encoding", "fp32");
    string_attr(group, "layout", "dense");
    write_dataset(group, "values", shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, name);
  }

 private:
  Handle utf8_string_type() {
    Handle type =
        checked<IoError>(H5Tcopy(H5T_C_S1), H5Tclose, path_, "cannot create a string type");
    h5_check<IoError>(H5Tset_size(type, H5T_VARIABLE), path_, "cannot create a string type");
    h5_check<IoError>(H5Tset_cset(type, H5T_CSET_UTF8), path_, "cannot create a string type");
    return type;
  }

  void write_dataset(hid_t loc, const std::string& name, const std::vector<int64_t>& shape,
                     hid_t file_type, hid_t mem_type, const void* data, const std::string& tensor) {
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
    const bool empty = std::any_of(dims.begin(), dims.end(), [](hsize_t d) { return d == 0; });
    // HDF5 cannot chunk a scalar or an empty dataset; those (never produced by today's
    // layers) are stored contiguous and unfiltered, as docs/format.md allows.
    if (!dims.empty() && !empty) {
      std::vector<hsize_t> chunk = chunk_dims(dims);
      const std::string what = "cannot set up chunking/filters for tensor '" + tensor + "'";
      h5_check<IoError>(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), path_,
                        what);
      // Order matters: the checksum is computed last, over the compressed bytes on disk.
      h5_check<IoError>(H5Pset_shuffle(dcpl), path_, what);
      h5_check<IoError>(H5Pset_deflate(dcpl, kDeflateLevel), path_, what);
      h5_check<IoError>(H5Pset_fletcher32(dcpl), path_, what);
    }
    Handle dset = checked<IoError>(
        H5Dcreate2(loc, name.c_str(), file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose,
        path_, "cannot create dataset for tensor '" + tensor + "'");
    if (!empty) {
      h5_check<IoError>(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), path_,
                        "cannot write tensor '" + tensor + "'");
    }
  }

  // Whole trailing dimensions first, then as many rows of the leading ones as fit the target.
  static std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims) {
    std::vector<hsize_t> chunk(dims.size(), 1);
    hsize_t inner = 1;
    for (size_t i = dims.size(); i-- > 0;) {
      const hsize_t fit = std::max<hsize_t>(1, kChunkTargetElements / inner);
      chunk[i] = std::min(dims[i], fit);
      inner *= chunk[i];
    }
    return chunk;
  }

  std::string path_;
  Handle gcpl_;
};

void write_model(hid_t file, const Model& model, const std::string& path) {
  Writer writer(path);
  Handle root = checked<IoError>(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose, path,
                                 "cannot open the root group");
  writer.string_attr(root, "format", kModelFormatName);
  writer.scalar_attr<int32_t>(root, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32,
                              kModelFormatVersion);
  writer.string_attr(root, "arch", model.spec().to_json_text());
  writer.string_attr(root, "producer", "mcompress " + version());
  writer.scalar_attr<uint64_t>(root, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, model.seed);

  {
    Handle tensors = writer.create_group(root, "tensors");
    for (const TensorInfo& info : model.tensor_infos()) {
      MCOMPRESS_CHECK(
          !info.name.empty() && info.name.find('/') == std::string::npos && info.name != ".",
          ModelError, path, ": tensor name '", info.name, "' cannot be an HDF5 group name");
      writer.dense_fp32_tensor(tensors, info.name, model.tensor(info.name));
    }
  }
  {
    Handle history = writer.create_group(root, "history");
    for (size_t i = 0; i < model.history.size(); ++i) {
      char name[32];
      std::snprintf(name, sizeof(name), "%03zu", i);
      writer.string_attr(history, name, model.history[i]);
    }
  }
  {
    Handle recipe = writer.create_group(root, "recipe");
    writer.string_attr(recipe, "text", model.recipe);
    writer.scalar_attr<uint64_t>(recipe, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, model.seed);
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

  // Entries of /history in numeric order; attributes whose names are not numbers are ignored.
  std::vector<std::string> history() {
    std::vector<std::string> entries;
    if (!link_exists(root_, "history")) return entries;
    Handle group = open_group(root_, "history", "/history");
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

  // The recipe text; empty when the file has none.
  std::string recipe() {
    if (!link_exists(root_, "recipe")) return {};
    Handle group = open_group(root_, "recipe", "/recipe");
    return string_attr(group, "text", "/recipe").value_or(std::string());
  }

  uint64_t seed() {
    if (auto seed = integer_attr<uint64_t>(root_, "seed", "/", H5T_NATIVE_UINT64)) return *seed;
    if (!link_exists(root_, "recipe")) return 0;
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

  // Reads a whole dataset converted to float; a failure here means damaged chunks.
  void read_floats(hid_t dataset, float* out, const std::string& tensor) {
    if (H5Dread(dataset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0) return;
    const std::string detail = hdf5_error_detail();
    const bool checksum = detail.find("Fletcher32") != std::string::npos ||
                          detail.find("checksum") != std::string::npos;
    throw FormatError(
        path_ + ": tensor '" + tensor + "': cannot read its values; the data is corrupt (" +
        (checksum ? "Fletcher-32 checksum mismatch" : "checksum or decompression failure") +
        ") (HDF5: " + detail + ")");
  }

 private:
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
};

std::string parse_encoding(Reader& reader, hid_t group, const std::string& tensor) {
  const std::string where = "/tensors/" + tensor;
  std::string encoding = reader.required_string(group, "encoding", where);
  MCOMPRESS_CHECK(
      std::find(kKnownEncodings.begin(), kKnownEncodings.end(), encoding) != kKnownEncodings.end(),
      FormatError, reader.path(), ": tensor '", tensor, "' has unknown encoding '", encoding,
      "'; accepted: ", join(kKnownEncodings));
  return encoding;
}

std::string parse_layout(Reader& reader, hid_t group, const std::string& tensor) {
  const std::string where = "/tensors/" + tensor;
  std::string layout = reader.required_string(group, "layout", where);
  MCOMPRESS_CHECK(
      std::find(kKnownLayouts.begin(), kKnownLayouts.end(), layout) != kKnownLayouts.end(),
      FormatError, reader.path(), ": tensor '", tensor, "' has unknown layout '", layout,
      "'; accepted: ", join(kKnownLayouts));
  return layout;
}

at::Tensor read_tensor(Reader& reader, hid_t tensors, const TensorInfo& info) {
  const std::string& name = info.name;
  const std::string& path = reader.path();
  const std::string where = "/tensors/" + name;
  MCOMPRESS_CHECK(reader.link_exists(tensors, name), FormatError, path, ": missing tensor '", name,
                  "' (", shape_to_string(info.shape), ") that the architecture needs");
  Handle group = reader.open_group(tensors, name, where);

  const std::string encoding = parse_encoding(reader, group, name);
  const std::string layout = parse_layout(reader, group, name);
  MCOMPRESS_CHECK(encoding == "fp32" && layout == "dense", FormatError, path, ": tensor '", name,
                  "' is stored as ", encoding, "/", layout, ", which this mcompress (", version(),
                  ") cannot read yet; it reads fp32/dense");

  std::optional<std::vector<int64_t>> shape = reader.integer_array_attr(group, "shape", where);
  MCOMPRESS_CHECK(shape.has_value(), FormatError, path, ": tensor '", name,
                  "' has no 'shape' attribute");
  MCOMPRESS_CHECK(*shape == info.shape, FormatError, path, ": tensor '", name, "' has shape ",
                  shape_to_string(*shape), " in its 'shape' attribute, expected ",
                  shape_to_string(info.shape), " from the architecture");

  Handle values = reader.open_dataset(group, "values", where + "/values");
  const std::vector<int64_t> stored = reader.dataset_shape(values, where + "/values");
  MCOMPRESS_CHECK(stored == info.shape, FormatError, path, ": tensor '", name,
                  "' has a values dataset of shape ", shape_to_string(stored), ", expected ",
                  shape_to_string(info.shape));
  Handle type =
      checked<FormatError>(H5Dget_type(values), H5Tclose, path, "cannot read the type of " + where);
  // Reading a float64 dataset as float32 would silently round; fp32 means 32-bit floats.
  MCOMPRESS_CHECK(H5Tget_class(type) == H5T_FLOAT && H5Tget_size(type) == 4, FormatError, path,
                  ": tensor '", name, "' has encoding fp32 but its values are not 32-bit floats (",
                  H5Tget_size(type), "-byte ",
                  H5Tget_class(type) == H5T_FLOAT ? "float" : "non-float", ")");

  at::Tensor tensor = at::empty(info.shape, at::kFloat);
  if (tensor.numel() > 0) reader.read_floats(values, tensor.data_ptr<float>(), name);
  const float* data = tensor.data_ptr<float>();
  for (int64_t i = 0; i < tensor.numel(); ++i) {
    MCOMPRESS_CHECK(std::isfinite(data[i]), ModelError, path, ": tensor '", name,
                    "' has a non-finite value (", data[i], ") at flat index ", i);
  }
  return tensor;
}

// Every tensor group of the file: the spec's in spec order, then any others by name.
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

StoredTensorInfo inspect_tensor(Reader& reader, hid_t tensors, const std::string& name) {
  const std::string where = "/tensors/" + name;
  Handle group = reader.open_group(tensors, name, where);
  StoredTensorInfo out;
  out.name = name;
  out.encoding = parse_encoding(reader, group, name);
  out.layout = parse_layout(reader, group, name);
  out.shape = reader.integer_array_attr(group, "shape", where).value_or(std::vector<int64_t>{});
  out.parameters = product(out.shape);

  for (const std::string& member : reader.member_names(group, where)) {
    H5O_info_t info;
    h5_check<FormatError>(H5Oget_info_by_name(group, member.c_str(), &info, H5P_DEFAULT),
                          reader.path(), "cannot look up " + where + "/" + member);
    if (info.type != H5O_TYPE_DATASET) continue;
    Handle dataset = reader.open_dataset(group, member, where + "/" + member);
    out.bytes_on_disk += static_cast<int64_t>(H5Dget_storage_size(dataset));
  }

  // Non-zeros come from "values": the dense tensor, or the stored entries of a sparse one.
  if (reader.link_exists(group, "values")) {
    Handle values = reader.open_dataset(group, "values", where + "/values");
    std::vector<int64_t> shape = reader.dataset_shape(values, where + "/values");
    std::vector<float> data(static_cast<size_t>(product(shape)));
    if (!data.empty()) reader.read_floats(values, data.data(), name);
    out.nonzeros = std::count_if(data.begin(), data.end(), [](float v) { return v != 0.0f; });
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
    Handle file = checked<IoError>(
        H5Fcreate(temp.c_str(), H5F_ACC_EXCL, fcpl, fapl), H5Fclose, path,
        "cannot create the temporary file '" + temp + "'; is the folder writable?");
    write_model(file, model, path);
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
  {
    Handle group = reader.tensors_group();
    std::vector<TensorInfo> infos = spec.tensors();
    std::set<std::string> expected;
    for (const TensorInfo& info : infos) expected.insert(info.name);
    // A stray tensor means the file and its architecture disagree; refuse rather than guess.
    for (const std::string& name : reader.member_names(group, "/tensors")) {
      MCOMPRESS_CHECK(expected.count(name) != 0, FormatError, path, ": tensor '", name,
                      "' is stored in the file but is not a tensor of the architecture");
    }
    for (const TensorInfo& info : infos)
      tensors.emplace(info.name, read_tensor(reader, group, info));
  }

  Model model = [&] {
    try {
      return Model::from_tensors(spec, std::move(tensors));
    } catch (const ModelError& e) {
      throw ModelError(path + ": " + e.what());
    }
  }();
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
  {
    Handle group = reader.tensors_group();
    for (const std::string& name :
         ordered_tensor_names(reader.member_names(group, "/tensors"), spec)) {
      summary.tensors.push_back(inspect_tensor(reader, group, name));
    }
  }
  summary.history = reader.history();
  std::error_code ec;
  summary.file_bytes = static_cast<int64_t>(fs::file_size(path, ec));
  MCOMPRESS_CHECK(!ec, IoError, path, ": cannot read the file size: ", ec.message());
  return summary;
}

}  // namespace mcompress
