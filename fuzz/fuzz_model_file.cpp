// libFuzzer target: mcompress::load_model_from_bytes on arbitrary bytes. The input is handed to
// HDF5 as a file image (its in-memory core driver), so no temporary file is written and each
// input costs only the parse: hundreds of inputs a second instead of the tens a file in
// /dev/shm allowed. Expected: a model, or a typed mcompress::Error (FormatError, ModelError,
// IoError) naming the problem.

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_support.h"
#include "mcompress/core/model_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  return mcompress::fuzz::run_expecting_typed_errors("fuzz_model_file", [&] {
    mcompress::Model model = mcompress::load_model_from_bytes(bytes, "fuzz input");
    // Touch what was loaded so a tensor that only looks valid is read end to end.
    for (const auto& info : model.tensor_infos()) (void)model.tensor(info.name).sum();
  });
}
