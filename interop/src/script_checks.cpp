#include "script_checks.h"

#include <sstream>
#include <vector>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/error.h"

namespace mcompress::interop {
namespace {

using torch::jit::Module;

// A tensor of a loaded archive whose view (offset, sizes, strides) reaches outside its storage
// would be read out of bounds by the first op that touches it: refused before any use.
void check_view(const at::Tensor& t, const std::string& file, const std::string& name) {
  if (!t.defined() || t.is_sparse() || !t.has_storage()) return;
  MCOMPRESS_CHECK(t.storage_offset() >= 0, FormatError, file, ": tensor '", name,
                  "' has a negative storage offset");
  if (t.numel() == 0) return;
  int64_t last = t.storage_offset();
  for (int64_t d = 0; d < t.dim(); ++d) {
    const int64_t stride = t.stride(d);
    int64_t reach = 0;
    MCOMPRESS_CHECK(stride >= 0 && !__builtin_mul_overflow(t.size(d) - 1, stride, &reach) &&
                        !__builtin_add_overflow(last, reach, &last),
                    FormatError, file, ": tensor '", name, "' has a view (sizes ",
                    shape_to_string(t.sizes().vec()), ", strides ",
                    shape_to_string(t.strides().vec()), ") that cannot be addressed");
  }
  const int64_t needed_bytes =
      (last + 1) * static_cast<int64_t>(t.dtype().itemsize());  // last < 2^62 after the checks
  MCOMPRESS_CHECK(needed_bytes <= static_cast<int64_t>(t.storage().nbytes()), FormatError, file,
                  ": tensor '", name, "' reaches byte ", needed_bytes, " of a storage of ",
                  t.storage().nbytes(), " bytes (offset ", t.storage_offset(), ", sizes ",
                  shape_to_string(t.sizes().vec()), ", strides ",
                  shape_to_string(t.strides().vec()), ")");
}

void check_ivalue_views(const c10::IValue& v, const std::string& file, const std::string& name) {
  if (v.isTensor()) {
    check_view(v.toTensor(), file, name);
  } else if (v.isTensorList()) {
    const auto list = v.toTensorVector();
    for (size_t i = 0; i < list.size(); ++i) {
      check_view(list[i], file, name + "[" + std::to_string(i) + "]");
    }
  }
}

}  // namespace

// An error raised inside TorchScript code starts "The following operation failed in the
// TorchScript interpreter." and a traceback; what matters is its last line (the exception)
// and the innermost source location, 'File "code/__torch__.py", line 9'.
std::string script_error_summary(const std::string& text) {
  std::istringstream lines(text);
  std::string line, last, location;
  while (std::getline(lines, line)) {
    const auto start = line.find_first_not_of(' ');
    if (start == std::string::npos) continue;
    if (line.compare(start, 6, "File \"") == 0) {
      location =
          line.substr(start, line.find(", in ") == std::string::npos ? std::string::npos
                                                                     : line.find(", in ") - start);
    }
    last = line.substr(start);
  }
  if (text.find("TorchScript interpreter") == std::string::npos || last.empty()) {
    return first_line(text);
  }
  return last + (location.empty() ? "" : " (" + location + ")");
}

// Every tensor the archive brought: parameters, buffers and tensor attributes of every
// submodule, and the tensor constants of the code (constants.pkl).
void check_all_views(const Module& module, const std::string& file) {
  for (const auto& a : module.named_attributes(/*recurse=*/true)) {
    check_ivalue_views(a.value, file, a.name);
  }
  const auto unit = module._ivalue()->compilation_unit();
  for (const torch::jit::Function* fn : unit->get_functions()) {
    if (!fn->isGraphFunction()) continue;
    std::vector<const torch::jit::Block*> blocks{torch::jit::toGraphFunction(*fn).graph()->block()};
    while (!blocks.empty()) {
      const torch::jit::Block* block = blocks.back();
      blocks.pop_back();
      for (const torch::jit::Node* node : block->nodes()) {
        for (const torch::jit::Block* inner : node->blocks()) blocks.push_back(inner);
        if (node->kind() != c10::prim::Constant || node->outputs().size() != 1) continue;
        if (const auto value = torch::jit::toIValue(node->output())) {
          check_ivalue_views(*value, file, "constant of " + fn->qualname().qualifiedName());
        }
      }
    }
  }
}

std::string first_line(const std::string& text) {
  const auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

}  // namespace mcompress::interop
