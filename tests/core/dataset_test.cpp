#include "mcompress/core/dataset.h"

#include "mcompress/core/error.h"
#include "test_support.h"

#include <H5Cpp.h>
#include <torch/torch.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <numeric>
#include <string>
#include <vector>

namespace mcompress {
namespace {

using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

// ---- Helpers ------------------------------------------------------------------------------

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8),
          static_cast<char>(v)};
}

/// An IDX file: magic, big-endian dimensions, then the raw bytes.
std::string idx_bytes(uint32_t magic, const std::vector<uint32_t>& dims,
                      const std::vector<uint8_t>& data) {
  std::string out = be32(magic);
  for (uint32_t d : dims) out += be32(d);
  out.append(data.begin(), data.end());
  return out;
}

void write_gzip(const std::string& path, const std::string& bytes) {
  gzFile file = gzopen(path.c_str(), "wb");
  ASSERT_NE(file, nullptr) << path;
  ASSERT_EQ(gzwrite(file, bytes.data(), static_cast<unsigned>(bytes.size())),
            static_cast<int>(bytes.size()));
  ASSERT_EQ(gzclose(file), Z_OK);
}

void write_file(const std::string& path, const std::string& bytes, bool gzip) {
  if (gzip) {
    write_gzip(path, bytes);
  } else {
    write_bytes(path, bytes);
  }
}

/// Pseudo-random bytes (a fixed LCG), so gzip cannot shrink them to almost nothing.
std::vector<uint8_t> pattern(size_t n, uint32_t seed = 1) {
  std::vector<uint8_t> out(n);
  uint32_t state = seed;
  for (auto& b : out) {
    state = state * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(state >> 24);
  }
  return out;
}

struct IdxFiles {
  std::string images;
  std::string labels;
  std::vector<uint8_t> pixels;
  std::vector<uint8_t> classes;
};

/// Writes n images of h×w plus n labels (in 0..9) as `stem`-{images,labels}.
IdxFiles write_idx_pair(const TempDir& dir, const std::string& stem, uint32_t n, uint32_t h,
                        uint32_t w, bool gzip, uint32_t seed = 1) {
  IdxFiles files;
  files.pixels = pattern(size_t{n} * h * w, seed);
  files.classes.resize(n);
  for (uint32_t i = 0; i < n; ++i) files.classes[i] = static_cast<uint8_t>((i * 7 + seed) % 10);
  files.images = dir.file(stem + "-images" + (gzip ? ".gz" : ""));
  files.labels = dir.file(stem + "-labels" + (gzip ? ".gz" : ""));
  write_file(files.images, idx_bytes(0x803, {n, h, w}, files.pixels), gzip);
  write_file(files.labels, idx_bytes(0x801, {n}, files.classes), gzip);
  return files;
}

void expect_matches(const Dataset& data, const IdxFiles& files, int64_t h, int64_t w) {
  const int64_t n = static_cast<int64_t>(files.classes.size());
  ASSERT_EQ(data.x.sizes(), (std::vector<int64_t>{n, 1, h, w}));
  ASSERT_EQ(data.x.scalar_type(), torch::kFloat);
  ASSERT_EQ(data.y.sizes(), (std::vector<int64_t>{n}));
  ASSERT_EQ(data.y.scalar_type(), torch::kLong);
  const auto x = data.x.contiguous();
  const float* px = x.data_ptr<float>();
  for (size_t i = 0; i < files.pixels.size(); ++i) {
    ASSERT_EQ(px[i], static_cast<float>(files.pixels[i]) / 255.0f) << "pixel " << i;
  }
  const int64_t* py = data.y.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(py[i], files.classes[static_cast<size_t>(i)]);
}

/// n examples of `example_shape` whose values count up 0, 1, 2, ... row by row.
Dataset make_dataset(const std::vector<int64_t>& labels,
                     const std::vector<int64_t>& example_shape) {
  const auto n = static_cast<int64_t>(labels.size());
  std::vector<int64_t> shape{n};
  shape.insert(shape.end(), example_shape.begin(), example_shape.end());
  int64_t per_example = 1;
  for (int64_t d : example_shape) per_example *= d;
  const auto x = torch::arange(n * per_example, torch::kFloat).reshape(shape);
  return Dataset{x, torch::tensor(labels, torch::kLong), "memory"};
}

// ---- IDX ----------------------------------------------------------------------------------

