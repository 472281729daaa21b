// The HDF5 model file: round trips, atomic/deterministic writes, what docs/format.md promises
// (checked with the raw HDF5 C API, not ModelFile), and every error path with its message.

#include "mcompress/core/model_file.h"

#include <ATen/ATen.h>
#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/version.h"
#include "mcompress/core/zoo.h"
#include "test_support.h"

namespace mcompress {
namespace {

using testing::read_bytes;
using testing::TempDir;
using testing::write_bytes;

constexpr const char* kTinySpec = R"({"name":"tiny","input_shape":[1,4,4],"num_classes":3,
  "mean":[0.5],"std":[0.25],"layers":[
    {"type":"conv2d","out_channels":2,"kernel_size":3,"padding":1},
    {"type":"batchnorm2d"},{"type":"relu"},{"type":"flatten"},
    {"type":"linear","out_features":3}]})";

Model tiny_model(uint64_t seed = 7) {
  Model model = Model::initialize(ArchSpec::from_json_text(kTinySpec), seed);
  model.history = {R"({"stage":"train","metrics":{"accuracy":0.5}})",
                   R"({"stage":"prune.magnitude"})"};
  model.recipe = "model: tiny\nstages: []\n";
  // Values a lossy or sloppy writer would change: signed zero, a subnormal, exact zeros.
  float* w = model.tensor("4.weight").data_ptr<float>();  // [3, 32], contiguous
  w[0] = -0.0f;
  w[1] = std::numeric_limits<float>::denorm_min();
  w[32] = 0.0f;
  return model;
}

bool bit_identical(const at::Tensor& a, const at::Tensor& b) {
  return a.sizes() == b.sizes() && a.scalar_type() == b.scalar_type() &&
         std::memcmp(a.contiguous().data_ptr(), b.contiguous().data_ptr(), a.nbytes()) == 0;
}

// Silences HDF5's stderr dump for calls the test expects to fail.
struct QuietH5 {
  QuietH5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};

// Opens a saved file read-write with the raw C API, lets `edit` change it, and closes it.
void edit_file(const std::string& path, const std::function<void(hid_t)>& edit) {
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  edit(file);
  ASSERT_GE(H5Fclose(file), 0);
}

void replace_string_attr(hid_t loc, const char* name, const std::string& value) {
  if (H5Aexists(loc, name) > 0) {
    ASSERT_GE(H5Adelete(loc, name), 0);
  }
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);
  hid_t space = H5Screate(H5S_SCALAR);
  hid_t attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(attr, 0);
  const char* data = value.c_str();
  ASSERT_GE(H5Awrite(attr, type, &data), 0);
  H5Aclose(attr);
  H5Sclose(space);
  H5Tclose(type);
}

std::string read_string_attr(hid_t loc, const char* name) {
  hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
  EXPECT_GE(attr, 0) << name;
  hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, H5T_VARIABLE);
  H5Tset_cset(type, H5T_CSET_UTF8);  // as docs/format.md documents the strings
  char* buffer = nullptr;
  EXPECT_GE(H5Aread(attr, type, &buffer), 0) << name;
  std::string value = buffer != nullptr ? buffer : "";
  H5free_memory(buffer);
  H5Tclose(type);
  H5Aclose(attr);
  return value;
}

class ModelFileTest : public ::testing::Test {
 protected:
  TempDir dir;
};

TEST_F(ModelFileTest, RoundTripIsBitIdentical) {
  Model model = tiny_model();
  const std::string path = dir.file("tiny.h5");
  save_model(model, path);
  Model loaded = load_model(path);

  EXPECT_EQ(loaded.spec().to_json_text(), model.spec().to_json_text());
  ASSERT_EQ(loaded.tensor_infos().size(), model.tensor_infos().size());
  for (const TensorInfo& info : model.tensor_infos()) {
    EXPECT_TRUE(bit_identical(loaded.tensor(info.name), model.tensor(info.name))) << info.name;
  }
  EXPECT_TRUE(std::signbit(loaded.tensor("4.weight")[0][0].item<float>()));
  EXPECT_EQ(loaded.history, model.history);
  EXPECT_EQ(loaded.recipe, model.recipe);
  EXPECT_EQ(loaded.seed, model.seed);
}

