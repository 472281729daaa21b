#pragma once
// Labelled data sets: MNIST-format IDX files (plain or gzipped) and HDF5 files with x/y.

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace mcompress {

/// The default data directory, as Debian's dataset-fashion-mnist installs it.
inline constexpr const char* kFashionMnistDir = "/usr/share/datasets/fashion-mnist";

enum class Split { kTrain, kTest };

/// Images as float32 in their stored range (IDX/uint8 data is scaled to [0,1]); labels int64.
/// Normalisation is part of the model (ArchSpec mean/std), not of the data.
struct Dataset {
  at::Tensor x;        // [N, C, H, W] or [N, D], float32
  at::Tensor y;        // [N], int64, in [0, num_classes)
  std::string source;  // where it came from, for messages and reports

  int64_t size() const;
  /// Rows [begin, end).
  Dataset slice(int64_t begin, int64_t end) const;
  /// Rows at the given indices, in that order.
  Dataset subset(const std::vector<int64_t>& indices) const;
  /// Largest label + 1.
  int64_t num_classes() const;
  /// Shape of one example (x without its first dimension).
  std::vector<int64_t> example_shape() const;
};

/// Reads an IDX image file (magic 0x00000803, uint8, N×H×W → N×1×H×W) and an IDX label file
/// (magic 0x00000801); either may be gzipped (detected from the content, not the name).
/// FormatError for a wrong magic, truncated data or a count mismatch, naming the file.
Dataset load_idx(const std::string& images_path, const std::string& labels_path);

/// Reads `dir`/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz].
Dataset load_idx_dir(const std::string& dir, Split split);

/// Reads an HDF5 file with datasets `x` (N×C×H×W or N×D; float or uint8, uint8 scaled to
/// [0,1]) and `y` (N integer labels). If the file has groups `train` and `test`, the split
/// picks one; otherwise the root datasets serve both splits.
Dataset load_h5_dataset(const std::string& path, Split split);

/// A directory → IDX, a file → HDF5.
Dataset load_dataset(const std::string& dir_or_h5, Split split);

/// Checks the data set is non-empty, labels are within [0, num_classes) and examples have
/// `example_shape`; DataError naming `what` otherwise.
void check_dataset(const Dataset& data, const std::vector<int64_t>& example_shape,
                   int64_t num_classes, const std::string& what);

/// A seeded random split into (train, validation); val_fraction in [0, 1).
std::pair<Dataset, Dataset> split_train_val(const Dataset& data, double val_fraction,
                                            uint64_t seed);

/// Indices 0..n-1 in a seeded random order (Fisher-Yates over a 64-bit Mersenne Twister,
/// so the order is the same on every platform).
std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed);

}  // namespace mcompress