TEST(IdxTest, PlainRoundTripsExactly) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "plain", 5, 3, 4, false);
  const Dataset data = load_idx(files.images, files.labels);
  expect_matches(data, files, 3, 4);
  EXPECT_EQ(data.source, files.images);
}

TEST(IdxTest, GzipRoundTripsExactly) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "gz", 7, 5, 2, true);
  expect_matches(load_idx(files.images, files.labels), files, 5, 2);
}

TEST(IdxTest, DetectsGzipFromContentNotName) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "gz", 4, 2, 2, true);
  // Swap the names: a gzipped file without .gz and a plain one with it.
  const std::string images = dir.file("images-no-suffix");
  std::filesystem::rename(files.images, images);
  const std::string labels = dir.file("labels.gz");
  write_bytes(labels, idx_bytes(0x801, {4}, files.classes));
  expect_matches(load_idx(images, labels), files, 2, 2);
}

TEST(IdxTest, WrongMagicNamesTheFile) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "m", 2, 2, 2, true);
  ASSERT_THROWS_WITH(
      load_idx(files.labels, files.labels), FormatError,
      "load_idx: '" + files.labels + "' has magic 0x00000801, expected 0x00000803 (IDX images)");
  ASSERT_THROWS_WITH(load_idx(files.images, files.images), FormatError,
                     "has magic 0x00000803, expected 0x00000801 (IDX labels)");
}

TEST(IdxTest, CountMismatch) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "c", 3, 2, 2, false);
  const std::string labels = dir.file("two-labels");
  write_bytes(labels, idx_bytes(0x801, {2}, {1, 2}));
  ASSERT_THROWS_WITH(load_idx(files.images, labels), FormatError,
                     "'" + files.images + "' has 3 images but '" + labels + "' has 2 labels");
}

TEST(IdxTest, TruncatedPlainFile) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "t", 4, 3, 3, false);
  const std::string bytes = read_bytes(files.images);
  write_bytes(files.images, bytes.substr(0, bytes.size() - 5));
  ASSERT_THROWS_WITH(
      load_idx(files.images, files.labels), FormatError,
      "'" + files.images + "' is truncated: expected 36 bytes of image data, got 31");
  write_bytes(files.images, bytes.substr(0, 10));
  ASSERT_THROWS_WITH(load_idx(files.images, files.labels), FormatError, "is truncated");
  write_bytes(files.images, "");
  ASSERT_THROWS_WITH(load_idx(files.images, files.labels), FormatError, "is truncated");
}

TEST(IdxTest, TruncatedGzip) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "tg", 20, 8, 8, true);
  const std::string bytes = read_bytes(files.images);
  // Cuts inside the trailer (CRC and size: last 8 bytes) as well as inside the deflate data.
  for (size_t cut :
       {size_t{1}, size_t{4}, size_t{8}, size_t{20}, bytes.size() / 2, bytes.size() - 12}) {
    SCOPED_TRACE(cut);
    write_bytes(files.images, bytes.substr(0, bytes.size() - cut));
    ASSERT_THROWS_WITH(load_idx(files.images, files.labels), FormatError,
                       "load_idx: '" + files.images + "' is truncated");
  }
}

TEST(IdxTest, CorruptGzip) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "cg", 20, 8, 8, true);
  std::string bytes = read_bytes(files.images);
  // Damage the CRC: the data decodes but the stream check must fail.
  bytes[bytes.size() - 6] = static_cast<char>(bytes[bytes.size() - 6] ^ 0x55);
  write_bytes(files.images, bytes);
  ASSERT_THROWS_WITH(load_idx(files.images, files.labels), FormatError,
                     "load_idx: '" + files.images + "' is not a valid gzip stream");
}

TEST(IdxTest, ZeroAndAbsurdHeaderDims) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "z", 2, 2, 2, false);
  const std::string images = dir.file("bad-images");
  write_bytes(images, idx_bytes(0x803, {2, 0, 2}, {}));
  ASSERT_THROWS_WITH(load_idx(images, files.labels), FormatError,
                     "'" + images + "' declares IDX images of size 2x0x2");
  write_bytes(images, idx_bytes(0x803, {0xffffffffu, 0xffffffffu, 0xffffffffu}, {1, 2, 3}));
  ASSERT_THROWS_WITH(load_idx(images, files.labels), FormatError, "absurd size");
  // Declares ~1 TB but holds three bytes: must fail without allocating the declared size,
  // for plain and gzipped files alike.
  const std::string huge = idx_bytes(0x803, {0xfffffff0u, 256, 1024}, {1, 2, 3});
  write_bytes(images, huge);
  ASSERT_THROWS_WITH(load_idx(images, files.labels), FormatError, "is truncated");
  // Gzipped, it is refused before decoding: no gzip file holds 2^50 bytes in 39.
  write_gzip(images, huge);
  ASSERT_THROWS_WITH(load_idx(images, files.labels), FormatError,
                     "more than 64x compression is not plausible");
}