TEST_F(ModelFileTest, RoundTripsZooModelWithResidualBlocks) {
  for (const ZooEntry& entry : zoo_entries()) {
    Model model = Model::initialize(zoo_spec(entry.name), 3);
    model.seed = std::numeric_limits<uint64_t>::max();  // the full uint64 range survives
    const std::string path = dir.file(entry.name + ".h5");
    save_model(model, path);
    Model loaded = load_model(path);
    EXPECT_EQ(loaded.seed, model.seed);
    for (const TensorInfo& info : model.tensor_infos()) {
      EXPECT_TRUE(bit_identical(loaded.tensor(info.name), model.tensor(info.name)))
          << entry.name << " " << info.name;
    }
  }
}

TEST_F(ModelFileTest, EmptyHistoryAndRecipeRoundTrip) {
  Model model = Model::initialize(ArchSpec::from_json_text(kTinySpec), 1);
  save_model(model, dir.file("m.h5"));
  Model loaded = load_model(dir.file("m.h5"));
  EXPECT_TRUE(loaded.history.empty());
  EXPECT_EQ(loaded.recipe, "");
}

TEST_F(ModelFileTest, SameModelGivesSameBytes) {
  Model model = tiny_model();
  save_model(model, dir.file("a.h5"));
  save_model(model, dir.file("b.h5"));
  const std::string a = read_bytes(dir.file("a.h5"));
  EXPECT_FALSE(a.empty());
  EXPECT_TRUE(a == read_bytes(dir.file("b.h5")));

  // Two saves within one second would match even with timestamps; check none are stored.
  hid_t file = H5Fopen(dir.file("a.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  for (const char* object :
       {"/", "/tensors", "/tensors/0.weight", "/tensors/0.weight/values", "/history"}) {
    H5O_info_t info;
    ASSERT_GE(H5Oget_info_by_name(file, object, &info, H5P_DEFAULT), 0) << object;
    EXPECT_EQ(info.ctime, 0) << object;
    EXPECT_EQ(info.mtime, 0) << object;
    EXPECT_EQ(info.atime, 0) << object;
    EXPECT_EQ(info.btime, 0) << object;
  }
  H5Fclose(file);
}

TEST_F(ModelFileTest, LeavesNoTemporaryFiles) {
  save_model(tiny_model(), dir.file("m.h5"));
  save_model(tiny_model(), dir.file("m.h5"), SaveOptions{true});
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"m.h5"});
}

TEST_F(ModelFileTest, OverwriteReplacesFileWhenAsked) {
  const std::string path = dir.file("m.h5");
  save_model(tiny_model(1), path);
  Model second = tiny_model(2);
  save_model(second, path, SaveOptions{true});
  EXPECT_TRUE(bit_identical(load_model(path).tensor("0.weight"), second.tensor("0.weight")));
}

TEST_F(ModelFileTest, LoadingNeverModifiesTheFile) {
  const std::string path = dir.file("m.h5");
  save_model(tiny_model(), path);
  const std::string before = read_bytes(path);
  const auto mtime = std::filesystem::last_write_time(path);
  load_model(path);
  inspect_model_file(path);
  EXPECT_TRUE(read_bytes(path) == before);
  EXPECT_EQ(std::filesystem::last_write_time(path), mtime);
}

TEST_F(ModelFileTest, LoadsFromReadOnlyFile) {
  const std::string path = dir.file("m.h5");
  save_model(tiny_model(), path);
  std::filesystem::permissions(path, std::filesystem::perms::owner_read);
  EXPECT_NO_THROW(load_model(path));
}

