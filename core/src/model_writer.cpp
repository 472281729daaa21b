#include "model_writer.h"

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <utility>
#include <vector>

#include "hdf5_handle.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/version.h"
#include "model_checks.h"
#include "packed_arrays.h"
#include "tensor_codec.h"

namespace mcompress::model_file {
namespace {

// zlib level 4 compresses float32 weights within ~1% of level 9 at a fraction of the time.
constexpr unsigned kDeflateLevel = 4;
// 256 Ki elements = 1 MiB of float32 per chunk: large enough for deflate, small enough that
// one flipped bit costs one chunk.
constexpr hsize_t kChunkTargetElements = hsize_t{1} << 18;

// Where save_model puts one tensor: a /tensors/<name> group of datasets (the groups container,
// format v2) or a manifest entry with its arrays in the blob (the packed container, v3). The
// encoding decisions (dense or CSR, packing codes) are made once, above this interface.
class TensorSink {
 public:
  virtual ~TensorSink() = default;
  virtual void begin(const std::string& name, const std::vector<int64_t>& shape, Encoding encoding,
                     bool sparse) = 0;
  virtual void axis(int64_t axis) = 0;  // int8
  virtual void bits(int64_t bits) = 0;  // codebook
  virtual void pruned() = 0;
  virtual void density(double density) = 0;  // sparse; the packed container derives it
  // `data` holds product(shape) elements of type `given`, stored as `stored` (an integer type
  // that holds every value when the two differ).
  virtual void array(const std::string& member, const std::vector<int64_t>& shape,
                     packed::Dtype stored, packed::Dtype given, const void* data) = 0;
  virtual void end() = 0;
};

// The values as stored (contiguous, on the CPU), refusing any a load would reject: a file
// mcompress writes must be one it can load again. `q` passed check_quantized.
at::Tensor stored_values(const std::string& path, const std::string& name, const at::Tensor& master,
                         const QuantizedTensor* q) {
  if (q == nullptr) {
    MCOMPRESS_CHECK(master.scalar_type() == at::kFloat, ModelError, path, ": tensor '", name,
                    "' has dtype ", master.scalar_type(), ", expected float32");
    at::Tensor values = master.to(at::kCPU).contiguous();
    float bad = 0.0f;
    const int64_t index = first_non_finite(values, &bad);
    MCOMPRESS_CHECK(index < 0, ModelError, path, ": tensor '", name, "' has a non-finite value (",
                    bad, ") at flat index ", index, "; refusing to save it");
    return values;
  }
  at::Tensor values = q->values.to(at::kCPU).contiguous();
  if (q->encoding == Encoding::kFp16 || q->encoding == Encoding::kBf16) {
    float bad = 0.0f;
    const int64_t index = first_non_finite(values.to(at::kFloat).contiguous(), &bad);
    MCOMPRESS_CHECK(index < 0, ModelError, path, ": tensor '", name, "' (", to_string(q->encoding),
                    ") has a non-finite value (", bad, ") at flat index ", index,
                    "; refusing to save it");
  }
  return values;
}

// The CSR structure of a sparse tensor besides its values: density, columns (row-delta
// coded) and row offsets.
void write_csr_structure(TensorSink& sink, const Csr& csr, const std::vector<int64_t>& shape,
                         int64_t nnz) {
  sink.density(static_cast<double>(nnz) / static_cast<double>(product(shape)));
  const at::Tensor gaps = column_gaps(csr);
  const auto max_gap = static_cast<uint64_t>(nnz > 0 ? gaps.max().item<int64_t>() : 0);
  sink.array("indices_delta", {nnz}, index_type(max_gap).dtype, packed::Dtype::kInt64,
             gaps.data_ptr());
  sink.array("indptr", {shape[0] + 1}, index_type(static_cast<uint64_t>(nnz)).dtype,
             packed::Dtype::kInt64, csr.indptr.data_ptr());
}

// A codebook tensor (docs/format.md §4.8): the shared values and the packed codes, dense or
// CSR over the entries whose code is not the zero code.
void write_codebook_tensor(TensorSink& sink, const std::string& name, const QuantizedTensor& q,
                           bool pruned) {
  const at::Tensor codes = q.values.to(at::kCPU).contiguous();
  const at::Tensor book = q.codebook.to(at::kCPU).contiguous();
  const std::vector<int64_t> shape = codes.sizes().vec();
  const int64_t zero = zero_code(book);
  const at::Tensor keep = zero >= 0 ? codes.ne(zero) : at::ones_like(codes, at::kBool);
  const int64_t nnz = keep.sum().item<int64_t>();
  const LayoutBytes bytes = codebook_layout_bytes(shape, q.bits, nnz);
  const bool sparse = zero >= 0 && bytes.sparse < bytes.dense;

  sink.begin(name, shape, Encoding::kCodebook, sparse);
  sink.bits(q.bits);
  if (pruned) sink.pruned();
  sink.array("codebook", {book.numel()}, packed::Dtype::kFloat32, packed::Dtype::kFloat32,
             book.data_ptr());
  at::Tensor stored = codes.reshape({-1});
  if (sparse) {
    const Csr csr = to_csr(codes, keep);
    write_csr_structure(sink, csr, shape, nnz);
    stored = csr.values;
  }
  const std::vector<uint8_t> packed_codes =
      pack_codes(stored.data_ptr<uint8_t>(), stored.numel(), q.bits);
  sink.array("codes", {static_cast<int64_t>(packed_codes.size())}, packed::Dtype::kUInt8,
             packed::Dtype::kUInt8, packed_codes.data());
  sink.end();
}

// One tensor: the fp32 master, or its reduced encoding `q`. Dense or sparse, whichever has
// fewer bytes; `pruned` marks a tensor whose zeros are its mask.
void write_tensor(TensorSink& sink, const std::string& path, const std::string& name,
                  const at::Tensor& master, const QuantizedTensor* q, bool pruned) {
  if (q != nullptr && q->encoding == Encoding::kCodebook) {
    write_codebook_tensor(sink, name, *q, pruned);
    return;
  }
  const Encoding encoding = q != nullptr ? q->encoding : Encoding::kFp32;
  const at::Tensor values = stored_values(path, name, master, q);
  const std::vector<int64_t> shape = values.sizes().vec();
  const at::Tensor keep = stored_entries(values, q);
  const int64_t nnz = keep.sum().item<int64_t>();
  const LayoutBytes bytes = layout_bytes(shape, values.element_size(), nnz);
  const bool sparse = bytes.sparse < bytes.dense;
  const packed::Dtype dtype = stored_dtype(encoding);

  sink.begin(name, shape, encoding, sparse);
  if (encoding == Encoding::kInt8) sink.axis(q->axis);
  if (pruned) sink.pruned();
  if (sparse) {
    const Csr csr = to_csr(values, keep);
    sink.array("values", {nnz}, dtype, dtype, csr.values.data_ptr());
    write_csr_structure(sink, csr, shape, nnz);
  } else {
    sink.array("values", shape, dtype, dtype, values.data_ptr());
  }
  if (encoding == Encoding::kInt8) {
    const at::Tensor scale = q->scale.to(at::kCPU).contiguous();
    const at::Tensor zero_point = q->zero_point.to(at::kCPU).contiguous();
    sink.array("scale", {scale.numel()}, packed::Dtype::kFloat32, packed::Dtype::kFloat32,
               scale.data_ptr());
    sink.array("zero_point", {zero_point.numel()}, packed::Dtype::kInt32, packed::Dtype::kInt32,
               zero_point.data_ptr());
  }
  sink.end();
}

// The entries as JSON Lines (docs/format.md §6). A raw line break inside an entry can only be
// whitespace between JSON tokens (JSON escapes it inside strings), so it becomes a space and
// every entry stays one line.
std::string history_lines(const std::vector<std::string>& entries) {
  std::string lines;
  for (const std::string& entry : entries) {
    for (char c : entry) lines += c == '\n' || c == '\r' ? ' ' : c;
    lines += '\n';
  }
  return lines;
}

// HDF5 objects of the file: groups, attributes and datasets, for both containers.
class Writer {
 public:
  Writer(std::string path, bool shuffle_bytes)
      : path_(std::move(path)), shuffle_bytes_(shuffle_bytes) {
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
    Handle type = utf8_string_type(value.size() + 1);
    Handle space =
        checked<IoError>(H5Screate(H5S_SCALAR), H5Sclose, path_, "cannot create a dataspace");
    Handle attr =
        checked<IoError>(H5Acreate2(loc, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT),
                         H5Aclose, path_, "cannot create attribute " + describe_path(name));
    h5_check<IoError>(H5Awrite(attr, type, value.c_str()), path_,
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

  // A dataset of `shape` in the file type of `stored`, written from memory of type `given`.
  // `filtered`: shuffle + deflate + Fletcher-32; otherwise Fletcher-32 only (the packed blob,
  // whose arrays are compressed one by one).
  void dataset(hid_t loc, const std::string& name, const std::vector<int64_t>& shape,
               packed::Dtype stored, packed::Dtype given, const void* data,
               const std::string& subject, bool filtered = true) {
    Handle file_half, mem_half;
    const hid_t file_type = hdf5_type<IoError>(stored, /*file=*/true, file_half, path_);
    const hid_t mem_type = hdf5_type<IoError>(given, /*file=*/false, mem_half, path_);
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
    // Datasets carry no attributes, so their object headers need no room reserved for them:
    // ~140 bytes less per dataset, which shows in the file of a pruned, quantized model.
    h5_check<IoError>(H5Pset_dset_no_attrs_hint(dcpl, true), path_, "cannot minimize headers");
    const bool empty = std::any_of(dims.begin(), dims.end(), [](hsize_t d) { return d == 0; });
    // HDF5 cannot chunk a scalar or an empty dataset; those (never produced by today's
    // layers) are stored contiguous and unfiltered, as docs/format.md allows.
    if (!dims.empty() && !empty) {
      std::vector<hsize_t> chunk =
          chunk_dims(dims, filtered ? kChunkTargetElements : kChunkTargetElements * 4);
      const std::string what = "cannot set up chunking/filters for " + subject;
      h5_check<IoError>(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), path_,
                        what);
      // Order matters: the checksum is computed last, over the compressed bytes on disk.
      if (filtered) {
        // The groups container shuffles every dataset (docs/format.md §4.5); the packed one
        // only where it does something, on multi-byte elements (none of its three datasets).
        if (shuffle_bytes_ || packed::itemsize(stored) > 1)
          h5_check<IoError>(H5Pset_shuffle(dcpl), path_, what);
        h5_check<IoError>(H5Pset_deflate(dcpl, kDeflateLevel), path_, what);
      }
      h5_check<IoError>(H5Pset_fletcher32(dcpl), path_, what);
    }
    Handle dset = checked<IoError>(
        H5Dcreate2(loc, name.c_str(), file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose,
        path_, "cannot create a dataset for " + subject);
    if (!empty) {
      h5_check<IoError>(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), path_,
                        "cannot write " + subject);
    }
  }

 private:
  // Fixed-length (`bytes` with the terminator), so the text lives in the attribute itself.
  // Variable-length strings go to the global heap, whose collections take at least 4 KiB
  // each: 8 KB of a 46 KB pruned, quantized mlp file (docs/format.md §2).
  Handle utf8_string_type(size_t bytes) {
    Handle type =
        checked<IoError>(H5Tcopy(H5T_C_S1), H5Tclose, path_, "cannot create a string type");
    h5_check<IoError>(H5Tset_size(type, bytes), path_, "cannot create a string type");
    h5_check<IoError>(H5Tset_strpad(type, H5T_STR_NULLTERM), path_, "cannot create a string type");
    h5_check<IoError>(H5Tset_cset(type, H5T_CSET_UTF8), path_, "cannot create a string type");
    return type;
  }

  // Whole trailing dimensions first, then as many rows of the leading ones as fit the target.
  static std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims, hsize_t target) {
    std::vector<hsize_t> chunk(dims.size(), 1);
    hsize_t inner = 1;
    for (size_t i = dims.size(); i-- > 0;) {
      const hsize_t fit = std::max<hsize_t>(1, target / inner);
      chunk[i] = std::min(dims[i], fit);
      inner *= chunk[i];
    }
    return chunk;
  }