TEST(IdxTest, TrailingBytes) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "tb", 2, 2, 2, false);
  write_bytes(files.labels, read_bytes(files.labels) + "xyz");
  ASSERT_THROWS_WITH(load_idx(files.images, files.labels), FormatError,
                     "has 3 unexpected bytes after the label data");
}

TEST(IdxTest, MissingFileIsIoError) {
  TempDir dir;
  const auto files = write_idx_pair(dir, "mf", 2, 2, 2, false);
  const std::string missing = dir.file("nope");
  ASSERT_THROWS_WITH(load_idx(missing, files.labels), IoError, "'" + missing + "'");
  ASSERT_THROWS_WITH(load_idx(files.images, missing), IoError, "'" + missing + "'");
  ASSERT_THROWS_WITH(load_idx(dir.path().string(), files.labels), IoError, "not a regular file");
}

TEST(IdxTest, LoadDirPrefersGzip) {
  TempDir dir;
  // The plain test files differ from the gzipped ones, so the test sees which was read.
  const auto train = write_idx_pair(dir, "train", 6, 4, 4, true, 3);
  const auto test_gz = write_idx_pair(dir, "t10k", 3, 4, 4, true, 5);
  const auto test_plain = write_idx_pair(dir, "t10k", 2, 4, 4, false, 9);
  std::filesystem::rename(train.images, dir.file("train-images-idx3-ubyte.gz"));
  std::filesystem::rename(train.labels, dir.file("train-labels-idx1-ubyte.gz"));
  std::filesystem::rename(test_gz.images, dir.file("t10k-images-idx3-ubyte.gz"));
  std::filesystem::rename(test_gz.labels, dir.file("t10k-labels-idx1-ubyte.gz"));
  std::filesystem::rename(test_plain.images, dir.file("t10k-images-idx3-ubyte"));
  std::filesystem::rename(test_plain.labels, dir.file("t10k-labels-idx1-ubyte"));

  const Dataset train_data = load_idx_dir(dir.path().string(), Split::kTrain);
  expect_matches(train_data, train, 4, 4);
  EXPECT_NE(train_data.source.find("train"), std::string::npos);
  expect_matches(load_idx_dir(dir.path().string(), Split::kTest), test_gz, 4, 4);
  expect_matches(load_dataset(dir.path().string(), Split::kTest), test_gz, 4, 4);

  // Plain files serve when no .gz is there.
  std::filesystem::remove(dir.file("t10k-images-idx3-ubyte.gz"));
  std::filesystem::remove(dir.file("t10k-labels-idx1-ubyte.gz"));
  expect_matches(load_idx_dir(dir.path().string(), Split::kTest), test_plain, 4, 4);

  std::filesystem::remove(dir.file("t10k-labels-idx1-ubyte"));
  ASSERT_THROWS_WITH(load_idx_dir(dir.path().string(), Split::kTest), IoError,
                     "'" + dir.path().string() +
                         "' has neither t10k-labels-idx1-ubyte.gz nor t10k-labels-idx1-ubyte");
}

TEST(IdxTest, LoadDirMissingDirectory) {
  TempDir dir;
  const std::string missing = dir.file("absent");
  ASSERT_THROWS_WITH(load_idx_dir(missing, Split::kTrain), IoError, "'" + missing + "'");
  ASSERT_THROWS_WITH(load_dataset(missing, Split::kTrain), IoError,
                     "'" + missing + "' does not exist");
}

