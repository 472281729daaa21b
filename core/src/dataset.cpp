#include "mcompress/core/dataset.h"

#include "gzip_reader.h"
#include "hdf5_guard.h"
#include "mcompress/core/error.h"

#include <ATen/ATen.h>
#include <H5Cpp.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>

namespace mcompress {
namespace {

namespace fs = std::filesystem;
using detail::concat;

constexpr uint32_t kIdxImagesMagic = 0x00000803;  // uint8 data, 3 dimensions
constexpr uint32_t kIdxLabelsMagic = 0x00000801;  // uint8 data, 1 dimension

const char* split_name(Split split) { return split == Split::kTrain ? "train" : "test"; }

std::string hex32(uint32_t value) {
  char text[16];
  std::snprintf(text, sizeof text, "0x%08x", value);
  return text;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << '[';
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << ']';
  return out.str();
}

std::string dims_string(const std::vector<uint64_t>& dims) {
  std::ostringstream out;
  for (size_t i = 0; i < dims.size(); ++i) out << (i ? "x" : "") << dims[i];
  return out.str();
}

// A data file that decodes to more than this many times the bytes it stores (plus 64 MiB) is
// refused before decoding: real image and label files compress 2-10x; a gzip or HDF5 bomb
// reaches 1000x. Fashion-MNIST's training images are 1.8x.
constexpr uint64_t kMaxDataRatio = 64;
constexpr uint64_t kDataSlack = uint64_t{64} << 20;

// ---- IDX ----------------------------------------------------------------------------------

/// Reads an IDX header with the expected magic and returns its dimensions; rejects zero
/// dimensions and products that overflow, so the caller can trust the byte count.
std::vector<uint64_t> read_idx_header(detail::GzipReader& in, uint32_t expected_magic,
                                      const char* kind, uint64_t* total) {
  unsigned char magic_bytes[4];
  in.read_exact(magic_bytes, 4, "IDX header");
  const uint32_t magic = (uint32_t{magic_bytes[0]} << 24) | (uint32_t{magic_bytes[1]} << 16) |
                         (uint32_t{magic_bytes[2]} << 8) | uint32_t{magic_bytes[3]};
  MCOMPRESS_CHECK(magic == expected_magic, FormatError, "load_idx: '", in.path(), "' has magic ",
                  hex32(magic), ", expected ", hex32(expected_magic), " (", kind, ")");
  const size_t rank = expected_magic & 0xff;
  std::vector<unsigned char> raw(4 * rank);
  in.read_exact(raw.data(), raw.size(), "IDX header");
  std::vector<uint64_t> dims(rank);
  uint64_t product = 1;
  for (size_t i = 0; i < rank; ++i) {
    dims[i] = (uint64_t{raw[4 * i]} << 24) | (uint64_t{raw[4 * i + 1]} << 16) |
              (uint64_t{raw[4 * i + 2]} << 8) | uint64_t{raw[4 * i + 3]};
  }
  for (size_t i = 0; i < rank; ++i) {
    MCOMPRESS_CHECK(dims[i] > 0, FormatError, "load_idx: '", in.path(), "' declares ", kind,
                    " of size ", dims_string(dims), "; expected every dimension > 0");
    // Each dimension is < 2^32; stop before the product can leave int64 range.
    MCOMPRESS_CHECK(product <= (uint64_t{1} << 62) / dims[i], FormatError, "load_idx: '", in.path(),
                    "' declares ", kind, " of absurd size ", dims_string(dims));
    product *= dims[i];
  }
  *total = product;
  return dims;
}

// A gzip file cannot plausibly decode to more than kMaxDataRatio times its size: refused before
// decoding a byte of it (a multi-member gzip of zeros decodes at ~1000:1).
void check_plausible_size(detail::GzipReader& in, uint64_t total, const char* kind) {
  if (!in.is_gzip()) return;  // a plain file's size is checked against the bytes present
  std::error_code ec;
  const uint64_t stored = fs::file_size(in.path(), ec);
  MCOMPRESS_CHECK(ec || total <= stored * kMaxDataRatio + kDataSlack, FormatError, "load_idx: '",
                  in.path(), "' declares ", total, " bytes of ", kind, " in a gzip file of ",
                  stored, " bytes; more than ", kMaxDataRatio, "x compression is not plausible");
}

at::Tensor read_idx_images(const std::string& path) {
  detail::GzipReader in(path, "load_idx");
  uint64_t total = 0;
  const auto dims = read_idx_header(in, kIdxImagesMagic, "IDX images", &total);
  check_plausible_size(in, total, "IDX images");
  auto buffer = in.read_buffer(total, "image data");
  in.expect_end("the image data");
  const std::vector<int64_t> shape{static_cast<int64_t>(dims[0]), 1, static_cast<int64_t>(dims[1]),
                                   static_cast<int64_t>(dims[2])};
  // One conversion over the whole buffer; the division rounds exactly like v / 255.0f.
  return at::from_blob(buffer.data(), shape, at::kByte).to(at::kFloat).div_(255.0);
}

at::Tensor read_idx_labels(const std::string& path) {
  detail::GzipReader in(path, "load_idx");
  uint64_t total = 0;
  read_idx_header(in, kIdxLabelsMagic, "IDX labels", &total);
  check_plausible_size(in, total, "IDX labels");
  auto buffer = in.read_buffer(total, "label data");
  in.expect_end("the label data");
  return at::from_blob(buffer.data(), {static_cast<int64_t>(total)}, at::kByte).to(at::kLong);
}

/// `dir`/`stem`.gz when present, else `dir`/`stem`; IoError naming both when neither is.
std::string find_idx_file(const std::string& dir, const std::string& stem) {
  const fs::path base = fs::path(dir) / stem;
  std::string gz = base.string() + ".gz";
  std::error_code ec;
  if (fs::exists(gz, ec)) return gz;
  if (fs::exists(base, ec)) return base.string();
  throw IoError(concat("load_idx_dir: '", dir, "' has neither ", stem, ".gz nor ", stem));
}

// ---- HDF5 ---------------------------------------------------------------------------------

constexpr const char* kH5 = "load_h5_dataset";

/// The C++ API's message ("H5Fopen failed") plus the innermost entry of HDF5's error stack,
/// which says what actually went wrong ("truncated file: eof = ...").
std::string h5_message(const H5::Exception& e) {
  std::string innermost;
  H5::Exception::walkErrorStack(
      H5E_WALK_DOWNWARD,
      [](unsigned, const H5E_error2_t* entry, void* data) -> herr_t {
        if (entry->desc != nullptr && entry->desc[0] != '\0') {
          *static_cast<std::string*>(data) = entry->desc;
        }
        return 0;
      },
      &innermost);
  std::string message = e.getDetailMsg();
  if (!innermost.empty() && innermost != message) message += ": " + innermost;
  return message;
}

bool has_child(const H5::Group& group, const std::string& name, H5O_type_t type) {
  if (!group.nameExists(name)) return false;
  const std::string problem = hdf5_guard::link_problem(group.getId(), name.c_str());
  MCOMPRESS_CHECK(problem.empty(), FormatError, kH5, ": '", group.getFileName(), "' object '", name,
                  "' ", problem);
  return group.childObjType(name) == type;
}

/// Opens `group`/`name` as a simple data space and returns its dimensions, checking the rank.
H5::DataSet open_h5_dataset(const H5::Group& group, const std::string& path,
                            const std::string& full_name, const std::string& name,
                            std::vector<int64_t>* shape) {
  MCOMPRESS_CHECK(has_child(group, name, H5O_TYPE_DATASET), FormatError, kH5, ": '", path,
                  "' has no dataset '", full_name, "'");
  H5::DataSet ds = group.openDataSet(name);
  const std::string problem = hdf5_guard::contents_problem(ds.getId(), kMaxDataRatio);
  MCOMPRESS_CHECK(problem.empty(), FormatError, kH5, ": '", path, "' dataset '", full_name, "' ",
                  problem);
  const H5::DataSpace space = ds.getSpace();
  MCOMPRESS_CHECK(space.isSimple(), FormatError, kH5, ": '", path, "' dataset '", full_name,
                  "' is scalar or null; expected an array");
  const int rank = space.getSimpleExtentNdims();
  std::vector<hsize_t> dims(static_cast<size_t>(rank));
  space.getSimpleExtentDims(dims.data());
  shape->clear();
  uint64_t product = 1;
  for (hsize_t d : dims) {
    MCOMPRESS_CHECK(d == 0 || product <= (uint64_t{1} << 62) / d, FormatError, kH5, ": '", path,
                    "' dataset '", full_name, "' has an absurd size");
    product *= d;
    shape->push_back(static_cast<int64_t>(d));
  }
  return ds;
}

at::Tensor allocate(const std::vector<int64_t>& shape, at::ScalarType type, const std::string& path,
                    const std::string& full_name) {
  try {
    return at::empty(shape, type);
  } catch (const std::exception&) {
    // A corrupt header can declare more than memory holds; say which dataset did.
    throw FormatError(concat(kH5, ": '", path, "' dataset '", full_name, "' of shape ",
                             shape_string(shape), " cannot be allocated"));
  }
}

at::Tensor read_h5_x(const H5::Group& group, const std::string& path, const std::string& prefix) {
  const std::string name = prefix + "x";
  std::vector<int64_t> shape;
  H5::DataSet ds = open_h5_dataset(group, path, name, "x", &shape);
  MCOMPRESS_CHECK(shape.size() == 2 || shape.size() == 4, FormatError, kH5, ": '", path,
                  "' dataset '", name, "' has rank ", shape.size(),
                  ", expected 2 (N x D) or 4 (N x C x H x W)");
  const H5T_class_t type_class = ds.getTypeClass();
  if (type_class == H5T_FLOAT) {
    // HDF5 converts float64 (or any float) to float32 while reading.
    at::Tensor x = allocate(shape, at::kFloat, path, name);
    if (x.numel() > 0) ds.read(x.data_ptr(), H5::PredType::NATIVE_FLOAT);
    const at::Tensor bad = x.isfinite().logical_not_().flatten().nonzero();
    if (bad.numel() > 0) {
      const int64_t at = bad[0].item<int64_t>();
      const int64_t per_example = x.numel() / std::max<int64_t>(x.size(0), 1);
      throw DataError(concat(kH5, ": '", path, "' dataset '", name, "' has a non-finite value (",
                             x.flatten()[at].item<float>(), ") in example ", at / per_example));
    }
    return x;
  }
  if (type_class == H5T_INTEGER) {
    const H5::IntType type = ds.getIntType();
    MCOMPRESS_CHECK(type.getSize() == 1 && type.getSign() == H5T_SGN_NONE, FormatError, kH5, ": '",
                    path, "' dataset '", name, "' has a ", type.getSize(), "-byte ",
                    type.getSign() == H5T_SGN_NONE ? "unsigned" : "signed",
                    " integer type, expected float32, float64 or uint8");
    at::Tensor raw = allocate(shape, at::kByte, path, name);
    if (raw.numel() > 0) ds.read(raw.data_ptr(), H5::PredType::NATIVE_UINT8);
    return raw.to(at::kFloat).div_(255.0);
  }
  throw FormatError(concat(kH5, ": '", path, "' dataset '", name,
                           "' is neither float nor integer, expected float32, float64 or uint8"));
}

at::Tensor read_h5_y(const H5::Group& group, const std::string& path, const std::string& prefix) {
  const std::string name = prefix + "y";
  std::vector<int64_t> shape;
  H5::DataSet ds = open_h5_dataset(group, path, name, "y", &shape);
  MCOMPRESS_CHECK(shape.size() == 1, FormatError, kH5, ": '", path, "' dataset '", name,
                  "' has rank ", shape.size(), ", expected 1 (N labels)");
  MCOMPRESS_CHECK(ds.getTypeClass() == H5T_INTEGER, FormatError, kH5, ": '", path, "' dataset '",
                  name, "' is not of an integer type, expected integer labels");
  at::Tensor y = allocate(shape, at::kLong, path, name);
  if (y.numel() > 0) ds.read(y.data_ptr(), H5::PredType::NATIVE_INT64);
  return y;
}

/// Bounded integer in [0, range) from the full 64-bit output: rejecting the lowest
/// 2^64 mod range values leaves every residue equally likely (no modulo bias), and unlike
/// std::uniform_int_distribution the result is the same with every standard library.
uint64_t bounded(std::mt19937_64& rng, uint64_t range) {
  const uint64_t threshold = (0 - range) % range;
  for (;;) {
    const uint64_t r = rng();
    if (r >= threshold) return r % range;
  }
}

}  // namespace

// ---- Dataset ------------------------------------------------------------------------------

int64_t Dataset::size() const { return x.defined() ? x.size(0) : 0; }

Dataset Dataset::slice(int64_t begin, int64_t end) const {
  const int64_t n = size();
  MCOMPRESS_CHECK(0 <= begin && begin <= end && end <= n, DataError, "Dataset::slice: rows [",
                  begin, ", ", end, ") are outside data set '", source, "' with ", n, " rows");
  if (!x.defined() || !y.defined()) return *this;
  return Dataset{x.slice(0, begin, end), y.slice(0, begin, end), source};
}

Dataset Dataset::subset(const std::vector<int64_t>& indices) const {
  const int64_t n = size();
  for (int64_t i : indices) {
    MCOMPRESS_CHECK(0 <= i && i < n, DataError, "Dataset::subset: index ", i,
                    " is outside data set '", source, "' with ", n, " rows");
  }
  if (!x.defined() || !y.defined()) return *this;
  const at::Tensor index = at::tensor(at::ArrayRef<int64_t>(indices), at::kLong);
  return Dataset{x.index_select(0, index), y.index_select(0, index), source};
}

int64_t Dataset::num_classes() const {
  if (!y.defined() || y.numel() == 0) return 0;
  return y.max().item<int64_t>() + 1;
}

std::vector<int64_t> Dataset::example_shape() const {
  if (!x.defined() || x.dim() == 0) return {};
  const auto sizes = x.sizes();
  return std::vector<int64_t>(sizes.begin() + 1, sizes.end());
}

// ---- Loading ------------------------------------------------------------------------------

Dataset load_idx(const std::string& images_path, const std::string& labels_path) {
  at::Tensor x = read_idx_images(images_path);
  at::Tensor y = read_idx_labels(labels_path);
  MCOMPRESS_CHECK(x.size(0) == y.size(0), FormatError, "load_idx: '", images_path, "' has ",
                  x.size(0), " images but '", labels_path, "' has ", y.size(0), " labels");
  return Dataset{std::move(x), std::move(y), images_path};
}

Dataset load_idx_dir(const std::string& dir, Split split) {
  std::error_code ec;
  MCOMPRESS_CHECK(fs::is_directory(dir, ec), IoError, "load_idx_dir: '", dir,
                  "' is not a directory");
  const std::string prefix = split == Split::kTrain ? "train" : "t10k";
  const std::string images = find_idx_file(dir, prefix + "-images-idx3-ubyte");
  const std::string labels = find_idx_file(dir, prefix + "-labels-idx1-ubyte");
  Dataset data = load_idx(images, labels);
  data.source = concat(dir, " (", split_name(split), ")");
  return data;
}

Dataset load_h5_dataset(const std::string& path, Split split) {
  // H5::Exception does not derive from std::exception and prints its own stack by default;
  // every one is caught below and turned into an mcompress error instead.
  H5::Exception::dontPrint();
  std::error_code ec;
  const auto status = fs::status(path, ec);
  MCOMPRESS_CHECK(fs::exists(status), IoError, kH5, ": cannot open '", path, "': no such file");
  MCOMPRESS_CHECK(fs::is_regular_file(status), IoError, kH5, ": cannot open '", path,
                  "': not a regular file");
  bool is_hdf5 = false;
  try {
    is_hdf5 = H5::H5File::isHdf5(path);
  } catch (const H5::Exception& e) {
    throw IoError(concat(kH5, ": cannot read '", path, "': ", h5_message(e)));
  }
  MCOMPRESS_CHECK(is_hdf5, FormatError, kH5, ": '", path, "' is not an HDF5 file");

  try {
    // The file exists and its signature was read: failures from here on are its content's.
    H5::H5File file(path, H5F_ACC_RDONLY);
    const H5::Group root = file.openGroup("/");
    std::string group_name = "/";
    if (has_child(root, "train", H5O_TYPE_GROUP) && has_child(root, "test", H5O_TYPE_GROUP)) {
      group_name = split == Split::kTrain ? "/train" : "/test";
    }
    const H5::Group group = file.openGroup(group_name);
    const std::string prefix = group_name == "/" ? "/" : group_name + "/";
    at::Tensor x = read_h5_x(group, path, prefix);
    at::Tensor y = read_h5_y(group, path, prefix);
    MCOMPRESS_CHECK(x.size(0) == y.size(0), FormatError, kH5, ": '", path, "' has ", x.size(0),
                    " examples in '", prefix, "x' but ", y.size(0), " labels in '", prefix, "y'");
    return Dataset{std::move(x), std::move(y), concat(path, " (", split_name(split), ")")};
  } catch (const H5::Exception& e) {
    throw FormatError(
        concat(kH5, ": '", path, "' is not a readable HDF5 data set: ", h5_message(e)));
  }
}

Dataset load_dataset(const std::string& dir_or_h5, Split split) {
  std::error_code ec;
  const auto status = fs::status(dir_or_h5, ec);
  if (fs::is_directory(status)) return load_idx_dir(dir_or_h5, split);
  if (fs::is_regular_file(status)) return load_h5_dataset(dir_or_h5, split);
  MCOMPRESS_CHECK(!fs::exists(status), IoError, "load_dataset: '", dir_or_h5,
                  "' is neither a directory nor a regular file");
  throw IoError(concat("load_dataset: '", dir_or_h5,
                       "' does not exist (expected an IDX directory or an HDF5 file)"));
}

// ---- Checks and splits --------------------------------------------------------------------

void check_dataset(const Dataset& data, const std::vector<int64_t>& example_shape,
                   int64_t num_classes, const std::string& what) {
  MCOMPRESS_CHECK(num_classes > 0, ConfigError, what, ": num_classes must be > 0, got ",
                  num_classes);
  const int64_t n = data.size();
  MCOMPRESS_CHECK(n > 0, DataError, what, ": data set '", data.source, "' is empty");
  MCOMPRESS_CHECK(data.x.scalar_type() == at::kFloat, DataError, what, ": data set '", data.source,
                  "' has ", data.x.scalar_type(), " examples, expected float32");
  MCOMPRESS_CHECK(data.y.defined() && data.y.dim() == 1 && data.y.size(0) == n, DataError, what,
                  ": data set '", data.source, "' has ", n,
                  " examples but its labels are not a vector of ", n);
  MCOMPRESS_CHECK(data.y.scalar_type() == at::kLong, DataError, what, ": data set '", data.source,
                  "' has ", data.y.scalar_type(), " labels, expected int64");
  const auto shape = data.example_shape();
  MCOMPRESS_CHECK(shape == example_shape, DataError, what, ": data set '", data.source,
                  "' has examples of shape ", shape_string(shape), ", expected ",
                  shape_string(example_shape));
  const int64_t lowest = data.y.min().item<int64_t>();
  const int64_t highest = data.y.max().item<int64_t>();
  MCOMPRESS_CHECK(lowest >= 0 && highest < num_classes, DataError, what, ": data set '",
                  data.source, "' has label ", lowest < 0 ? lowest : highest, " outside [0, ",
                  num_classes, ")");
}

std::pair<Dataset, Dataset> split_train_val(const Dataset& data, double val_fraction,
                                            uint64_t seed) {
  // Written so that NaN fails too.
  MCOMPRESS_CHECK(val_fraction >= 0.0 && val_fraction < 1.0, ConfigError,
                  "split_train_val: val_fraction must be in [0, 1), got ", val_fraction);
  const int64_t n = data.size();
  const auto order = shuffled_indices(n, seed);
  const auto n_val = static_cast<int64_t>(std::llround(static_cast<double>(n) * val_fraction));
  std::vector<int64_t> val(order.begin(), order.begin() + n_val);
  std::vector<int64_t> train(order.begin() + n_val, order.end());
  // Ascending order within each part: batching and epoch shuffling decide the order later.
  std::sort(val.begin(), val.end());
  std::sort(train.begin(), train.end());
  return {data.subset(train), data.subset(val)};
}

std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed) {
  MCOMPRESS_CHECK(n >= 0, ConfigError, "shuffled_indices: n must be >= 0, got ", n);
  std::vector<int64_t> indices(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) indices[static_cast<size_t>(i)] = i;
  std::mt19937_64 rng(seed);
  for (int64_t i = n - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(bounded(rng, static_cast<uint64_t>(i) + 1));
    std::swap(indices[static_cast<size_t>(i)], indices[static_cast<size_t>(j)]);
  }
  return indices;
}

}  // namespace mcompress