TEST_F(ModelFileTest, InspectReportsStorageFacts) {
  Model model = tiny_model();
  const std::string path = dir.file("m.h5");
  save_model(model, path);
  ModelFileSummary summary = inspect_model_file(path);

  EXPECT_EQ(summary.path, path);
  EXPECT_EQ(summary.format_version, 1);
  EXPECT_EQ(summary.producer, "mcompress " + version());
  EXPECT_EQ(summary.arch_json, model.spec().to_json_text());
  EXPECT_EQ(summary.file_bytes, static_cast<int64_t>(std::filesystem::file_size(path)));
  EXPECT_EQ(summary.history, model.history);
  ASSERT_EQ(summary.tensors.size(), model.tensor_infos().size());
  for (size_t i = 0; i < summary.tensors.size(); ++i) {
    const StoredTensorInfo& t = summary.tensors[i];
    const at::Tensor& ref = model.tensor(model.tensor_infos()[i].name);
    EXPECT_EQ(t.name, model.tensor_infos()[i].name);  // spec order
    EXPECT_EQ(t.shape, ref.sizes().vec()) << t.name;
    EXPECT_EQ(t.encoding, "fp32");
    EXPECT_EQ(t.layout, "dense");
    EXPECT_EQ(t.parameters, ref.numel()) << t.name;
    EXPECT_EQ(t.nonzeros, ref.ne(0).sum().item<int64_t>()) << t.name;
    EXPECT_GT(t.bytes_on_disk, 0) << t.name;
  }
  // running_mean starts at zeros: no non-zeros, and it compresses below its raw 8 bytes + checksum.
  EXPECT_EQ(summary.tensors[4].name, "1.running_mean");
  EXPECT_EQ(summary.tensors[4].nonzeros, 0);
}

TEST_F(ModelFileTest, LargeTensorsSpanSeveralChunks) {
  // 300x1024 floats exceed the 1 MiB chunk target, so the writer must split along rows.
  Model model = Model::initialize(ArchSpec::from_json_text(R"({"input_shape":[1024],"num_classes":3,
    "layers":[{"type":"linear","out_features":300},{"type":"relu"},{"type":"linear","out_features":3}]})"),
                                  5);
  const std::string path = dir.file("big.h5");
  save_model(model, path);
  EXPECT_TRUE(bit_identical(load_model(path).tensor("0.weight"), model.tensor("0.weight")));

  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  hid_t dset = H5Dopen2(file, "/tensors/0.weight/values", H5P_DEFAULT);
  hid_t space = H5Dget_space(dset);
  hsize_t chunks = 0;
  ASSERT_GE(H5Dget_num_chunks(dset, space, &chunks), 0);
  EXPECT_GT(chunks, 1u);
  H5Sclose(space);
  H5Dclose(dset);
  H5Fclose(file);
}