TEST(IdxTest, FashionMnistTestSplit) {
  if (!std::filesystem::is_directory(kFashionMnistDir)) {
    GTEST_SKIP() << kFashionMnistDir << " is absent (Debian package dataset-fashion-mnist)";
  }
  const Dataset data = load_idx_dir(kFashionMnistDir, Split::kTest);
  ASSERT_EQ(data.x.sizes(), (std::vector<int64_t>{10000, 1, 28, 28}));
  ASSERT_EQ(data.y.sizes(), (std::vector<int64_t>{10000}));
  EXPECT_GE(data.y.min().item<int64_t>(), 0);
  EXPECT_EQ(data.num_classes(), 10);
  EXPECT_GE(data.x.min().item<float>(), 0.0f);
  EXPECT_LE(data.x.max().item<float>(), 1.0f);
  EXPECT_EQ(data.x.max().item<float>(), 1.0f);  // some pixel is saturated
  EXPECT_NO_THROW(check_dataset(data, {1, 28, 28}, 10, "test"));
}

// ---- HDF5 ---------------------------------------------------------------------------------

template <typename T>
void write_h5(const H5::Group& group, const std::string& name, const H5::PredType& type,
              const std::vector<hsize_t>& dims, const std::vector<T>& values) {
  H5::DataSpace space(static_cast<int>(dims.size()), dims.data());
  H5::DataSet ds = group.createDataSet(name, type, space);
  ds.write(values.data(), type);
}

TEST(H5DatasetTest, RootFloatDatasets) {
  TempDir dir;
  const std::string path = dir.file("root.h5");
  std::vector<float> xs(3 * 2 * 2 * 2);
  std::iota(xs.begin(), xs.end(), -3.5f);
  {
    H5::H5File file(path, H5F_ACC_TRUNC);
    const H5::Group root = file.openGroup("/");
    write_h5(root, "x", H5::PredType::NATIVE_FLOAT, {3, 2, 2, 2}, xs);
    write_h5(root, "y", H5::PredType::NATIVE_INT32, {3}, std::vector<int32_t>{2, 0, 1});
  }
  for (Split split : {Split::kTrain, Split::kTest}) {
    const Dataset data = load_h5_dataset(path, split);
    ASSERT_EQ(data.x.sizes(), (std::vector<int64_t>{3, 2, 2, 2}));
    ASSERT_EQ(data.x.scalar_type(), torch::kFloat);
    EXPECT_TRUE(torch::equal(data.x.flatten(), torch::tensor(xs)));
    ASSERT_EQ(data.y.scalar_type(), torch::kLong);
    EXPECT_TRUE(torch::equal(data.y, torch::tensor(std::vector<int64_t>{2, 0, 1})));
    EXPECT_EQ(data.num_classes(), 3);
  }
  EXPECT_EQ(load_dataset(path, Split::kTest).size(), 3);
}

TEST(H5DatasetTest, TrainTestGroupsUint8AndDouble) {
  TempDir dir;
  const std::string path = dir.file("groups.h5");
  const std::vector<uint8_t> train_x{0, 51, 255, 17, 200, 3};
  const std::vector<double> test_x{0.25, -1.5, 1e-3, 7.0};
  {
    H5::H5File file(path, H5F_ACC_TRUNC);
    const H5::Group train = file.createGroup("train");
    const H5::Group test = file.createGroup("test");
    write_h5(train, "x", H5::PredType::NATIVE_UINT8, {2, 3}, train_x);
    write_h5(train, "y", H5::PredType::NATIVE_UINT8, {2}, std::vector<uint8_t>{4, 1});
    write_h5(test, "x", H5::PredType::NATIVE_DOUBLE, {2, 2}, test_x);
    write_h5(test, "y", H5::PredType::NATIVE_INT64, {2}, std::vector<int64_t>{0, 9});
  }
  const Dataset train = load_h5_dataset(path, Split::kTrain);
  ASSERT_EQ(train.x.sizes(), (std::vector<int64_t>{2, 3}));
  for (size_t i = 0; i < train_x.size(); ++i) {
    EXPECT_EQ(train.x.flatten()[static_cast<int64_t>(i)].item<float>(),
              static_cast<float>(train_x[i]) / 255.0f);
  }
  EXPECT_TRUE(torch::equal(train.y, torch::tensor(std::vector<int64_t>{4, 1})));
  EXPECT_NE(train.source.find("train"), std::string::npos);

  const Dataset test = load_h5_dataset(path, Split::kTest);
  ASSERT_EQ(test.x.sizes(), (std::vector<int64_t>{2, 2}));
  for (size_t i = 0; i < test_x.size(); ++i) {
    EXPECT_EQ(test.x.flatten()[static_cast<int64_t>(i)].item<float>(),
              static_cast<float>(test_x[i]));
  }
  EXPECT_TRUE(torch::equal(test.y, torch::tensor(std::vector<int64_t>{0, 9})));
}

