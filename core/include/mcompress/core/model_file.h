#pragma once
// The HDF5 model file (format "mcompress-model", version 2; version 1 is still read).
// docs/format.md is the spec.

#include <cstdint>
#include <string>
#include <vector>

#include "mcompress/core/model.h"

namespace mcompress {

inline constexpr const char* kModelFormatName = "mcompress-model";
inline constexpr int kModelFormatVersion = 2;

struct SaveOptions {
  bool overwrite = false;  // replace an existing file at the path
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

/// What `mcompress inspect` shows for one stored tensor.
struct StoredTensorInfo {
  std::string name;
  std::vector<int64_t> shape;
  std::string encoding;  // fp32, fp16, bf16, int8
  std::string layout;    // dense, sparse
  int64_t parameters = 0;
  int64_t nonzeros = 0;       // entries whose value is not 0 (int8: not the zero point)
  int64_t bytes_on_disk = 0;  // every dataset of the tensor group, as stored (compressed)
};

struct ModelFileSummary {
  std::string path;
  int format_version = 0;
  std::string producer;
  std::string arch_json;
  int64_t file_bytes = 0;
  std::vector<StoredTensorInfo> tensors;
  std::vector<std::string> history;
};

/// Reads the file's metadata and per-tensor storage facts without building a Model.
ModelFileSummary inspect_model_file(const std::string& path);

}  // namespace mcompress