// Reads a saved file the way another tool would, from docs/format.md alone.
TEST_F(ModelFileTest, RawHdf5ReaderSeesDocumentedLayout) {
  Model model = tiny_model();
  const std::string path = dir.file("m.h5");
  save_model(model, path);

  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  EXPECT_EQ(read_string_attr(file, "format"), "mcompress-model");
  EXPECT_EQ(read_string_attr(file, "producer"), "mcompress " + version());
  EXPECT_EQ(read_string_attr(file, "arch"), model.spec().to_json_text());
  int32_t format_version = 0;
  hid_t attr = H5Aopen(file, "format_version", H5P_DEFAULT);
  ASSERT_GE(H5Aread(attr, H5T_NATIVE_INT32, &format_version), 0);
  hid_t attr_type = H5Aget_type(attr);
  EXPECT_TRUE(H5Tequal(attr_type, H5T_STD_I32LE) > 0);
  H5Tclose(attr_type);
  H5Aclose(attr);
  EXPECT_EQ(format_version, 1);
  uint64_t seed = 0;
  attr = H5Aopen(file, "seed", H5P_DEFAULT);
  ASSERT_GE(H5Aread(attr, H5T_NATIVE_UINT64, &seed), 0);
  H5Aclose(attr);
  EXPECT_EQ(seed, model.seed);

  hid_t history = H5Gopen2(file, "/history", H5P_DEFAULT);
  EXPECT_EQ(read_string_attr(history, "000"), model.history[0]);
  EXPECT_EQ(read_string_attr(history, "001"), model.history[1]);
  H5Gclose(history);
  hid_t recipe = H5Gopen2(file, "/recipe", H5P_DEFAULT);
  EXPECT_EQ(read_string_attr(recipe, "text"), model.recipe);
  H5Gclose(recipe);

  hid_t group = H5Gopen2(file, "/tensors/0.weight", H5P_DEFAULT);
  ASSERT_GE(group, 0);
  EXPECT_EQ(read_string_attr(group, "encoding"), "fp32");
  EXPECT_EQ(read_string_attr(group, "layout"), "dense");
  int64_t shape[4] = {};
  attr = H5Aopen(group, "shape", H5P_DEFAULT);
  ASSERT_GE(H5Aread(attr, H5T_NATIVE_INT64, shape), 0);
  H5Aclose(attr);
  EXPECT_EQ(std::vector<int64_t>(shape, shape + 4), (std::vector<int64_t>{2, 1, 3, 3}));

  hid_t dset = H5Dopen2(group, "values", H5P_DEFAULT);
  hid_t type = H5Dget_type(dset);
  EXPECT_TRUE(H5Tequal(type, H5T_IEEE_F32LE) > 0);
  H5Tclose(type);
  std::vector<float> values(18);
  ASSERT_GE(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
  EXPECT_EQ(
      std::memcmp(values.data(), model.tensor("0.weight").data_ptr<float>(), 18 * sizeof(float)),
      0);

  hid_t dcpl = H5Dget_create_plist(dset);
  EXPECT_EQ(H5Pget_layout(dcpl), H5D_CHUNKED);
  std::vector<H5Z_filter_t> filters;
  for (int i = 0; i < H5Pget_nfilters(dcpl); ++i) {
    unsigned flags = 0;
    size_t nelmts = 0;
    unsigned cd_values[8];
    unsigned config = 0;
    filters.push_back(H5Pget_filter2(dcpl, static_cast<unsigned>(i), &flags, &nelmts, cd_values, 0,
                                     nullptr, &config));
  }
  EXPECT_EQ(filters, (std::vector<H5Z_filter_t>{H5Z_FILTER_SHUFFLE, H5Z_FILTER_DEFLATE,
                                                H5Z_FILTER_FLETCHER32}));
  H5Pclose(dcpl);
  H5Dclose(dset);
  H5Gclose(group);
  EXPECT_EQ(H5Fclose(file), 0);
}

TEST_F(ModelFileTest, IgnoresUnknownAttributes) {
  const std::string path = dir.file("m.h5");
  save_model(tiny_model(), path);
  edit_file(path, [](hid_t file) {
    replace_string_attr(file, "x.acme.note", "added by another tool");
    hid_t group = H5Gopen2(file, "/tensors/0.bias", H5P_DEFAULT);
    replace_string_attr(group, "x.acme.origin", "imported");
    H5Gclose(group);
  });
  EXPECT_NO_THROW(load_model(path));
}

TEST_F(ModelFileTest, AcceptsFixedLengthStrings) {
  // Other writers (h5py with np.bytes_, MATLAB) store fixed-length strings.
  const std::string path = dir.file("m.h5");
  save_model(tiny_model(), path);
  edit_file(path, [](hid_t file) {
    ASSERT_GE(H5Adelete(file, "format"), 0);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, 20);
    H5Tset_strpad(type, H5T_STR_SPACEPAD);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(file, "format", type, space, H5P_DEFAULT, H5P_DEFAULT);
    char value[20];
    std::memset(value, ' ', sizeof(value));
    std::memcpy(value, "mcompress-model", 15);
    ASSERT_GE(H5Awrite(attr, type, value), 0);
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
  });
  EXPECT_NO_THROW(load_model(path));
}

class ModelFileErrorTest : public ::testing::Test {
 protected:
  ModelFileErrorTest() { path = dir.file("m.h5"); }
  void save_tiny() { save_model(tiny_model(), path); }
  TempDir dir;
  std::string path;
  QuietH5 quiet;
};

TEST_F(ModelFileErrorTest, MissingFile) {
  ASSERT_THROWS_WITH(load_model(dir.file("nope.h5")), IoError, "nope.h5: no such file");
  ASSERT_THROWS_WITH(inspect_model_file(dir.file("nope.h5")), IoError, "no such file");
}

TEST_F(ModelFileErrorTest, RefusesToOverwriteWithoutOption) {
  save_tiny();
  const std::string before = read_bytes(path);
  ASSERT_THROWS_WITH(save_model(tiny_model(9), path), IoError, "exists; pass --force to overwrite");
  EXPECT_TRUE(read_bytes(path) == before);
}