TEST(H5DatasetTest, MissingY) {
  TempDir dir;
  const std::string path = dir.file("noy.h5");
  {
    H5::H5File file(path, H5F_ACC_TRUNC);
    const H5::Group train = file.createGroup("train");
    file.createGroup("test");
    write_h5(train, "x", H5::PredType::NATIVE_FLOAT, {1, 2}, std::vector<float>{1, 2});
  }
  ASSERT_THROWS_WITH(load_h5_dataset(path, Split::kTrain), FormatError,
                     "load_h5_dataset: '" + path + "' has no dataset '/train/y'");
  ASSERT_THROWS_WITH(load_h5_dataset(path, Split::kTest), FormatError, "has no dataset '/test/x'");
}

TEST(H5DatasetTest, ShapeAndTypeErrors) {
  TempDir dir;
  const std::string path = dir.file("bad.h5");
  {
    H5::H5File file(path, H5F_ACC_TRUNC);
    const H5::Group root = file.openGroup("/");
    write_h5(root, "x", H5::PredType::NATIVE_FLOAT, {2, 2, 2}, std::vector<float>(8, 0.5f));
    write_h5(root, "y", H5::PredType::NATIVE_INT64, {2}, std::vector<int64_t>{0, 1});
  }
  ASSERT_THROWS_WITH(load_h5_dataset(path, Split::kTrain), FormatError,
                     "dataset '/x' has rank 3, expected 2 (N x D) or 4 (N x C x H x W)");
  {
    H5::H5File file(path, H5F_ACC_TRUNC);
    const H5::Group root = file.openGroup("/");
    write_h5(root, "x", H5::PredType::NATIVE_INT64, {2, 2}, std::vector<int64_t>(4, 1));
    write_h5(root, "y", H5::PredType::NATIVE_INT64, {2}, std::vector<int64_t>{0, 1});
  }
  ASSERT_THROWS_WITH(load_h5_dataset(path, Split::kTrain), FormatError,
                     "dataset '/x' has a 8-byte signed integer type");
  {
    H5::H5File file(path, H5F_ACC_TRUNC);
    const H5::Group root = file.openGroup("/");
    write_h5(root, "x", H5::PredType::NATIVE_FLOAT, {3, 2}, std::vector<float>(6, 0.5f));
    write_h5(root, "y", H5::PredType::NATIVE_INT64, {2}, std::vector<int64_t>{0, 1});
  }
  ASSERT_THROWS_WITH(load_h5_dataset(path, Split::kTrain), FormatError,
                     "has 3 examples in '/x' but 2 labels in '/y'");
  {
    H5::H5File file(path, H5F_ACC_TRUNC);
    const H5::Group root = file.openGroup("/");
    write_h5(root, "x", H5::PredType::NATIVE_FLOAT, {2, 2}, std::vector<float>(4, 0.5f));
    write_h5(root, "y", H5::PredType::NATIVE_FLOAT, {2}, std::vector<float>{0, 1});
  }
  ASSERT_THROWS_WITH(load_h5_dataset(path, Split::kTrain), FormatError,
                     "dataset '/y' is not of an integer type");
  {
    H5::H5File file(path, H5F_ACC_TRUNC);
    const H5::Group root = file.openGroup("/");
    write_h5(root, "x", H5::PredType::NATIVE_FLOAT, {2, 2}, std::vector<float>(4, 0.5f));
    write_h5(root, "y", H5::PredType::NATIVE_INT64, {2, 1}, std::vector<int64_t>{0, 1});
  }
  ASSERT_THROWS_WITH(load_h5_dataset(path, Split::kTrain), FormatError,
                     "dataset '/y' has rank 2, expected 1");
}

