#pragma once
// A TorchScript file is code: its forward can loop forever, print into our output or crash the
// process. The import's forward check therefore runs it in a child process with a time limit,
// its standard output and error discarded, and only a tensor coming back.

#include <ATen/ATen.h>

#include <functional>
#include <string>

namespace mcompress::interop {

/// Runs `work` in a forked child (one intra-op thread, stdout/stderr to /dev/null) and returns
/// the tensor it produced. ModelError naming `what` when the child does not finish within
/// `seconds` (it is killed), dies of a signal, or `work` throws (its message is passed on).
at::Tensor run_isolated(const std::function<at::Tensor()>& work, double seconds,
                        const std::string& what);

}  // namespace mcompress::interop