TEST_F(ModelFileErrorTest, MissingFolder) {
  ASSERT_THROWS_WITH(save_model(tiny_model(), dir.file("no/such/m.h5")), IoError, "does not exist");
}

TEST_F(ModelFileErrorTest, FolderThatIsAFile) {
  write_bytes(dir.file("plain"), "x");
  ASSERT_THROWS_WITH(save_model(tiny_model(), dir.file("plain") + "/m.h5"), IoError,
                     "is not a folder");
}

TEST_F(ModelFileErrorTest, UnwritableFolder) {
  // Root ignores permission bits, so the check uses a folder nobody can write to: /proc.
  ASSERT_THROWS_WITH(save_model(tiny_model(), "/proc/mcompress-test.h5"), IoError,
                     "/proc/mcompress-test.h5");
  if (::geteuid() != 0) {
    std::filesystem::create_directory(dir.file("ro"));
    std::filesystem::permissions(
        dir.file("ro"), std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    ASSERT_THROWS_WITH(save_model(tiny_model(), dir.file("ro/m.h5")), IoError,
                       "is the folder writable?");
  }
}

TEST_F(ModelFileErrorTest, RefusesNonFiniteOnSave) {
  Model model = tiny_model();
  model.tensor("0.bias").data_ptr<float>()[1] = std::numeric_limits<float>::infinity();
  ASSERT_THROWS_WITH(save_model(model, path), ModelError, "tensor '0.bias' has a non-finite value");
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));  // the temporary file is gone too
}

TEST_F(ModelFileErrorTest, TextFile) {
  write_bytes(path, "model: tiny\nthis is not HDF5\n");
  ASSERT_THROWS_WITH(load_model(path), FormatError, "not an HDF5 file");
  write_bytes(path, "");
  ASSERT_THROWS_WITH(load_model(path), FormatError, "not an HDF5 file");
}

TEST_F(ModelFileErrorTest, Hdf5FileOfAnotherKind) {
  hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  H5Fclose(file);
  ASSERT_THROWS_WITH(load_model(path), FormatError, "is not an mcompress model file");
  ASSERT_THROWS_WITH(inspect_model_file(path), FormatError, "is not an mcompress model file");
}

TEST_F(ModelFileErrorTest, WrongFormatName) {
  save_tiny();
  edit_file(path, [](hid_t file) { replace_string_attr(file, "format", "other-model"); });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "'format' is 'other-model', expected 'mcompress-model'");
}

TEST_F(ModelFileErrorTest, TruncatedFile) {
  save_tiny();
  const std::string bytes = read_bytes(path);
  write_bytes(path, bytes.substr(0, bytes.size() / 2));
  ASSERT_THROWS_WITH(load_model(path), FormatError, "truncated");
}

TEST_F(ModelFileErrorTest, FlippedBitInChunkFailsChecksum) {
  save_tiny();
  haddr_t address = 0;
  hsize_t size = 0;
  {
    hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t dset = H5Dopen2(file, "/tensors/4.weight/values", H5P_DEFAULT);
    hid_t space = H5Dget_space(dset);  // H5S_ALL is mishandled by H5Dget_chunk_info in 1.10
    ASSERT_GE(H5Dget_chunk_info(dset, space, 0, nullptr, nullptr, &address, &size), 0);
    H5Sclose(space);
    H5Dclose(dset);
    H5Fclose(file);
  }
  ASSERT_GT(size, 8u);
  std::string bytes = read_bytes(path);
  ASSERT_LE(address + size, bytes.size());
  bytes[address + size / 2] ^= 0x10;
  write_bytes(path, bytes);
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '4.weight': cannot read its values; the data is corrupt");
  ASSERT_THROWS_WITH(load_model(path), FormatError, "checksum");
}

TEST_F(ModelFileErrorTest, NewerFormatVersion) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    hid_t attr = H5Aopen(file, "format_version", H5P_DEFAULT);
    int32_t v2 = 2;
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT32, &v2), 0);
    H5Aclose(attr);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     path +
                         ": this mcompress supports model format v1 or below, but the file has v2; "
                         "it was written by a newer mcompress");
  ASSERT_THROWS_WITH(inspect_model_file(path), FormatError, "supports model format v1 or below");
}