TEST(H5DatasetTest, NotHdf5AndMissing) {
  TempDir dir;
  const std::string text = dir.file("notes.h5");
  write_bytes(text, "this is not HDF5 at all, just some text that is long enough");
  ASSERT_THROWS_WITH(load_h5_dataset(text, Split::kTrain), FormatError,
                     "load_h5_dataset: '" + text + "' is not an HDF5 file");
  ASSERT_THROWS_WITH(load_dataset(text, Split::kTrain), FormatError, "is not an HDF5 file");
  const std::string missing = dir.file("missing.h5");
  ASSERT_THROWS_WITH(load_h5_dataset(missing, Split::kTrain), IoError, "'" + missing + "'");
  // A truncated HDF5 file: HDF5's innermost error message comes back in a FormatError.
  const std::string cut = dir.file("cut.h5");
  {
    H5::H5File file(cut, H5F_ACC_TRUNC);
    write_h5(file.openGroup("/"), "x", H5::PredType::NATIVE_FLOAT, {64, 16},
             std::vector<float>(1024, 0.25f));
  }
  const std::string bytes = read_bytes(cut);
  write_bytes(cut, bytes.substr(0, bytes.size() / 2));
  ASSERT_THROWS_WITH(load_h5_dataset(cut, Split::kTrain), FormatError,
                     "load_h5_dataset: '" + cut + "' is not a readable HDF5 data set");
  ASSERT_THROWS_WITH(load_h5_dataset(cut, Split::kTrain), FormatError, "truncated file");
}

// ---- Dataset methods and checks -----------------------------------------------------------

TEST(DatasetTest, SizeSliceSubset) {
  const Dataset data = make_dataset({0, 3, 1, 2, 1}, {2});
  EXPECT_EQ(data.size(), 5);
  EXPECT_EQ(data.num_classes(), 4);
  EXPECT_EQ(data.example_shape(), (std::vector<int64_t>{2}));

  const Dataset middle = data.slice(1, 3);
  EXPECT_EQ(middle.size(), 2);
  EXPECT_TRUE(torch::equal(middle.y, torch::tensor(std::vector<int64_t>{3, 1})));
  EXPECT_TRUE(torch::equal(middle.x, data.x.slice(0, 1, 3)));
  EXPECT_EQ(data.slice(2, 2).size(), 0);
  ASSERT_THROWS_WITH(data.slice(3, 6), DataError, "rows [3, 6)");
  ASSERT_THROWS_WITH(data.slice(-1, 2), DataError, "'memory'");
  ASSERT_THROWS_WITH(data.slice(3, 2), DataError, "outside");

  const Dataset picked = data.subset({4, 0, 4});
  EXPECT_TRUE(torch::equal(picked.y, torch::tensor(std::vector<int64_t>{1, 0, 1})));
  EXPECT_TRUE(torch::equal(picked.x[1], data.x[0]));
  EXPECT_EQ(data.subset({}).size(), 0);
  EXPECT_EQ(data.subset({}).example_shape(), (std::vector<int64_t>{2}));
  ASSERT_THROWS_WITH(data.subset({0, 5}), DataError, "index 5");

  EXPECT_EQ(Dataset{}.size(), 0);
  EXPECT_EQ(Dataset{}.num_classes(), 0);
  EXPECT_EQ(data.subset({}).num_classes(), 0);
}

TEST(DatasetTest, CheckDataset) {
  const Dataset data = make_dataset({0, 2, 1}, {1, 2, 2});
  EXPECT_NO_THROW(check_dataset(data, {1, 2, 2}, 3, "training"));
  EXPECT_NO_THROW(check_dataset(data, {1, 2, 2}, 10, "training"));
  ASSERT_THROWS_WITH(check_dataset(data.slice(0, 0), {1, 2, 2}, 3, "training"), DataError,
                     "training: data set 'memory' is empty");
  ASSERT_THROWS_WITH(check_dataset(Dataset{}, {1, 2, 2}, 3, "eval"), DataError,
                     "eval: data set '' is empty");
  ASSERT_THROWS_WITH(check_dataset(data, {3, 2, 2}, 3, "training"), DataError,
                     "has examples of shape [1, 2, 2], expected [3, 2, 2]");
  ASSERT_THROWS_WITH(check_dataset(data, {1, 2, 2}, 2, "training"), DataError,
                     "has label 2 outside [0, 2)");
  const Dataset negative = make_dataset({0, -1}, {1, 2, 2});
  ASSERT_THROWS_WITH(check_dataset(negative, {1, 2, 2}, 3, "eval"), DataError,
                     "has label -1 outside [0, 3)");
  ASSERT_THROWS_WITH(check_dataset(data, {1, 2, 2}, 0, "eval"), ConfigError, "num_classes");
}

// ---- Splits and shuffles ------------------------------------------------------------------

