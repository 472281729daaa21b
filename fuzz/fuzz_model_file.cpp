// libFuzzer target: mcompress::load_model on arbitrary bytes. HDF5 reads only from a path, so
// the input goes to a temporary file in /dev/shm. Expected: a model, or a typed
// mcompress::Error (FormatError, ModelError, IoError) naming the problem.

#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "mcompress/core/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  mcompress::fuzz::TempFile file(data, size, ".h5");
  return mcompress::fuzz::run_expecting_typed_errors("fuzz_model_file", [&] {
    mcompress::Model model = mcompress::load_model(file.path());
    // Touch what was loaded so a tensor that only looks valid is read end to end.
    for (const auto& info : model.tensor_infos()) (void)model.tensor(info.name).sum();
  });
}