  std::string path_;
  bool shuffle_bytes_;
  Handle gcpl_;
};

// The groups container (format v2): /tensors/<name> with attributes and one dataset per array.
class GroupSink : public TensorSink {
 public:
  GroupSink(Writer& writer, hid_t tensors) : writer_(writer), tensors_(tensors) {}

  void begin(const std::string& name, const std::vector<int64_t>& shape, Encoding encoding,
             bool sparse) override {
    name_ = name;
    group_ = writer_.create_group(tensors_, name);
    writer_.shape_attr(group_, shape);
    writer_.string_attr(group_, "encoding", to_string(encoding));
    writer_.string_attr(group_, "layout", sparse ? "sparse" : "dense");
  }
  void axis(int64_t axis) override {
    writer_.scalar_attr<int64_t>(group_, "axis", H5T_STD_I64LE, H5T_NATIVE_INT64, axis);
  }
  void bits(int64_t bits) override {
    writer_.scalar_attr<int32_t>(group_, "bits", H5T_STD_I32LE, H5T_NATIVE_INT32,
                                 static_cast<int32_t>(bits));
  }
  void pruned() override {
    writer_.scalar_attr<int8_t>(group_, "pruned", H5T_STD_I8LE, H5T_NATIVE_INT8, 1);
  }
  void density(double density) override {
    writer_.scalar_attr<double>(group_, "density", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, density);
  }
  void array(const std::string& member, const std::vector<int64_t>& shape, packed::Dtype stored,
             packed::Dtype given, const void* data) override {
    writer_.dataset(group_, member, shape, stored, given, data, "tensor '" + name_ + "'");
  }
  void end() override { group_ = Handle(); }

