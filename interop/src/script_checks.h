#pragma once
// What the TorchScript importer checks about an archive before trusting it (docs/reliability.md,
// "Threats and limits"): tensor views that stay inside their storages, and errors raised by the
// archive's code reduced to one line.

#include <torch/script.h>

#include <string>

namespace mcompress::interop {

/// Every tensor the archive brought (parameters, buffers, tensor attributes of every submodule,
/// the tensor constants of its code) addresses only bytes of its own storage; FormatError
/// naming `file` and the tensor otherwise. Before any op touches them.
void check_all_views(const torch::jit::Module& module, const std::string& file);

/// The first line of `text`, e.g. a LibTorch error without the C++ backtrace that follows it.
std::string first_line(const std::string& text);

/// The last line of an error raised in TorchScript code (the exception) with its innermost
/// source location, instead of the interpreter's traceback; other text's first line.
std::string script_error_summary(const std::string& text);

}  // namespace mcompress::interop
