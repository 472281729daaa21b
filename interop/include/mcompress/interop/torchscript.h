#pragma once
// PyTorch interoperability through TorchScript files (`torch.jit.save` / `torch.jit.load`).
// Import turns a scripted chain of standard torch.nn layers into an ArchSpec + weights; export
// writes a Model as a TorchScript module that Python runs on raw inputs. docs/interop.md has
// the accepted module trees, the checks and the layout of exported files.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mcompress/core/model.h"

namespace mcompress::interop {

/// What a TorchScript file does not say: the input shape and the normalisation its forward
/// expects the caller to have applied.
struct TorchScriptImportOptions {
  /// One example without the batch dimension ({C,H,W} or {D}). Default: the shape recorded by
  /// `mcompress export`, else Fashion-MNIST's {1,28,28}.
  std::optional<std::vector<int64_t>> input_shape;
  /// Per-channel (or single) mean and std the Python model expects its inputs normalised with:
  /// the imported model computes forward((x - mean) / std) on raw inputs x. Default: none
  /// (mean 0, std 1), or the values baked into a module written by `mcompress export`, which
  /// normalises inside its forward (giving them then is a ConfigError).
  std::optional<std::vector<double>> mean, std;
  /// The spec's name; default: the file name without its extension.
  std::string name;
  /// Seed of the random input of the forward check.
  uint64_t seed = 0;
  /// Seconds the module's forward may take in the check (it runs in a child process, killed
  /// after this; a .pt file is code).
  double forward_timeout = 10;
};

/// What the import found, for the CLI and the model's history.
struct TorchScriptImportReport {
  /// Per spec layer: the module path in the TorchScript tree it came from ("features.0";
  /// "(top)" for the top-level module itself; "(implicit)" for a flatten inserted before a
  /// Linear that follows a [C,H,W] activation).
  std::vector<std::string> layer_sources;
  /// Largest |difference| between the TorchScript forward and our network's on the random
  /// check input, and the largest |logit| (the scale the tolerance is relative to).
  double max_abs_difference = 0;
  double max_abs_output = 0;
  /// True when the module normalises inside its forward (written by `mcompress export`).
  bool normalisation_in_module = false;
};

/// Reads a TorchScript file and converts it into a Model (fp32, no compression state).
///
/// Accepted module tree: torch.nn Sequential (nested at any depth), Linear, Conv2d (square
/// kernel/stride/padding, dilation 1, zero padding), BatchNorm1d/2d (with running statistics),
/// ReLU, MaxPool2d / AvgPool2d (square, no ceil mode, no dilation), AdaptiveAvgPool2d (square
/// output), Flatten(1, -1), Dropout, Identity; modules written by export_torchscript (including
/// its residual blocks); and user-defined container modules without parameters of their own.
/// Layers are taken in registration order (the order of named_children()), so a user module's
/// forward must call its children as a plain chain in that order: the import checks this by
/// running the TorchScript forward and our network on a seeded random input, and fails when
/// they differ by more than 1e-4 · max(1, max |logit|). The class count is the output size
/// of the last Linear layer.
///
/// Errors, each naming the file: IoError for a missing or unreadable file; FormatError for a
/// file that is not a TorchScript archive (corrupt, truncated, a plain state_dict pickle);
/// ModelError for an unsupported module (naming its path and type, e.g.
/// "model.pt: unsupported module 'features.3' of type GELU"), a traced module whose layer
/// settings were not kept, shapes that do not chain from the input shape, or a forward that
/// is not the chain of its children; ConfigError for mean/std given for a module that
/// normalises itself.
Model import_torchscript(const std::string& path, const TorchScriptImportOptions& options = {},
                         TorchScriptImportReport* report = nullptr);

struct TorchScriptExportOptions {
  bool overwrite = false;  // replace an existing file at the path
};

/// Writes `model` as a TorchScript module that `torch.jit.load` reads and runs on raw inputs,
/// batched as the data set stores them ([N, ...input_shape], float32): its forward applies
/// the spec's mean/std normalisation, then the layers, in inference mode (batch norm uses the
/// running statistics, dropout is the identity), and returns the logits.
///
/// The module's children are the spec's layers, named by their index, so its state_dict keys
/// are our tensor names ("3.weight", "5.conv1.weight", "5.shortcut.1.running_var"). Weights are
/// the fp32 masters with the pruning masks applied; for int8, fp16, bf16 and codebook tensors
/// that is the dequantized value. The top-level module also carries string attributes `arch`
/// (the ArchSpec JSON) and `quantization` (JSON: the mode, and per tensor its encoding with
/// int8 scales, zero points and axis, or the codebook and its bits; int8-static activation
/// qparams), and list attributes `input_shape`, `input_mean`, `input_std`. The file is
/// written atomically. IoError if the folder is missing or read-only, or the path exists and
/// overwrite is false.
void export_torchscript(const Model& model, const std::string& path,
                        const TorchScriptExportOptions& options = {});

/// The `quantization` attribute of an exported module (see export_torchscript): a JSON object
/// with "mode" ("" for fp32), "tensors" and "activations".
std::string quantization_json(const Model& model);

}  // namespace mcompress::interop
