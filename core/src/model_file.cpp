// The HDF5 model file, format "mcompress-model" v3 (the packed container; v2's groups container
// is still written on request, and v1 read). docs/format.md is the specification; keep the two
// in step.
//
// The public entry points: save_model (checks, then the atomic write of a temporary file),
// load_model and inspect_model_file. The parts live next to this file:
//   hdf5_handle.{h,cpp}    HDF5 plumbing (C API through the RAII Handle, errors, type helpers)
//   tensor_codec.{h,cpp}   how a tensor's values are stored: dtypes, CSR, row-delta, codebook
//   model_checks.{h,cpp}   quantization state, masks and names a file could not represent
//   model_writer.{h,cpp}   TensorSink, GroupSink/PackedSink, Writer: both containers
//   model_reader.h         Reader: an open, format-checked file
//   tensor_entry.{h,cpp}   TensorEntry, GroupEntry/PackedEntry: stored tensors in either container
//   tensor_reader.{h,cpp}  decoding stored tensors (read_tensor, inspect_tensor)
// HDF5's automatic error printing is switched off for the duration of each public call; the
// error stack is folded into the exception message instead.

#include "mcompress/core/model_file.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <utility>

#include "hdf5_handle.h"
#include "mcompress/core/atomic_file.h"
#include "mcompress/core/error.h"
#include "model_checks.h"
#include "model_reader.h"
#include "model_writer.h"
#include "tensor_entry.h"
#include "tensor_reader.h"

namespace mcompress {
namespace {

namespace fs = std::filesystem;
using model_file::check_masks;
using model_file::check_quant_state;
using model_file::checked;
using model_file::h5_check;
using model_file::Handle;
using model_file::inspect_tensor;
using model_file::LoadedTensor;
using model_file::ordered_tensor_names;
using model_file::QuietHdf5Errors;
using model_file::read_tensor;
using model_file::Reader;
using model_file::StoredTensors;
using model_file::write_groups_model;
using model_file::write_packed_model;

}  // namespace

namespace {

// Writes `model` as the HDF5 file `file_name`, opened through `fapl` (the default driver or
// the in-memory one), and leaves it flushed and open. `path` names the output in messages.
Handle write_model_file(const Model& model, const std::string& file_name, hid_t fapl,
                        const std::string& path, const SaveOptions& options) {
  Handle fcpl =
      checked<IoError>(H5Pcreate(H5P_FILE_CREATE), H5Pclose, path, "cannot create a property list");
  // The root group is created with the file; keep its header free of timestamps too.
  h5_check<IoError>(H5Pset_obj_track_times(fcpl, false), path, "cannot disable time tracking");
  // The 1.10 object formats (single-chunk index, compact groups) cut the metadata of a
  // ResNet-8 file from ~200 KB to ~37 KB, which matters when reports compare file sizes.
  // Pinning both bounds keeps the bytes the same when the HDF5 library is upgraded.
  h5_check<IoError>(H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_V110), path,
                    "cannot select the HDF5 1.10 file format");
  // No 2 KiB aggregation blocks for metadata and small datasets: their unused tails were
  // ~2 KB of a 38 KB pruned int8 mlp file. Each object gets exactly the space it needs.
  h5_check<IoError>(H5Pset_meta_block_size(fapl, 0), path, "cannot set the metadata block size");
  h5_check<IoError>(H5Pset_small_data_block_size(fapl, 0), path,
                    "cannot set the small-data block size");
  // HDF5's detail carries the errno text (e.g. "Permission denied" for a read-only folder).
  Handle file =
      checked<IoError>(H5Fcreate(file_name.c_str(), H5F_ACC_TRUNC, fcpl, fapl), H5Fclose, path,
                       "cannot create the file '" + file_name + "'; is the folder writable?");
  if (options.container == ModelContainer::kGroups) {
    write_groups_model(file, model, path);
  } else {
    write_packed_model(file, model, path);
  }
  h5_check<IoError>(H5Fflush(file, H5F_SCOPE_GLOBAL), path, "cannot flush '" + file_name + "'");
  return file;
}

Model read_model(Reader& reader) {
  const std::string& path = reader.path();
  const Reader::Architecture arch = reader.arch();

  std::map<std::string, at::Tensor> tensors;
  QuantState quant;
  std::map<std::string, at::Tensor> masks;
  quant.mode = reader.quant_mode();
  {
    StoredTensors stored(reader);
    std::set<std::string> expected;
    for (const TensorInfo& info : arch.tensors) expected.insert(info.name);
    // A stray tensor means the file and its architecture disagree; refuse rather than guess.
    for (const std::string& name : stored.names()) {
      MCOMPRESS_CHECK(expected.count(name) != 0, FormatError, path, ": tensor '", name,
                      "' is stored in the file but is not a tensor of the architecture");
    }
    for (const TensorInfo& info : arch.tensors) {
      LoadedTensor loaded = read_tensor(stored, info, path);
      tensors.emplace(info.name, std::move(loaded.master));
      if (loaded.quantized) quant.tensors.emplace(info.name, std::move(*loaded.quantized));
      if (loaded.mask.defined()) masks.emplace(info.name, std::move(loaded.mask));
    }
  }
  quant.activations = reader.activations();

  Model model = [&] {
    try {
      return arch.spec ? Model::from_tensors(*arch.spec, std::move(tensors))
                       : Model::from_tensors(*arch.graph, std::move(tensors));
    } catch (const ModelError& e) {
      throw ModelError(path + ": " + e.what());
    }
  }();
  model.quant = std::move(quant);
  model.masks = std::move(masks);
  model.history = reader.history();
  model.recipe = reader.recipe();
  model.seed = reader.seed();
  return model;
}

}  // namespace