 private:
  Writer& writer_;
  hid_t tensors_;
  std::string name_;
  Handle group_;
};

// The packed container (format v3): one manifest entry per tensor, its arrays compressed one
// by one into the blob.
class PackedSink : public TensorSink {
 public:
  void begin(const std::string& name, const std::vector<int64_t>& shape, Encoding encoding,
             bool sparse) override {
    entry_ = nlohmann::json::object();
    entry_["name"] = name;
    entry_["shape"] = shape;
    entry_["encoding"] = to_string(encoding);
    entry_["layout"] = sparse ? "sparse" : "dense";
    entry_["arrays"] = nlohmann::json::object();
  }
  void axis(int64_t axis) override { entry_["axis"] = axis; }
  void bits(int64_t bits) override { entry_["bits"] = bits; }
  void pruned() override { entry_["pruned"] = true; }
  void density(double) override {}
  void array(const std::string& member, const std::vector<int64_t>& shape, packed::Dtype stored,
             packed::Dtype given, const void* data) override {
    // Level 9 costs little on the small arrays of compressed models; level 4 is within ~1% of
    // it on large float32 weights at a fraction of the time.
    const int64_t bytes = product(shape) * static_cast<int64_t>(packed::itemsize(stored));
    const int level = bytes <= (int64_t{1} << 16) ? 9 : static_cast<int>(kDeflateLevel);
    const packed::ArrayDescriptor d =
        packed::append_array(blob_, stored, given, shape, data, level);
    entry_["arrays"][member] = {{"dtype", packed::dtype_name(d.dtype)},
                                {"shape", d.shape},
                                {"offset", d.offset},
                                {"size", d.size},
                                {"codec", d.codec}};
  }
  void end() override { tensors_.push_back(std::move(entry_)); }

