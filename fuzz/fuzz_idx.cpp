// libFuzzer target: mcompress::load_idx (MNIST IDX, plain or gzipped) on arbitrary bytes.
// The input holds both files: a 4-byte little-endian length L, then L bytes of the image
// file, then the label file (L is clamped to what is there). Expected: a Dataset, or a typed
// mcompress::Error (FormatError for bad magic, sizes, truncation or corrupt gzip).

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "mcompress/core/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  size_t image_bytes = 0;
  if (size >= 4) {
    image_bytes =
        size_t{data[0]} | size_t{data[1]} << 8 | size_t{data[2]} << 16 | size_t{data[3]} << 24;
    data += 4;
    size -= 4;
  }
  image_bytes = std::min(image_bytes, size);
  mcompress::fuzz::TempFile images(data, image_bytes, "-images");
  mcompress::fuzz::TempFile labels(data + image_bytes, size - image_bytes, "-labels");
  return mcompress::fuzz::run_expecting_typed_errors("fuzz_idx", [&] {
    const mcompress::Dataset set = mcompress::load_idx(images.path(), labels.path());
    (void)set.x.sum();
  });
}