TEST(SplitTest, ShuffledIndicesIsPermutation) {
  for (int64_t n : {0, 1, 2, 17, 1000}) {
    auto order = shuffled_indices(n, 42);
    ASSERT_EQ(static_cast<int64_t>(order.size()), n);
    std::sort(order.begin(), order.end());
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(order[static_cast<size_t>(i)], i);
  }
  EXPECT_EQ(shuffled_indices(1000, 7), shuffled_indices(1000, 7));
  EXPECT_NE(shuffled_indices(1000, 7), shuffled_indices(1000, 8));
  ASSERT_THROWS_WITH(shuffled_indices(-1, 0), ConfigError, "got -1");
}

TEST(SplitTest, ShuffledIndicesGolden) {
  // Pinned output of Fisher-Yates over std::mt19937_64 with the rejection-bounded integer
  // (checked against an independent Python implementation): a change here changes every
  // seeded split and run.
  EXPECT_EQ(shuffled_indices(10, 0), (std::vector<int64_t>{7, 2, 0, 8, 3, 9, 6, 1, 5, 4}));
  const auto big = shuffled_indices(60000, 12345);
  EXPECT_EQ(std::vector<int64_t>(big.begin(), big.begin() + 6),
            (std::vector<int64_t>{14921, 30577, 57776, 28361, 58586, 4625}));
}

TEST(SplitTest, FractionsAndDeterminism) {
  std::vector<int64_t> labels(100);
  for (size_t i = 0; i < labels.size(); ++i) labels[i] = static_cast<int64_t>(i % 10);
  const Dataset data = make_dataset(labels, {3});

  const auto [train, val] = split_train_val(data, 0.2, 11);
  EXPECT_EQ(train.size(), 80);
  EXPECT_EQ(val.size(), 20);
  EXPECT_EQ(train.example_shape(), (std::vector<int64_t>{3}));
  // x row i is 3i..3i+2, so the first column recovers each row's original index.
  auto rows = [](const Dataset& d) {
    const auto col = (d.x.select(1, 0) / 3).to(torch::kLong);
    return std::vector<int64_t>(col.data_ptr<int64_t>(), col.data_ptr<int64_t>() + col.numel());
  };
  const auto train_rows = rows(train);
  const auto val_rows = rows(val);
  EXPECT_TRUE(std::is_sorted(train_rows.begin(), train_rows.end()));
  EXPECT_TRUE(std::is_sorted(val_rows.begin(), val_rows.end()));
  std::vector<int64_t> all(train_rows);
  all.insert(all.end(), val_rows.begin(), val_rows.end());
  std::sort(all.begin(), all.end());
  for (int64_t i = 0; i < 100; ++i) ASSERT_EQ(all[static_cast<size_t>(i)], i);
  // Labels travel with their rows.
  for (int64_t i = 0; i < val.size(); ++i) {
    EXPECT_EQ(val.y[i].item<int64_t>(), val_rows[static_cast<size_t>(i)] % 10);
  }
  // The validation rows are the first 20 of the seeded shuffle.
  auto expected_val = shuffled_indices(100, 11);
  expected_val.resize(20);
  std::sort(expected_val.begin(), expected_val.end());
  EXPECT_EQ(val_rows, expected_val);

  const auto again = split_train_val(data, 0.2, 11);
  EXPECT_EQ(rows(again.second), val_rows);
  EXPECT_EQ(rows(again.first), train_rows);
  EXPECT_NE(rows(split_train_val(data, 0.2, 12).second), val_rows);

  EXPECT_EQ(split_train_val(data, 0.125, 1).second.size(), 13);  // round(12.5) = 13
  EXPECT_EQ(split_train_val(data, 0.001, 1).second.size(), 0);
  const auto [all_train, none] = split_train_val(data, 0.0, 3);
  EXPECT_EQ(all_train.size(), 100);
  EXPECT_EQ(none.size(), 0);
  EXPECT_TRUE(torch::equal(all_train.x, data.x));

  ASSERT_THROWS_WITH(split_train_val(data, 1.0, 1), ConfigError,
                     "val_fraction must be in [0, 1), got 1");
  ASSERT_THROWS_WITH(split_train_val(data, -0.1, 1), ConfigError, "got -0.1");
  ASSERT_THROWS_WITH(split_train_val(data, std::nan(""), 1), ConfigError, "val_fraction");
}

}  // namespace
}  // namespace mcompress
