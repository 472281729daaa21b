#pragma once
// Reading: an open, format-checked model file (either container) and its HDF5 attributes,
// groups and datasets. The stored tensors are read through tensor_entry.h.

#include <hdf5.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "hdf5_guard.h"
#include "hdf5_handle.h"
#include "mcompress/core/error.h"
#include "mcompress/core/json_input.h"
#include "mcompress/core/limits.h"
#include "mcompress/core/model_file.h"
#include "model_checks.h"

namespace mcompress::model_file {

namespace fs = std::filesystem;

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
    file_bytes_ = static_cast<int64_t>(fs::file_size(path, ec));
    open(H5P_DEFAULT);
  }

  // A model file's bytes in memory (HDF5's core driver over a file image; nothing touches the
  // disk), named `name` in messages.
  Reader(const std::string& name, const std::string& bytes) : path_(name) {
    static const std::string kSignature("\x89HDF\r\n\x1a\n", 8);
    MCOMPRESS_CHECK(bytes.compare(0, kSignature.size(), kSignature) == 0, FormatError, name,
                    ": not an HDF5 file image (no HDF5 signature at its start)");
    file_bytes_ = static_cast<int64_t>(bytes.size());
    Handle fapl = checked<FormatError>(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, name,
                                       "cannot create a property list");
    h5_check<FormatError>(H5Pset_fapl_core(fapl, 1 << 16, /*backing_store=*/false), name,
                          "cannot select HDF5's in-memory driver");
    h5_check<FormatError>(H5Pset_file_image(fapl, const_cast<char*>(bytes.data()), bytes.size()),
                          name, "cannot hand HDF5 the file image");
    open(fapl);
  }

  const std::string& path() const { return path_; }
  int format_version() const { return format_version_; }
  hid_t root() const { return root_; }
  int64_t file_bytes() const { return file_bytes_; }

 private:
  // Opens the file through `fapl` and checks its format name and version.
  void open(hid_t fapl) {
    const std::string& path = path_;
    file_ = checked<FormatError>(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl), H5Fclose, path,
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
    if (format_version_ >= 3) read_manifest();
  }

 public:
  std::string required_string(hid_t loc, const std::string& name, const std::string& where) {
    std::optional<std::string> value = string_attr(loc, name, where);
    MCOMPRESS_CHECK(value.has_value(), FormatError, path_, ": attribute '", name, "' of ", where,
                    " is missing");
    return *value;
  }

  // The root attribute `arch`: a sequential spec (v1-v3) or a graph document (v4).
  struct Architecture {
    std::optional<ArchSpec> spec;
    std::optional<Graph> graph;
    std::vector<TensorInfo> tensors;  // in architecture order
  };

  Architecture arch(std::string* json = nullptr) {
    std::string text = required_string(root_, "arch", "/");
    if (json != nullptr) *json = text;
    Architecture a;
    try {
      if (format_version_ >= kGraphFormatVersion) {
        a.graph = Graph::from_json_text(text);
        a.tensors = graph_tensor_infos(*a.graph);
      } else {
        a.spec = ArchSpec::from_json_text(text);
        a.tensors = a.spec->tensors();
      }
    } catch (const ModelError& e) {
      throw ModelError(path_ + ": invalid architecture in attribute 'arch': " + e.what());
    }
    check_plausible_size(a.tensors);
    return a;
  }

  // Entries of /history: the lines of its dataset `entries` (version 2), or its attributes in
  // numeric order (version 1; attributes whose names are not numbers are ignored).
  std::vector<std::string> history() {
    std::vector<std::string> entries;
    if (!link_exists(root_, "history")) return entries;
    if (format_version_ >= 3) {
      return split_lines(read_bytes(root_, "history", "/history", kMaxHistoryBytes));
    }
    Handle group = open_group(root_, "history", "/history");
    if (link_exists(group, "entries"))
      return split_lines(read_bytes(group, "entries", "/history/entries", kMaxHistoryBytes));
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

  // A one-dimensional dataset of bytes (JSON text, the blob), whole, of at most `max_bytes`.
  std::string read_bytes(hid_t loc, const std::string& name, const std::string& where,
                         int64_t max_bytes = std::numeric_limits<int64_t>::max()) {
    Handle dataset = open_dataset(loc, name, where);
    const std::vector<int64_t> shape = dataset_shape(dataset, where);
    Handle type = checked<FormatError>(H5Dget_type(dataset), H5Tclose, path_,
                                       "cannot read the type of " + where);
    MCOMPRESS_CHECK(
        shape.size() == 1 && H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 1,
        FormatError, path_, ": ", where, " must be a one-dimensional dataset of bytes");
    MCOMPRESS_CHECK(shape[0] <= max_bytes, FormatError, path_, ": ", where, " holds ", shape[0],
                    " bytes; the limit is ", max_bytes);
    std::string bytes(static_cast<size_t>(shape[0]), '\0');
    if (!bytes.empty() &&
        H5Dread(dataset, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, bytes.data()) < 0) {
      throw FormatError(path_ + ": cannot read " + where + "; the data is corrupt " +
                        corrupt_data_detail());
    }
    return bytes;
  }

  static std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> entries;
    size_t begin = 0;
    while (begin < text.size()) {
      size_t end = text.find('\n', begin);
      if (end == std::string::npos) end = text.size();
      if (end > begin) entries.push_back(text.substr(begin, end - begin));
      begin = end + 1;
    }
    return entries;
  }

  // The recipe text; empty when the file has none.
  std::string recipe() {
    if (format_version_ >= 3) return string_attr(root_, "recipe", "/").value_or(std::string());
    if (!link_exists(root_, "recipe")) return {};
    Handle group = open_group(root_, "recipe", "/recipe");
    return string_attr(group, "text", "/recipe").value_or(std::string());
  }

  uint64_t seed() {
    if (auto seed = integer_attr<uint64_t>(root_, "seed", "/", H5T_NATIVE_UINT64)) return *seed;
    if (format_version_ >= 3 || !link_exists(root_, "recipe")) return 0;
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

  // What kind of object `name` in `loc` is, following only hard links: a model file is the
  // only file read, so soft, external and user-defined links are refused (hdf5_guard.h).
  H5O_type_t object_type(hid_t loc, const std::string& name, const std::string& where) {
    const std::string problem = hdf5_guard::link_problem(loc, name.c_str());
    MCOMPRESS_CHECK(problem.empty(), FormatError, path_, ": ", where, " ", problem);
    H5O_info_t info;
    h5_check<FormatError>(H5Oget_info_by_name(loc, name.c_str(), &info, H5P_DEFAULT), path_,
                          "cannot look up " + where);
    return info.type;
  }

  Handle open_group(hid_t loc, const std::string& name, const std::string& where) {
    object_type(loc, name, where);
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
    MCOMPRESS_CHECK(object_type(loc, name, where) == H5O_TYPE_DATASET, FormatError, path_, ": ",
                    where, " is not a dataset");
    Handle dataset = checked<FormatError>(H5Dopen2(loc, name.c_str(), H5P_DEFAULT), H5Dclose, path_,
                                          "cannot open " + where);
    // Before anything is allocated for it: its bytes are in this file, and there are enough.
    const std::string problem = hdf5_guard::contents_problem(dataset);
    MCOMPRESS_CHECK(problem.empty(), FormatError, path_, ": ", where, " ", problem);
    return dataset;
  }

  // A string attribute (variable- or fixed-length, scalar or one element); nullopt if absent.
  std::optional<std::string> string_attr(hid_t loc, const std::string& name,
                                         const std::string& where) {
    const auto typed = typed_attr(loc, name, where, H5T_STRING, "a string");
    if (!typed) return std::nullopt;
    const auto& [attr, file_type, what] = *typed;
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
    const auto typed = typed_attr(loc, name, where, H5T_INTEGER, "an integer");
    if (!typed) return std::nullopt;
    const Handle& attr = typed->attr;
    const std::string& what = typed->what;
    require_single_value(attr, what);
    T value{};
    h5_check<FormatError>(H5Aread(attr, mem_type, &value), path_, "cannot read " + what);
    return value;
  }

  // A one-dimensional integer attribute (e.g. shape); nullopt if absent.
  std::optional<std::vector<int64_t>> integer_array_attr(hid_t loc, const std::string& name,
                                                         const std::string& where) {
    const auto typed = typed_attr(loc, name, where, H5T_INTEGER, "an integer array");
    if (!typed) return std::nullopt;
    const Handle& attr = typed->attr;
    const std::string& what = typed->what;
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

  // Reads a whole dataset of tensor `tensor` (`member`: values, scale, ...) as `mem_type`.
  void read_data(hid_t dataset, hid_t mem_type, void* out, const std::string& tensor,
                 const std::string& member) {
    if (H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0) return;
    throw FormatError(path_ + ": tensor '" + tensor + "': cannot read its " + member +
                      "; the data is corrupt " + corrupt_data_detail());
  }

  // A scalar float attribute converted to double; nullopt if absent.
  std::optional<double> float_attr(hid_t loc, const std::string& name, const std::string& where) {
    const auto typed = typed_attr(loc, name, where, H5T_FLOAT, "a float");
    if (!typed) return std::nullopt;
    const Handle& attr = typed->attr;
    const std::string& what = typed->what;
    require_single_value(attr, what);
    double value = 0.0;
    h5_check<FormatError>(H5Aread(attr, H5T_NATIVE_DOUBLE, &value), path_, "cannot read " + what);
    return value;
  }

  // The root attribute quant_mode; "" when absent (files of plain fp32 models may omit it).
  std::string quant_mode() {
    std::string mode = string_attr(root_, "quant_mode", "/").value_or(std::string());
    check_quant_mode<FormatError>(path_, mode);
    return mode;
  }

  // /activations/<key>; empty when the group is absent.
  std::map<std::string, ActivationQParams> activations() {
    if (format_version_ >= 3) return manifest_activations();
    std::map<std::string, ActivationQParams> out;
    if (!link_exists(root_, "activations")) return out;
    Handle group = open_group(root_, "activations", "/activations");
    for (const std::string& key : member_names(group, "/activations")) {
      const std::string where = "/activations/" + key;
      Handle member = open_group(group, key, where);
      ActivationQParams params;
      std::optional<double> scale = float_attr(member, "scale", where);
      MCOMPRESS_CHECK(scale.has_value(), FormatError, path_, ": activation '", key,
                      "' has no 'scale' attribute");
      std::optional<int64_t> zero_point =
          integer_attr<int64_t>(member, "zero_point", where, H5T_NATIVE_INT64);
      MCOMPRESS_CHECK(zero_point.has_value(), FormatError, path_, ": activation '", key,
                      "' has no 'zero_point' attribute");
      params.scale = *scale;
      params.zero_point = *zero_point;
      params.observer = string_attr(member, "observer", where).value_or(std::string());
      check_activation<FormatError>(path_, key, params);
      out.emplace(key, std::move(params));
    }
    return out;
  }

  // The packed container (format v3): the manifest's tensor entries by name, in file order.
  const std::vector<std::string>& manifest_names() const { return manifest_order_; }
  const nlohmann::json* manifest_tensor(const std::string& name) const {
    auto it = manifest_tensors_.find(name);
    return it != manifest_tensors_.end() ? &it->second : nullptr;
  }
  // /blob, read once (every checksum of it verified on the way).
  const std::vector<uint8_t>& blob() {
    if (!blob_) {
      std::string bytes = read_bytes(root_, "blob", "/blob");
      blob_.emplace(bytes.begin(), bytes.end());
    }
    return *blob_;
  }

 private:
  // The tensors an architecture declares, decoded, must be plausible for the file's size: a
  // few KB of file cannot hold a gigabyte of weights, however sparse or finely coded (a 97%
  // sparse 2-bit codebook model decodes to ~130x its file; the limit is kMaxModelExpansion).
  void check_plausible_size(const std::vector<TensorInfo>& tensors) const {
    const int64_t file_bytes = file_bytes_;
    int64_t decoded = 0;
    for (const TensorInfo& t : tensors) {
      decoded += checked_elements(t.shape, kMaxTensorElements, "tensor '" + t.name + "'") *
                 static_cast<int64_t>(sizeof(float));
    }
    const int64_t limit = file_bytes * kMaxModelExpansion + kModelSizeSlack;
    MCOMPRESS_CHECK(decoded <= limit, FormatError, path_, ": the architecture declares ", decoded,
                    " bytes of fp32 tensors, but the file has ", file_bytes, " bytes; more than ",
                    kMaxModelExpansion, "x is not plausible");
  }

  // /manifest (docs/format.md §9.2): a JSON object with a "tensors" array of objects, each
  // with a unique string "name".
  void read_manifest() {
    MCOMPRESS_CHECK(link_exists(root_, "manifest"), FormatError, path_,
                    ": the dataset /manifest is missing (format v", format_version_,
                    " keeps its tensors in /manifest and /blob)");
    const std::string text = read_bytes(root_, "manifest", "/manifest");
    nlohmann::json manifest;
    try {
      manifest = parse_json_input(text);
    } catch (const FormatError& e) {
      throw FormatError(path_ + ": /manifest is not valid JSON (" + e.what() + ")");
    }
    MCOMPRESS_CHECK(
        manifest.is_object() && manifest.contains("tensors") && manifest["tensors"].is_array(),
        FormatError, path_, ": /manifest must be a JSON object with a 'tensors' array");
    size_t index = 0;
    for (nlohmann::json& entry : manifest["tensors"]) {
      MCOMPRESS_CHECK(entry.is_object() && entry.contains("name") && entry["name"].is_string(),
                      FormatError, path_, ": /manifest tensors[", index,
                      "] must be an object with a string 'name'");
      const std::string name = entry["name"].get<std::string>();
      MCOMPRESS_CHECK(!manifest_tensors_.count(name), FormatError, path_,
                      ": /manifest lists tensor '", name, "' twice");
      manifest_order_.push_back(name);
      manifest_tensors_.emplace(name, std::move(entry));
      ++index;
    }
    if (manifest.contains("activations")) {
      activations_ = std::move(manifest["activations"]);
      MCOMPRESS_CHECK(activations_.is_object(), FormatError, path_,
                      ": /manifest 'activations' must be a JSON object");
    }
  }

  std::map<std::string, ActivationQParams> manifest_activations() {
    std::map<std::string, ActivationQParams> out;
    if (activations_.is_null()) return out;
    for (const auto& [key, value] : activations_.items()) {
      const std::string where = ": /manifest activation '" + key + "'";
      MCOMPRESS_CHECK(value.is_object(), FormatError, path_, where, " must be a JSON object");
      MCOMPRESS_CHECK(value.contains("scale") && value["scale"].is_number(), FormatError, path_,
                      ": activation '", key, "' has no 'scale' number");
      MCOMPRESS_CHECK(value.contains("zero_point") && value["zero_point"].is_number_integer(),
                      FormatError, path_, ": activation '", key, "' has no 'zero_point' integer");
      ActivationQParams params;
      params.scale = value["scale"].get<double>();
      params.zero_point = value["zero_point"].get<int64_t>();
      if (value.contains("observer")) {
        MCOMPRESS_CHECK(value["observer"].is_string(), FormatError, path_, where,
                        ": 'observer' must be a string");
        params.observer = value["observer"].get<std::string>();
      }
      check_activation<FormatError>(path_, key, params);
      out.emplace(key, std::move(params));
    }
    return out;
  }

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

  // An open attribute with its file type, checked to be of HDF5 class `type_class` (`kind`
  // says which in the error); nullopt if absent.
  struct TypedAttr {
    Handle attr, type;
    std::string what;  // "attribute 'x' of y", for messages
  };
  std::optional<TypedAttr> typed_attr(hid_t loc, const std::string& name, const std::string& where,
                                      H5T_class_t type_class, const char* kind) {
    TypedAttr a;
    if (!open_attr(loc, name, where, a.attr)) return std::nullopt;
    a.what = "attribute '" + name + "' of " + where;
    a.type = checked<FormatError>(H5Aget_type(a.attr), H5Tclose, path_, "cannot read " + a.what);
    MCOMPRESS_CHECK(H5Tget_class(a.type) == type_class, FormatError, path_, ": ", a.what,
                    " is not ", kind);
    return a;
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
  int64_t file_bytes_ = 0;
  std::vector<std::string> manifest_order_;
  std::map<std::string, nlohmann::json> manifest_tensors_;
  nlohmann::json activations_;
  std::optional<std::vector<uint8_t>> blob_;
};

}  // namespace mcompress::model_file