void save_model(const Model& model, const std::string& path, const SaveOptions& options) {
  QuietHdf5Errors quiet;
  MCOMPRESS_CHECK(!path.empty(), IoError, "cannot save a model to an empty path");
  check_quant_state(model, path);
  check_masks(model, path);
  AtomicFile output(path, options.overwrite);
  {
    Handle fapl = checked<IoError>(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, path,
                                   "cannot create a property list");
    Handle file = write_model_file(model, output.temp_path(), fapl, path, options);
    h5_check<IoError>(file.close(), path, "cannot close '" + output.temp_path() + "'");
  }
  output.commit();
}

std::string save_model_to_bytes(const Model& model, const SaveOptions& options) {
  QuietHdf5Errors quiet;
  const std::string name = "(model in memory)";
  check_quant_state(model, name);
  check_masks(model, name);
  Handle fapl =
      checked<IoError>(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, name, "cannot create a property list");
  h5_check<IoError>(H5Pset_fapl_core(fapl, 1 << 20, /*backing_store=*/false), name,
                    "cannot select HDF5's in-memory driver");
  // The core driver keys open files by name: one per call, so concurrent saves never meet.
  static std::atomic<uint64_t> counter{0};
  const std::string file_name = "mcompress-image-" + std::to_string(counter++);
  Handle file = write_model_file(model, file_name, fapl, name, options);
  const ssize_t size = H5Fget_file_image(file, nullptr, 0);
  MCOMPRESS_CHECK(size > 0, IoError, name, ": cannot size the file image");
  std::string bytes(static_cast<size_t>(size), '\0');
  MCOMPRESS_CHECK(H5Fget_file_image(file, bytes.data(), bytes.size()) == size, IoError, name,
                  ": cannot copy the file image");
  return bytes;
}

Model load_model(const std::string& path) {
  QuietHdf5Errors quiet;
  Reader reader(path);
  return read_model(reader);
}

Model load_model_from_bytes(const std::string& bytes, const std::string& name) {
  QuietHdf5Errors quiet;
  Reader reader(name, bytes);
  return read_model(reader);
}

ModelFileSummary inspect_model_file(const std::string& path) {
  QuietHdf5Errors quiet;
  Reader reader(path);
  ModelFileSummary summary;
  summary.path = path;
  summary.format_version = reader.format_version();
  summary.producer = reader.string_attr(reader.root(), "producer", "/").value_or(std::string());
  const Reader::Architecture arch = reader.arch(&summary.arch_json);
  summary.container = reader.format_version() >= 3 ? "packed" : "groups";
  {
    StoredTensors stored(reader);
    for (const std::string& name : ordered_tensor_names(stored.names(), arch.tensors))
      summary.tensors.push_back(inspect_tensor(stored, name));
  }
  summary.history = reader.history();
  std::error_code ec;
  summary.file_bytes = static_cast<int64_t>(fs::file_size(path, ec));
  MCOMPRESS_CHECK(!ec, IoError, path, ": cannot read the file size: ", ec.message());
  return summary;
}

}  // namespace mcompress