TEST_F(ModelFileErrorTest, MissingTensor) {
  save_tiny();
  edit_file(path,
            [](hid_t file) { ASSERT_GE(H5Ldelete(file, "/tensors/4.weight", H5P_DEFAULT), 0); });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "missing tensor '4.weight'");
}

TEST_F(ModelFileErrorTest, ExtraTensor) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    ASSERT_GE(H5Lcopy(file, "/tensors/0.bias", file, "/tensors/9.bias", H5P_DEFAULT, H5P_DEFAULT),
              0);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '9.bias' is stored in the file but is not a tensor");
}

TEST_F(ModelFileErrorTest, WrongShapeAttribute) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    // Through the open group: HDF5 1.10 cannot write an attribute opened with H5Aopen_by_name.
    hid_t group = H5Gopen2(file, "/tensors/4.weight", H5P_DEFAULT);
    hid_t attr = H5Aopen(group, "shape", H5P_DEFAULT);
    int64_t shape[2] = {32, 3};
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT64, shape), 0);
    H5Aclose(attr);
    H5Gclose(group);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "tensor '4.weight' has shape [32, 3]");
  ASSERT_THROWS_WITH(load_model(path), FormatError, "expected [3, 32]");
}

TEST_F(ModelFileErrorTest, WrongDatasetShape) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    ASSERT_GE(H5Ldelete(file, "/tensors/0.bias/values", H5P_DEFAULT), 0);
    hsize_t dims[1] = {5};
    hid_t space = H5Screate_simple(1, dims, nullptr);
    hid_t dset = H5Dcreate2(file, "/tensors/0.bias/values", H5T_IEEE_F32LE, space, H5P_DEFAULT,
                            H5P_DEFAULT, H5P_DEFAULT);
    float values[5] = {1, 2, 3, 4, 5};
    ASSERT_GE(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values), 0);
    H5Dclose(dset);
    H5Sclose(space);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.bias' has a values dataset of shape [5], expected [2]");
}

TEST_F(ModelFileErrorTest, UnknownEncoding) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, "/tensors/0.weight", H5P_DEFAULT);
    replace_string_attr(group, "encoding", "int3");
    H5Gclose(group);
  });
  ASSERT_THROWS_WITH(
      load_model(path), FormatError,
      "tensor '0.weight' has unknown encoding 'int3'; accepted: fp32, fp16, bf16, int8");
  ASSERT_THROWS_WITH(inspect_model_file(path), FormatError, "unknown encoding 'int3'");
}

TEST_F(ModelFileErrorTest, UnknownLayout) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, "/tensors/0.weight", H5P_DEFAULT);
    replace_string_attr(group, "layout", "coo");
    H5Gclose(group);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "unknown layout 'coo'; accepted: dense, sparse");
}

TEST_F(ModelFileErrorTest, ReservedEncodingNotReadableYet) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, "/tensors/0.weight", H5P_DEFAULT);
    replace_string_attr(group, "encoding", "fp16");
    H5Gclose(group);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "stored as fp16/dense, which this mcompress");
}

TEST_F(ModelFileErrorTest, NanWeight) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    hid_t dset = H5Dopen2(file, "/tensors/4.weight/values", H5P_DEFAULT);
    std::vector<float> values(3 * 32, 0.1f);
    values[40] = std::numeric_limits<float>::quiet_NaN();
    ASSERT_GE(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
    H5Dclose(dset);
  });
  ASSERT_THROWS_WITH(load_model(path), ModelError,
                     "tensor '4.weight' has a non-finite value (nan) at flat index 40");
}

TEST_F(ModelFileErrorTest, BadArchJson) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    replace_string_attr(file, "arch",
                        R"({"input_shape":[4],"num_classes":3,"layers":[{"type":"lstm"}]})");
  });
  ASSERT_THROWS_WITH(load_model(path), ModelError,
                     path + ": invalid architecture in attribute 'arch'");
  ASSERT_THROWS_WITH(load_model(path), ModelError, "lstm");
}

TEST_F(ModelFileErrorTest, MissingArch) {
  save_tiny();
  edit_file(path, [](hid_t file) { ASSERT_GE(H5Adelete(file, "arch"), 0); });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "attribute 'arch' of / is missing");
}

}  // namespace
}  // namespace mcompress
