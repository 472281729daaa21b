#pragma once
// The HDF5 model file (format "mcompress-model", versions 3 and 4; versions 1 and 2 are still
// read). docs/format.md is the spec.

#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/core/model.h"

namespace mcompress {

inline constexpr const char* kModelFormatName = "mcompress-model";
inline constexpr int kModelFormatVersion = 4;  // the newest version read
/// The versions written: the packed container with a sequential `arch` (v3) or a graph
/// document (v4, graph models), and the groups container (v2, sequential models only). A
/// sequential model keeps v3 until every stage runs on graphs, so its files stay byte for byte
/// what earlier releases wrote and read.
inline constexpr int kPackedFormatVersion = 3;
inline constexpr int kGraphFormatVersion = 4;
inline constexpr int kGroupsFormatVersion = 2;

/// How a file holds its tensors (docs/format.md §1).
enum class ModelContainer {
  /// Format v3/v4: one JSON manifest and one blob of individually compressed arrays. Three HDF5
  /// objects whatever the model, so small compressed models are not dominated by metadata.
  kPacked,
  /// Format v2: one HDF5 group per tensor and one dataset per array, which h5dump, HDFView
  /// and plain h5py show directly. Costs about 130-600 bytes of object headers per array.
  kGroups,
};

struct SaveOptions {
  bool overwrite = false;  // replace an existing file at the path
  ModelContainer container = ModelContainer::kPacked;
};

/// Writes `model` to `path` atomically: a temporary file in the same folder, flushed, then
/// renamed. Each tensor is stored dense or sparse (CSR), whichever is smaller; masked tensors
/// are marked pruned. IoError if the folder is missing or read-only, or if the path exists and
/// overwrite is false; ModelError for state the file could not represent (e.g. a mask that is
/// false where the tensor is not zero).
void save_model(const Model& model, const std::string& path, const SaveOptions& options = {});

/// Reads and validates a model file (format name and version, every tensor present with the
/// spec's shape and a known encoding, dense or sparse (CSR) layout, checksums).
/// FormatError/ModelError naming the culprit. Tensors marked pruned get a mask in
/// Model::masks: their non-zero pattern. The file is opened read-only.
Model load_model(const std::string& path);

/// The bytes save_model would write, built in memory (HDF5's core driver; no file is created):
/// for sending a model between processes, or keeping it in a database.
std::string save_model_to_bytes(const Model& model, const SaveOptions& options = {});

/// load_model of a model file's bytes held in memory; `name` stands for the file in messages.
Model load_model_from_bytes(const std::string& bytes, const std::string& name = "(model bytes)");

/// What `mcompress inspect` shows for one stored tensor.
struct StoredTensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  std::string encoding;  // fp32, fp16, bf16, int8
  std::string layout;    // dense, sparse
  int64_t parameters = 0;
  int64_t nonzeros = 0;       // entries whose value is not 0 (int8: not the zero point)
  int64_t bytes_on_disk = 0;  // every array of the tensor, as stored (compressed)
};

struct ModelFileSummary {
  std::string path;
  int format_version = 0;
  std::string container;  // "packed" (v3, v4) or "groups" (v1, v2)
  std::string producer;
  std::string arch_json;  // the sequential spec (v1-v3) or the graph document (v4)
  int64_t file_bytes = 0;
  std::vector<StoredTensorInfo> tensors;
  std::vector<std::string> history;
};

/// Reads the file's metadata and per-tensor storage facts without building a Model.
ModelFileSummary inspect_model_file(const std::string& path);

}  // namespace mcompress