  nlohmann::json take_tensors() { return std::move(tensors_); }
  const std::vector<uint8_t>& blob() const { return blob_; }

 private:
  nlohmann::json entry_;
  nlohmann::json tensors_ = nlohmann::json::array();
  std::vector<uint8_t> blob_;
};

void write_tensors(TensorSink& sink, const Model& model, const std::string& path) {
  for (const TensorInfo& info : model.tensor_infos()) {
    check_tensor_name(path, info.name);
    auto quantized = model.quant.tensors.find(info.name);
    write_tensor(sink, path, info.name, model.tensor(info.name),
                 quantized != model.quant.tensors.end() ? &quantized->second : nullptr,
                 model.masks.count(info.name) != 0);
  }
}

void write_root_attrs(Writer& writer, hid_t root, const Model& model, int format_version) {
  writer.string_attr(root, "format", kModelFormatName);
  writer.scalar_attr<int32_t>(root, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32,
                              format_version);
  writer.string_attr(
      root, "arch",
      model.is_sequential() ? model.spec().to_json_text() : model.graph().to_json_text());
  writer.string_attr(root, "producer", "mcompress " + version());
  writer.scalar_attr<uint64_t>(root, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, model.seed);
  writer.string_attr(root, "quant_mode", model.quant.mode);
}

}  // namespace

void write_groups_model(hid_t file, const Model& model, const std::string& path) {
  Writer writer(path, /*shuffle_bytes=*/true);
  Handle root = checked<IoError>(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose, path,
                                 "cannot open the root group");
  MCOMPRESS_CHECK(model.is_sequential(), ModelError, path, ": '", model.name(),
                  "' is a graph model, which only the packed container (format v",
                  kGraphFormatVersion, ") holds; the groups container holds sequential models");
  write_root_attrs(writer, root, model, kGroupsFormatVersion);
  {
    Handle tensors = writer.create_group(root, "tensors");
    GroupSink sink(writer, tensors);
    write_tensors(sink, model, path);
  }
  if (!model.quant.activations.empty()) {
    Handle activations = writer.create_group(root, "activations");
    for (const auto& [key, params] : model.quant.activations) {  // std::map: sorted
      Handle group = writer.create_group(activations, key);
      writer.scalar_attr<double>(group, "scale", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, params.scale);
      writer.scalar_attr<int64_t>(group, "zero_point", H5T_STD_I64LE, H5T_NATIVE_INT64,
                                  params.zero_point);
      writer.string_attr(group, "observer", params.observer);
    }
  }
  {
    Handle history = writer.create_group(root, "history");
    if (!model.history.empty()) {
      const std::string lines = history_lines(model.history);
      writer.dataset(history, "entries", {static_cast<int64_t>(lines.size())},
                     packed::Dtype::kUInt8, packed::Dtype::kUInt8, lines.data(), "/history");
    }
  }
  {
    Handle recipe = writer.create_group(root, "recipe");
    writer.string_attr(recipe, "text", model.recipe);
    writer.scalar_attr<uint64_t>(recipe, "seed", H5T_STD_U64LE, H5T_NATIVE_UINT64, model.seed);
  }
}

// docs/format.md §9: root attributes, /manifest (JSON), /blob (the arrays), /history.
void write_packed_model(hid_t file, const Model& model, const std::string& path) {
  Writer writer(path, /*shuffle_bytes=*/false);
  Handle root = checked<IoError>(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose, path,
                                 "cannot open the root group");
  write_root_attrs(writer, root, model,
                   model.is_sequential() ? kPackedFormatVersion : kGraphFormatVersion);
  if (!model.recipe.empty()) writer.string_attr(root, "recipe", model.recipe);

  PackedSink sink;
  write_tensors(sink, model, path);
  nlohmann::json manifest = {{"tensors", sink.take_tensors()}};
  if (!model.quant.activations.empty()) {
    nlohmann::json activations = nlohmann::json::object();
    for (const auto& [key, params] : model.quant.activations) {
      activations[key] = {{"scale", params.scale},
                          {"zero_point", params.zero_point},
                          {"observer", params.observer}};
    }
    manifest["activations"] = std::move(activations);
  }
  const std::string text = manifest.dump();
  writer.dataset(root, "manifest", {static_cast<int64_t>(text.size())}, packed::Dtype::kUInt8,
                 packed::Dtype::kUInt8, text.data(), "/manifest");
  const std::vector<uint8_t>& blob = sink.blob();
  writer.dataset(root, "blob", {static_cast<int64_t>(blob.size())}, packed::Dtype::kUInt8,
                 packed::Dtype::kUInt8, blob.data(), "/blob", /*filtered=*/false);
  if (!model.history.empty()) {
    const std::string lines = history_lines(model.history);
    writer.dataset(root, "history", {static_cast<int64_t>(lines.size())}, packed::Dtype::kUInt8,
                   packed::Dtype::kUInt8, lines.data(), "/history");
  }
}

}  // namespace mcompress::model_file
