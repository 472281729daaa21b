// The HDF5 model file: round trips, atomic/deterministic writes, what docs/format.md promises
// (checked with the raw HDF5 C API, not ModelFile), and every error path with its message.

#include "mcompress/core/model_file.h"

#include <ATen/ATen.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/version.h"
#include "mcompress/core/zoo.h"
#include "model_fixtures.h"
#include "raw_hdf5.h"
#include "test_support.h"

namespace mcompress {
namespace {

// This suite pins down the groups container (format v2) dataset by dataset, so it saves with
// it; packed_model_file_test.cpp covers the packed container (v3, the default) and both
// containers' shared decoding runs in each.
void save_groups(const Model& model, const std::string& path, SaveOptions options = {}) {
  options.container = ModelContainer::kGroups;
  save_model(model, path, options);
}

using testing::edit_file;
using testing::filters_of;
using testing::flip_bit_in_first_chunk;
using testing::read_bytes;
using testing::read_dataset;
using testing::replace_dataset;
using testing::TempDir;
using testing::write_bytes;

// Silences HDF5's stderr dump for calls the test expects to fail.
struct QuietH5 {
  QuietH5() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
};

// Opens a saved file read-write with the raw C API, lets `edit` change it, and closes it.
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
  // As docs/format.md §2 documents the strings: fixed-length, null-terminated, UTF-8.
  hid_t type = H5Aget_type(attr);
  EXPECT_EQ(H5Tget_class(type), H5T_STRING) << name;
  EXPECT_EQ(H5Tis_variable_str(type), 0) << name;
  EXPECT_EQ(H5Tget_strpad(type), H5T_STR_NULLTERM) << name;
  EXPECT_EQ(H5Tget_cset(type), H5T_CSET_UTF8) << name;
  std::string buffer(H5Tget_size(type), '\0');
  EXPECT_GE(H5Aread(attr, type, buffer.data()), 0) << name;
  EXPECT_EQ(buffer.back(), '\0') << name;
  H5Tclose(type);
  H5Aclose(attr);
  return buffer.substr(0, buffer.size() - 1);
}

// --- Quantized models -----------------------------------------------------------------------

const StoredTensorInfo& stored(const ModelFileSummary& summary, const std::string& name) {
  for (const StoredTensorInfo& t : summary.tensors) {
    if (t.name == name) return t;
  }
  throw std::runtime_error("no tensor " + name);
}

// The type of an HDF5 dataset, checked to be a float with the given bit fields.
void expect_float_fields(hid_t dset, size_t size, std::vector<size_t> fields, size_t ebias) {
  hid_t type = H5Dget_type(dset);
  EXPECT_EQ(H5Tget_class(type), H5T_FLOAT);
  EXPECT_EQ(H5Tget_size(type), size);
  EXPECT_EQ(H5Tget_precision(type), size * 8);
  EXPECT_EQ(H5Tget_order(type), H5T_ORDER_LE);
  std::vector<size_t> got(5);
  EXPECT_GE(H5Tget_fields(type, &got[0], &got[1], &got[2], &got[3], &got[4]), 0);
  EXPECT_EQ(got, fields);
  EXPECT_EQ(H5Tget_ebias(type), ebias);
  H5Tclose(type);
}

const std::vector<H5Z_filter_t> kFilters = {H5Z_FILTER_SHUFFLE, H5Z_FILTER_DEFLATE,
                                            H5Z_FILTER_FLETCHER32};

class ModelFileTest : public ::testing::Test {
 protected:
  TempDir dir;
};

TEST_F(ModelFileTest, RoundTripIsBitIdentical) {
  Model model = tiny_model();
  const std::string path = dir.file("tiny.h5");
  save_groups(model, path);
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
  EXPECT_TRUE(loaded.quant.empty());
}

TEST_F(ModelFileTest, RoundTripsZooModelWithResidualBlocks) {
  for (const ZooEntry& entry : zoo_entries()) {
    Model model = Model::initialize(zoo_spec(entry.name), 3);
    model.seed = std::numeric_limits<uint64_t>::max();  // the full uint64 range survives
    const std::string path = dir.file(entry.name + ".h5");
    save_groups(model, path);
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
  save_groups(model, dir.file("m.h5"));
  Model loaded = load_model(dir.file("m.h5"));
  EXPECT_TRUE(loaded.history.empty());
  EXPECT_EQ(loaded.recipe, "");
}

TEST_F(ModelFileTest, SameModelGivesSameBytes) {
  Model model = tiny_model();
  save_groups(model, dir.file("a.h5"));
  save_groups(model, dir.file("b.h5"));
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
  save_groups(tiny_model(), dir.file("m.h5"));
  save_groups(tiny_model(), dir.file("m.h5"), SaveOptions{true});
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"m.h5"});
}

TEST_F(ModelFileTest, OverwriteReplacesFileWhenAsked) {
  const std::string path = dir.file("m.h5");
  save_groups(tiny_model(1), path);
  Model second = tiny_model(2);
  save_groups(second, path, SaveOptions{true});
  EXPECT_TRUE(bit_identical(load_model(path).tensor("0.weight"), second.tensor("0.weight")));
}

TEST_F(ModelFileTest, LoadingNeverModifiesTheFile) {
  const std::string path = dir.file("m.h5");
  save_groups(tiny_model(), path);
  const std::string before = read_bytes(path);
  const auto mtime = std::filesystem::last_write_time(path);
  load_model(path);
  inspect_model_file(path);
  EXPECT_TRUE(read_bytes(path) == before);
  EXPECT_EQ(std::filesystem::last_write_time(path), mtime);
}

TEST_F(ModelFileTest, LoadsFromReadOnlyFile) {
  const std::string path = dir.file("m.h5");
  save_groups(tiny_model(), path);
  std::filesystem::permissions(path, std::filesystem::perms::owner_read);
  EXPECT_NO_THROW(load_model(path));
}

TEST_F(ModelFileTest, InspectReportsStorageFacts) {
  Model model = tiny_model();
  const std::string path = dir.file("m.h5");
  save_groups(model, path);
  ModelFileSummary summary = inspect_model_file(path);

  EXPECT_EQ(summary.path, path);
  EXPECT_EQ(summary.format_version, 2);
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
    // All-zero running means take fewer bytes as CSR (no entries) than dense.
    EXPECT_EQ(t.layout, ref.ne(0).any().item<bool>() ? "dense" : "sparse") << t.name;
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
  save_groups(model, path);
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
  save_groups(model, path);

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
  EXPECT_EQ(format_version, 2);
  uint64_t seed = 0;
  attr = H5Aopen(file, "seed", H5P_DEFAULT);
  ASSERT_GE(H5Aread(attr, H5T_NATIVE_UINT64, &seed), 0);
  H5Aclose(attr);
  EXPECT_EQ(seed, model.seed);

  // The history: one deflated byte dataset, the entries as JSON Lines (§6).
  hid_t history = H5Dopen2(file, "/history/entries", H5P_DEFAULT);
  ASSERT_GE(history, 0);
  hid_t history_type = H5Dget_type(history);
  EXPECT_TRUE(H5Tequal(history_type, H5T_STD_U8LE) > 0);
  H5Tclose(history_type);
  EXPECT_EQ(filters_of(history), kFilters);
  hid_t history_space = H5Dget_space(history);
  std::string lines(static_cast<size_t>(H5Sget_simple_extent_npoints(history_space)), '\0');
  H5Sclose(history_space);
  ASSERT_GE(H5Dread(history, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, lines.data()), 0);
  H5Dclose(history);
  EXPECT_EQ(lines, model.history[0] + "\n" + model.history[1] + "\n");
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

TEST_F(ModelFileTest, RoundTripsQuantizedTensorsBitIdentical) {
  Model model = quantized_model();
  const std::string path = dir.file("q.h5");
  save_groups(model, path);
  Model loaded = load_model(path);

  EXPECT_EQ(loaded.quant.mode, "int8-static");
  ASSERT_EQ(loaded.quant.tensors.size(), model.quant.tensors.size());
  for (const auto& [name, want] : model.quant.tensors) {
    SCOPED_TRACE(name);
    ASSERT_EQ(loaded.quant.tensors.count(name), 1u);
    const QuantizedTensor& got = loaded.quant.tensors.at(name);
    EXPECT_EQ(got.encoding, want.encoding);
    EXPECT_TRUE(bit_identical(got.values, want.values));
    if (want.encoding == Encoding::kInt8) {
      EXPECT_TRUE(bit_identical(got.scale, want.scale));
      EXPECT_TRUE(bit_identical(got.zero_point, want.zero_point));
      EXPECT_EQ(got.axis, want.axis);
    } else {
      EXPECT_FALSE(got.scale.defined());
      EXPECT_FALSE(got.zero_point.defined());
    }
    // The fp32 master is the dequantized stored tensor.
    EXPECT_TRUE(bit_identical(loaded.tensor(name), got.dequantize()));
    EXPECT_TRUE(bit_identical(loaded.tensor(name), model.tensor(name)));
  }
  EXPECT_TRUE(std::signbit(loaded.tensor("4.weight")[0][0].item<float>()));
  for (const char* name : {"0.bias", "4.bias"}) {  // not quantized: fp32 as before
    EXPECT_EQ(loaded.quant.tensors.count(name), 0u) << name;
    EXPECT_TRUE(bit_identical(loaded.tensor(name), model.tensor(name))) << name;
  }
  ASSERT_EQ(loaded.quant.activations.size(), 3u);
  for (const auto& [key, want] : model.quant.activations) {
    ASSERT_EQ(loaded.quant.activations.count(key), 1u) << key;
    const ActivationQParams& got = loaded.quant.activations.at(key);
    EXPECT_EQ(got.scale, want.scale) << key;  // float64: exact
    EXPECT_EQ(got.zero_point, want.zero_point) << key;
    EXPECT_EQ(got.observer, want.observer) << key;
  }
  // A second save of the loaded model gives the same file.
  save_groups(loaded, dir.file("again.h5"));
  EXPECT_TRUE(read_bytes(path) == read_bytes(dir.file("again.h5")));
}

TEST_F(ModelFileTest, SameQuantizedModelGivesSameBytes) {
  Model model = quantized_model();
  save_groups(model, dir.file("a.h5"));
  save_groups(model.clone(), dir.file("b.h5"));
  const std::string a = read_bytes(dir.file("a.h5"));
  EXPECT_FALSE(a.empty());
  EXPECT_TRUE(a == read_bytes(dir.file("b.h5")));
}

TEST_F(ModelFileTest, InspectShowsSmallerQuantizedTensors) {
  Model fp32 = mlp_model();
  Model int8 = mlp_model();
  int8.quant.mode = "int8-dynamic";
  int8.quant.tensors["0.weight"] = int8_per_channel(int8.tensor("0.weight"));
  Model fp16 = mlp_model();
  fp16.quant.mode = "fp16";
  fp16.quant.tensors["0.weight"] = half_precision(fp16.tensor("0.weight"), Encoding::kFp16);
  save_groups(fp32, dir.file("fp32.h5"));
  save_groups(int8, dir.file("int8.h5"));
  save_groups(fp16, dir.file("fp16.h5"));

  const StoredTensorInfo f = stored(inspect_model_file(dir.file("fp32.h5")), "0.weight");
  const StoredTensorInfo i = stored(inspect_model_file(dir.file("int8.h5")), "0.weight");
  const StoredTensorInfo h = stored(inspect_model_file(dir.file("fp16.h5")), "0.weight");
  EXPECT_EQ(f.encoding, "fp32");
  EXPECT_EQ(i.encoding, "int8");
  EXPECT_EQ(h.encoding, "fp16");
  for (const StoredTensorInfo* t : {&f, &i, &h}) {
    EXPECT_EQ(t->layout, "dense");
    EXPECT_EQ(t->shape, (std::vector<int64_t>{300, 784}));
    EXPECT_EQ(t->parameters, 300 * 784);
  }
  // Random normal fp32 barely compresses, so the encodings' sizes show through.
  EXPECT_GT(f.bytes_on_disk, 300 * 784 * 4 * 8 / 10);
  EXPECT_LT(i.bytes_on_disk * 3, f.bytes_on_disk) << i.bytes_on_disk << " vs " << f.bytes_on_disk;
  EXPECT_LT(static_cast<double>(h.bytes_on_disk) * 1.7, static_cast<double>(f.bytes_on_disk))
      << h.bytes_on_disk << " vs " << f.bytes_on_disk;
  // The int8 group's bytes include its scale and zero_point datasets.
  EXPECT_GT(i.bytes_on_disk, 300 * (4 + 4) / 4);

  EXPECT_EQ(f.nonzeros, fp32.tensor("0.weight").ne(0).sum().item<int64_t>());
  EXPECT_EQ(i.nonzeros, int8.quant.tensors["0.weight"].values.ne(0).sum().item<int64_t>());
  EXPECT_LT(i.nonzeros, f.nonzeros);  // small weights round to code 0
  EXPECT_EQ(h.nonzeros, fp16.quant.tensors["0.weight"].values.ne(0).sum().item<int64_t>());

  // Affine int8: a code equal to the zero point stands for 0.
  Model q = quantized_model();
  save_groups(q, dir.file("q.h5"));
  ModelFileSummary summary = inspect_model_file(dir.file("q.h5"));
  EXPECT_EQ(stored(summary, "2.weight").encoding, "int8");
  EXPECT_EQ(stored(summary, "2.weight").nonzeros,
            q.quant.tensors["2.weight"].values.ne(3).sum().item<int64_t>());
  EXPECT_EQ(stored(summary, "2.bias").encoding, "bf16");
  EXPECT_EQ(stored(summary, "4.bias").encoding, "fp32");
}

// The quantized layout as another tool sees it, from docs/format.md alone.
TEST_F(ModelFileTest, RawHdf5ReaderSeesQuantizedLayout) {
  Model model = quantized_model();
  const std::string path = dir.file("q.h5");
  save_groups(model, path);
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  EXPECT_EQ(read_string_attr(file, "quant_mode"), "int8-static");

  // fp16: a true 16-bit IEEE float type; HDF5's own conversion to float32 gives the values.
  for (const auto& [name, encoding] :
       {std::pair<std::string, Encoding>{"4.weight", Encoding::kFp16},
        {"2.bias", Encoding::kBf16}}) {
    SCOPED_TRACE(name);
    hid_t group = H5Gopen2(file, ("/tensors/" + name).c_str(), H5P_DEFAULT);
    EXPECT_EQ(read_string_attr(group, "encoding"), to_string(encoding));
    EXPECT_EQ(read_string_attr(group, "layout"), "dense");
    hid_t dset = H5Dopen2(group, "values", H5P_DEFAULT);
    if (encoding == Encoding::kFp16) {
      expect_float_fields(dset, 2, {15, 10, 5, 0, 10}, 15);
    } else {
      expect_float_fields(dset, 2, {15, 7, 8, 0, 7}, 127);
    }
    EXPECT_EQ(filters_of(dset), kFilters);
    const at::Tensor want = model.quant.tensors[name].values.to(at::kFloat).contiguous();
    std::vector<float> got(static_cast<size_t>(want.numel()));
    ASSERT_GE(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, got.data()), 0);
    EXPECT_EQ(std::memcmp(got.data(), want.data_ptr<float>(), got.size() * sizeof(float)), 0);
    H5Dclose(dset);
    H5Gclose(group);
  }

  // int8 per channel: int8 values, float32 scale and int32 zero_point per row, int64 axis 0.
  for (const auto& [name, channels, axis] :
       {std::tuple<std::string, hsize_t, int64_t>{"0.weight", 300, 0}, {"2.weight", 1, -1}}) {
    SCOPED_TRACE(name);
    hid_t group = H5Gopen2(file, ("/tensors/" + name).c_str(), H5P_DEFAULT);
    EXPECT_EQ(read_string_attr(group, "encoding"), "int8");
    hid_t attr = H5Aopen(group, "axis", H5P_DEFAULT);
    hid_t attr_type = H5Aget_type(attr);
    EXPECT_TRUE(H5Tequal(attr_type, H5T_STD_I64LE) > 0);
    int64_t stored_axis = 99;
    ASSERT_GE(H5Aread(attr, H5T_NATIVE_INT64, &stored_axis), 0);
    EXPECT_EQ(stored_axis, axis);
    H5Tclose(attr_type);
    H5Aclose(attr);

    hid_t values = H5Dopen2(group, "values", H5P_DEFAULT);
    hid_t type = H5Dget_type(values);
    EXPECT_EQ(H5Tget_class(type), H5T_INTEGER);
    EXPECT_EQ(H5Tget_size(type), 1u);
    EXPECT_TRUE(H5Tequal(type, H5T_STD_I8LE) > 0);
    H5Tclose(type);
    EXPECT_EQ(filters_of(values), kFilters);
    H5Dclose(values);
    for (const auto& [member, file_type] :
         {std::pair<const char*, hid_t>{"scale", H5T_IEEE_F32LE}, {"zero_point", H5T_STD_I32LE}}) {
      hid_t dset = H5Dopen2(group, member, H5P_DEFAULT);
      ASSERT_GE(dset, 0) << member;
      hid_t dtype = H5Dget_type(dset);
      EXPECT_TRUE(H5Tequal(dtype, file_type) > 0) << member;
      H5Tclose(dtype);
      hid_t space = H5Dget_space(dset);
      hsize_t dims[2] = {};
      EXPECT_EQ(H5Sget_simple_extent_dims(space, dims, nullptr), 1) << member;
      EXPECT_EQ(dims[0], channels) << member;
      H5Sclose(space);
      EXPECT_EQ(filters_of(dset), kFilters) << member;
      H5Dclose(dset);
    }
    H5Gclose(group);
  }

  hid_t act = H5Gopen2(file, "/activations/5.conv1", H5P_DEFAULT);
  ASSERT_GE(act, 0);
  double scale = 0;
  int64_t zero_point = 0;
  hid_t attr = H5Aopen(act, "scale", H5P_DEFAULT);
  hid_t attr_type = H5Aget_type(attr);
  EXPECT_TRUE(H5Tequal(attr_type, H5T_IEEE_F64LE) > 0);
  ASSERT_GE(H5Aread(attr, H5T_NATIVE_DOUBLE, &scale), 0);
  H5Tclose(attr_type);
  H5Aclose(attr);
  attr = H5Aopen(act, "zero_point", H5P_DEFAULT);
  attr_type = H5Aget_type(attr);
  EXPECT_TRUE(H5Tequal(attr_type, H5T_STD_I64LE) > 0);
  ASSERT_GE(H5Aread(attr, H5T_NATIVE_INT64, &zero_point), 0);
  H5Tclose(attr_type);
  H5Aclose(attr);
  EXPECT_EQ(scale, 0.02);
  EXPECT_EQ(zero_point, 7);
  EXPECT_EQ(read_string_attr(act, "observer"), "minmax");
  H5Gclose(act);
  EXPECT_EQ(H5Fclose(file), 0);

  // A plain fp32 model stores quant_mode "" and no /activations group.
  save_groups(tiny_model(), dir.file("fp32.h5"));
  file = H5Fopen(dir.file("fp32.h5").c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_EQ(read_string_attr(file, "quant_mode"), "");
  EXPECT_EQ(H5Lexists(file, "activations", H5P_DEFAULT), 0);
  H5Fclose(file);
}

TEST_F(ModelFileTest, IgnoresUnknownAttributes) {
  const std::string path = dir.file("m.h5");
  save_groups(tiny_model(), path);
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
  save_groups(tiny_model(), path);
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

// --- Sparse tensors and pruning masks ---------------------------------------------------------

class SparseRoundTripTest : public ::testing::TestWithParam<std::string> {
 protected:
  TempDir dir;
};

TEST_P(SparseRoundTripTest, IsBitIdenticalAndDeterministic) {
  Model model = sparse_mlp(GetParam());
  if (model.quant.tensors.count("0.weight") != 0 &&
      model.quant.tensors["0.weight"].encoding != Encoding::kInt8) {
    // A pruned entry holding -0.0 is stored (only +0.0 is implicit) and keeps its sign.
    QuantizedTensor& q = model.quant.tensors["0.weight"];
    const int64_t pruned =
        model.masks["0.weight"].reshape({-1}).logical_not().nonzero()[0].item<int64_t>();
    q.values.view({-1})[pruned] = -0.0;
    model.tensor("0.weight") = q.dequantize().contiguous();
  }
  const std::string path = dir.file("sparse.h5");
  save_groups(model, path);
  const StoredTensorInfo info = stored(inspect_model_file(path), "0.weight");
  EXPECT_EQ(info.layout, "sparse");
  // Omitted entries and stored zeros (the -0.0, an int8 code at its zero point) are not counted.
  EXPECT_EQ(info.nonzeros, model.tensor("0.weight").ne(0).sum().item<int64_t>());
  Model loaded = load_model(path);

  for (const TensorInfo& info : model.tensor_infos()) {
    EXPECT_TRUE(bit_identical(loaded.tensor(info.name), model.tensor(info.name))) << info.name;
  }
  ASSERT_EQ(loaded.quant.tensors.size(), model.quant.tensors.size());
  for (const auto& [name, want] : model.quant.tensors) {
    const QuantizedTensor& got = loaded.quant.tensors.at(name);
    EXPECT_EQ(got.encoding, want.encoding);
    EXPECT_TRUE(bit_identical(got.values, want.values)) << name;
    if (want.encoding == Encoding::kInt8) {
      EXPECT_TRUE(bit_identical(got.scale, want.scale));
      EXPECT_TRUE(bit_identical(got.zero_point, want.zero_point));
      EXPECT_EQ(got.axis, want.axis);
    }
  }
  // The mask comes back as the non-zero pattern: the pruning mask, less any kept weight whose
  // stored value is 0 (an int8 code rounded to the zero point).
  ASSERT_EQ(loaded.masks.count("0.weight"), 1u);
  EXPECT_TRUE(loaded.masks["0.weight"].equal(
      model.masks["0.weight"].logical_and(model.tensor("0.weight").ne(0))));
  if (GetParam() == "fp32") {
    EXPECT_TRUE(loaded.masks["0.weight"].equal(model.masks["0.weight"]));
  }

  // Same model, same bytes, also after a load/save cycle.
  save_groups(model.clone(), dir.file("b.h5"));
  save_groups(loaded, dir.file("c.h5"));
  EXPECT_TRUE(read_bytes(path) == read_bytes(dir.file("b.h5")));
  EXPECT_TRUE(read_bytes(path) == read_bytes(dir.file("c.h5")));
}

INSTANTIATE_TEST_SUITE_P(Encodings, SparseRoundTripTest,
                         ::testing::Values("fp32", "fp16", "bf16", "int8", "int8-affine"),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (auto& c : name) c = std::isalnum(c) ? c : '_';
                           return name;
                         });

// A [300, 784] fp16 weight with its first `nnz` entries (row-major) non-zero.
Model fp16_weight_with_nonzeros(int64_t nnz) {
  Model model = mlp_model();
  at::Tensor w = (at::rand({300, 784}) + 0.5).reshape({-1});  // no zeros
  w.slice(0, nnz).zero_();
  model.quant.mode = "fp16";
  model.quant.tensors["0.weight"] = half_precision(w.reshape({300, 784}), Encoding::kFp16);
  model.tensor("0.weight") = model.quant.tensors["0.weight"].dequantize().contiguous();
  return model;
}

TEST_F(ModelFileTest, SparseOnlyWhenStrictlySmallerThanDense) {
  // fp16 [300, 784]: dense 470400 bytes; sparse nnz·(2 + 2) + 301·4 (uint32 indptr above
  // 65535 entries) = 470400 exactly at nnz = 117299.
  save_groups(fp16_weight_with_nonzeros(117299), dir.file("equal.h5"));
  save_groups(fp16_weight_with_nonzeros(117298), dir.file("smaller.h5"));
  EXPECT_EQ(stored(inspect_model_file(dir.file("equal.h5")), "0.weight").layout, "dense");
  EXPECT_EQ(stored(inspect_model_file(dir.file("smaller.h5")), "0.weight").layout, "sparse");
  EXPECT_EQ(stored(inspect_model_file(dir.file("smaller.h5")), "0.weight").nonzeros, 117298);

  // The thresholds differ per encoding: fp32 goes sparse below 2/3 density, int8 below 1/3.
  for (const auto& [encoding, sparsity, layout] :
       {std::tuple<std::string, double, std::string>{"fp32", 0.3, "dense"},
        {"fp32", 0.4, "sparse"},
        {"int8", 0.6, "dense"},
        {"int8", 0.7, "sparse"}}) {
    SCOPED_TRACE(encoding + " at sparsity " + std::to_string(sparsity));
    Model model = mlp_model();
    prune_rows(model, "0.weight", sparsity);
    if (encoding == "int8") {
      model.quant.mode = "int8-dynamic";
      model.quant.tensors["0.weight"] = int8_per_channel(model.tensor("0.weight"));
      model.tensor("0.weight") = model.quant.tensors["0.weight"].dequantize().contiguous();
    }
    const std::string path = dir.file(encoding + std::to_string(sparsity) + ".h5");
    save_groups(model, path);
    EXPECT_EQ(stored(inspect_model_file(path), "0.weight").layout, layout);
    EXPECT_TRUE(bit_identical(load_model(path).tensor("0.weight"), model.tensor("0.weight")));
  }
}

TEST_F(ModelFileTest, MasksRoundTripAsTheNonZeroPattern) {
  Model model = mlp_model();
  prune_rows(model, "0.weight", 0.95);  // stored sparse
  prune_rows(model, "2.weight", 0.2);   // pruned, but stored dense
  const std::string path = dir.file("pruned.h5");
  save_groups(model, path);
  const ModelFileSummary summary = inspect_model_file(path);
  EXPECT_EQ(stored(summary, "0.weight").layout, "sparse");
  EXPECT_EQ(stored(summary, "2.weight").layout, "dense");

  Model loaded = load_model(path);
  ASSERT_EQ(loaded.masks.size(), 2u);  // only the tensors that were pruned
  for (const char* name : {"0.weight", "2.weight"}) {
    EXPECT_EQ(loaded.masks[name].scalar_type(), at::kBool) << name;
    EXPECT_TRUE(loaded.masks[name].equal(model.masks[name])) << name;
  }
  // An unpruned model has no masks.
  save_groups(mlp_model(), dir.file("plain.h5"));
  EXPECT_TRUE(load_model(dir.file("plain.h5")).masks.empty());
}

TEST_F(ModelFileTest, SparseFileIsMuchSmallerThanDense) {
  Model dense = mlp_model();
  Model pruned = mlp_model();
  prune_rows(pruned, "0.weight", 0.95);
  save_groups(dense, dir.file("dense.h5"));
  save_groups(pruned, dir.file("pruned.h5"));
  const StoredTensorInfo d = stored(inspect_model_file(dir.file("dense.h5")), "0.weight");
  const StoredTensorInfo s = stored(inspect_model_file(dir.file("pruned.h5")), "0.weight");
  EXPECT_EQ(s.layout, "sparse");
  EXPECT_EQ(s.nonzeros, pruned.tensor("0.weight").ne(0).sum().item<int64_t>());
  EXPECT_NEAR(static_cast<double>(s.nonzeros) / static_cast<double>(s.parameters), 0.05, 0.002);
  // 95% zeros: CSR holds 6 bytes per kept weight instead of 4 per weight, ~13x less.
  EXPECT_LT(s.bytes_on_disk * 10, d.bytes_on_disk) << s.bytes_on_disk << " vs " << d.bytes_on_disk;
  EXPECT_LT(std::filesystem::file_size(dir.file("pruned.h5")) * 3,
            std::filesystem::file_size(dir.file("dense.h5")));
}

// Pruning and quantization compose on disk: the zoo mlp with 95% of each weight row pruned and
// int8 weights is ~24x smaller than its fp32 file (about 13 KB of it HDF5 metadata and the
// vlen-string heap; the column indices are the largest dataset).
TEST_F(ModelFileTest, PrunedInt8MlpFileIsOverTwentyTimesSmaller) {
  Model model = Model::initialize(zoo_spec("mlp"), 0);
  save_groups(model, dir.file("fp32.h5"));
  model.quant.mode = "int8-dynamic";
  for (const char* name : {"1.weight", "3.weight", "5.weight"}) {
    prune_rows(model, name, 0.95);
    model.quant.tensors[name] = int8_per_channel(model.tensor(name));
    model.tensor(name) = model.quant.tensors[name].dequantize().contiguous();
  }
  save_groups(model, dir.file("pruned-int8.h5"));
  const double ratio = static_cast<double>(std::filesystem::file_size(dir.file("fp32.h5"))) /
                       static_cast<double>(std::filesystem::file_size(dir.file("pruned-int8.h5")));
  EXPECT_GT(ratio, 20.0);
  for (const StoredTensorInfo& t : inspect_model_file(dir.file("pruned-int8.h5")).tensors) {
    if (t.name.find("weight") != std::string::npos) {
      EXPECT_EQ(t.layout, "sparse") << t.name;
    }
  }
  Model loaded = load_model(dir.file("pruned-int8.h5"));
  EXPECT_EQ(loaded.masks.size(), 3u);
  EXPECT_TRUE(bit_identical(loaded.tensor("1.weight"), model.tensor("1.weight")));
}

// The sparse layout as another tool sees it, from docs/format.md alone.
TEST_F(ModelFileTest, RawHdf5ReaderSeesSparseLayout) {
  Model model = sparse_mlp("int8");
  prune_rows(model, "2.weight", 0.9);  // stays fp32
  const std::string path = dir.file("s.h5");
  save_groups(model, path);
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);

  for (const auto& [name, encoding, value_type, columns] :
       {std::tuple<std::string, std::string, hid_t, int64_t>{"0.weight", "int8", H5T_STD_I8LE, 784},
        {"2.weight", "fp32", H5T_IEEE_F32LE, 300}}) {
    SCOPED_TRACE(name);
    const at::Tensor dense =
        encoding == "int8" ? model.quant.tensors[name].values.to(at::kFloat) : model.tensor(name);
    const int64_t rows = dense.size(0);
    const int64_t nnz = dense.ne(0).sum().item<int64_t>();  // int8 symmetric: zero point 0
    hid_t group = H5Gopen2(file, ("/tensors/" + name).c_str(), H5P_DEFAULT);
    ASSERT_GE(group, 0);
    EXPECT_EQ(read_string_attr(group, "encoding"), encoding);
    EXPECT_EQ(read_string_attr(group, "layout"), "sparse");
    hid_t attr = H5Aopen(group, "density", H5P_DEFAULT);
    hid_t attr_type = H5Aget_type(attr);
    EXPECT_TRUE(H5Tequal(attr_type, H5T_IEEE_F64LE) > 0);
    double density = 0;
    ASSERT_GE(H5Aread(attr, H5T_NATIVE_DOUBLE, &density), 0);
    EXPECT_DOUBLE_EQ(density, static_cast<double>(nnz) / static_cast<double>(dense.numel()));
    H5Tclose(attr_type);
    H5Aclose(attr);
    attr = H5Aopen(group, "pruned", H5P_DEFAULT);
    attr_type = H5Aget_type(attr);
    EXPECT_TRUE(H5Tequal(attr_type, H5T_STD_I8LE) > 0);
    int8_t pruned = 0;
    ASSERT_GE(H5Aread(attr, H5T_NATIVE_INT8, &pruned), 0);
    EXPECT_EQ(pruned, 1);
    H5Tclose(attr_type);
    H5Aclose(attr);

    // Types: values in the encoding; indptr in the smallest unsigned type that holds nnz, the
    // column gaps in the smallest that holds the largest gap (checked below).
    const hid_t indptr_type = nnz <= 0xFF     ? H5T_STD_U8LE
                              : nnz <= 0xFFFF ? H5T_STD_U16LE
                                              : H5T_STD_U32LE;
    std::vector<int64_t> indptr, indices;
    hid_t gap_type = -1;
    EXPECT_EQ(H5Lexists(group, "indices", H5P_DEFAULT), 0);  // version 1's absolute form
    for (const auto& [member, type, length, out] :
         {std::tuple<const char*, hid_t, int64_t, std::vector<int64_t>*>{"indptr", indptr_type,
                                                                         rows + 1, &indptr},
          {"indices_delta", -1, nnz, &indices},
          {"values", value_type, nnz, nullptr}}) {
      hid_t dset = H5Dopen2(group, member, H5P_DEFAULT);
      ASSERT_GE(dset, 0) << member;
      hid_t dtype = H5Dget_type(dset);
      if (type >= 0) {
        EXPECT_TRUE(H5Tequal(dtype, type) > 0) << member;
      } else {
        gap_type = H5Tcopy(dtype);
      }
      H5Tclose(dtype);
      hid_t space = H5Dget_space(dset);
      hsize_t dims[2] = {};
      EXPECT_EQ(H5Sget_simple_extent_dims(space, dims, nullptr), 1) << member;
      EXPECT_EQ(static_cast<int64_t>(dims[0]), length) << member;
      H5Sclose(space);
      EXPECT_EQ(filters_of(dset), kFilters) << member;
      if (out != nullptr) {
        out->resize(static_cast<size_t>(length));
        ASSERT_GE(H5Dread(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->data()), 0);
      }
      H5Dclose(dset);
    }
    // Row-delta: a row's first entry is its column, each later one the step from the previous.
    const int64_t max_gap = *std::max_element(indices.begin(), indices.end());
    EXPECT_TRUE(H5Tequal(gap_type, max_gap <= 0xFF ? H5T_STD_U8LE : H5T_STD_U16LE) > 0) << max_gap;
    H5Tclose(gap_type);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = indptr[static_cast<size_t>(r)] + 1; k < indptr[static_cast<size_t>(r) + 1];
           ++k) {
        EXPECT_GE(indices[static_cast<size_t>(k)], 1);
        indices[static_cast<size_t>(k)] += indices[static_cast<size_t>(k) - 1];
      }
    }
    // Rebuild the dense values from CSR: they are the tensor's, in row-major order.
    std::vector<float> values(static_cast<size_t>(nnz));
    hid_t dset = H5Dopen2(group, "values", H5P_DEFAULT);
    ASSERT_GE(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
    H5Dclose(dset);
    at::Tensor rebuilt = at::zeros({rows, columns});
    auto cell = rebuilt.accessor<float, 2>();
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t k = indptr[static_cast<size_t>(r)]; k < indptr[static_cast<size_t>(r) + 1];
           ++k) {
        cell[r][indices[static_cast<size_t>(k)]] = values[static_cast<size_t>(k)];
      }
    }
    EXPECT_TRUE(bit_identical(rebuilt, dense.contiguous()));
    EXPECT_EQ(H5Lexists(group, "scale", H5P_DEFAULT) > 0, encoding == "int8");
    H5Gclose(group);
  }
  // An unpruned tensor has no 'pruned' attribute.
  hid_t group = H5Gopen2(file, "/tensors/4.weight", H5P_DEFAULT);
  EXPECT_EQ(H5Aexists(group, "pruned"), 0);
  H5Gclose(group);
  EXPECT_EQ(H5Fclose(file), 0);
}

TEST_F(ModelFileTest, SparseReaderAcceptsAnyIntegerType) {
  Model model = sparse_mlp("fp32");
  const std::string path = dir.file("s.h5");
  save_groups(model, path);
  edit_file(path, [](hid_t file) {
    // Signed 32- and 64-bit instead of the uint16 mcompress writes.
    for (const auto& [member, type] :
         {std::pair<std::string, hid_t>{"indices_delta", H5T_STD_I32LE},
          {"indptr", H5T_STD_I64BE}}) {
      const std::string name = "/tensors/0.weight/" + member;
      hid_t dset = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
      hid_t space = H5Dget_space(dset);
      std::vector<int64_t> values(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
      ASSERT_GE(H5Dread(dset, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
      H5Sclose(space);
      H5Dclose(dset);
      replace_dataset(file, name, type, H5T_NATIVE_INT64, values);
    }
  });
  Model loaded = load_model(path);
  EXPECT_TRUE(bit_identical(loaded.tensor("0.weight"), model.tensor("0.weight")));
  EXPECT_TRUE(loaded.masks.at("0.weight").equal(model.masks.at("0.weight")));
}

class ModelFileErrorTest : public ::testing::Test {
 protected:
  ModelFileErrorTest() { path = dir.file("m.h5"); }
  void save_tiny() { save_groups(tiny_model(), path); }
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
  ASSERT_THROWS_WITH(save_groups(tiny_model(9), path), IoError,
                     "exists; pass --force to overwrite");
  EXPECT_TRUE(read_bytes(path) == before);
}

TEST_F(ModelFileErrorTest, MissingFolder) {
  ASSERT_THROWS_WITH(save_groups(tiny_model(), dir.file("no/such/m.h5")), IoError,
                     "does not exist");
}

TEST_F(ModelFileErrorTest, FolderThatIsAFile) {
  write_bytes(dir.file("plain"), "x");
  ASSERT_THROWS_WITH(save_groups(tiny_model(), dir.file("plain") + "/m.h5"), IoError,
                     "is not a folder");
}

TEST_F(ModelFileErrorTest, UnwritableFolder) {
  // Root ignores permission bits, so the check uses a folder nobody can write to: /proc.
  ASSERT_THROWS_WITH(save_groups(tiny_model(), "/proc/mcompress-test.h5"), IoError,
                     "/proc/mcompress-test.h5");
  if (::geteuid() != 0) {
    std::filesystem::create_directory(dir.file("ro"));
    std::filesystem::permissions(
        dir.file("ro"), std::filesystem::perms::owner_read | std::filesystem::perms::owner_exec);
    ASSERT_THROWS_WITH(save_groups(tiny_model(), dir.file("ro/m.h5")), IoError,
                       "is the folder writable?");
  }
}

TEST_F(ModelFileErrorTest, RefusesNonFiniteOnSave) {
  Model model = tiny_model();
  model.tensor("0.bias").data_ptr<float>()[1] = std::numeric_limits<float>::infinity();
  ASSERT_THROWS_WITH(save_groups(model, path), ModelError,
                     "tensor '0.bias' has a non-finite value");
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
  flip_bit_in_first_chunk(path, "/tensors/4.weight/values", 0x10);
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '4.weight': cannot read its values; the data is corrupt");
  ASSERT_THROWS_WITH(load_model(path), FormatError, "checksum");
}

TEST_F(ModelFileErrorTest, NewerFormatVersion) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    hid_t attr = H5Aopen(file, "format_version", H5P_DEFAULT);
    int32_t v4 = 4;
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT32, &v4), 0);
    H5Aclose(attr);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     path +
                         ": this mcompress supports model format v3 or below, but the file has v4; "
                         "it was written by a newer mcompress");
  ASSERT_THROWS_WITH(inspect_model_file(path), FormatError, "supports model format v3 or below");
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

TEST_F(ModelFileErrorTest, Fp16EncodingOnFp32Values) {
  save_tiny();
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, "/tensors/0.weight", H5P_DEFAULT);
    replace_string_attr(group, "encoding", "fp16");
    H5Gclose(group);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight' has encoding fp16 but its values are not IEEE binary16 "
                     "floats (4-byte float)");
}

TEST_F(ModelFileErrorTest, Int8ScaleLengthMismatch) {
  Model model = quantized_model();
  model.quant.tensors["0.weight"].scale = at::full({299}, 0.01f);
  ASSERT_THROWS_WITH(save_groups(model, path), ModelError,
                     "tensor '0.weight' (int8) has 299 scales, expected 300 (one per channel "
                     "along axis 0)");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));

  save_groups(quantized_model(), path);
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/0.weight/scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>(5, 0.01f));
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight' (int8) has 5 scales, expected 300 (one per channel "
                     "along axis 0)");
}

TEST_F(ModelFileErrorTest, Int8PerTensorNeedsOneScale) {
  save_groups(quantized_model(), path);
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/2.weight/scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>(64, 0.01f));
    replace_dataset(file, "/tensors/2.weight/zero_point", H5T_STD_I32LE, H5T_NATIVE_INT32,
                    std::vector<int32_t>(64, 0));
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '2.weight' (int8) has 64 scales, expected 1 (axis -1: one scale for "
                     "the tensor)");
}

TEST_F(ModelFileErrorTest, NegativeInt8Scale) {
  save_groups(quantized_model(), path);
  edit_file(path, [](hid_t file) {
    hid_t dset = H5Dopen2(file, "/tensors/0.weight/scale", H5P_DEFAULT);
    std::vector<float> scale(300);
    ASSERT_GE(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, scale.data()), 0);
    scale[2] = -0.5f;
    ASSERT_GE(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, scale.data()), 0);
    H5Dclose(dset);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight' (int8) has scale -0.5 at index 2, expected a finite "
                     "value > 0");
}

TEST_F(ModelFileErrorTest, Int8AxisOutOfRange) {
  save_groups(quantized_model(), path);
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, "/tensors/0.weight", H5P_DEFAULT);
    hid_t attr = H5Aopen(group, "axis", H5P_DEFAULT);
    int64_t axis = 2;
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT64, &axis), 0);
    H5Aclose(attr);
    H5Gclose(group);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight' (int8) has axis 2, expected -1 (one scale for the "
                     "tensor) or 0 to 1");
}

TEST_F(ModelFileErrorTest, Int8ZeroPointSizeMismatch) {
  save_groups(quantized_model(), path);
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/0.weight/zero_point", H5T_STD_I32LE, H5T_NATIVE_INT32,
                    std::vector<int32_t>(3, 0));
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight' (int8) has 3 zero points but 300 scales");
}

TEST_F(ModelFileErrorTest, Int8ValuesOfWrongShape) {
  Model model = quantized_model();
  model.quant.tensors["0.weight"].values = at::zeros({784, 300}, at::kChar);
  ASSERT_THROWS_WITH(
      save_groups(model, path), ModelError,
      "tensor '0.weight' (int8) has values of shape [784, 300], expected [300, 784]");
}

TEST_F(ModelFileErrorTest, Fp16InfRefused) {
  Model model = quantized_model();
  model.quant.tensors["4.weight"].values.data_ptr<at::Half>()[5] =
      at::Half(std::numeric_limits<float>::infinity());
  ASSERT_THROWS_WITH(save_groups(model, path), ModelError,
                     "tensor '4.weight' (fp16) has a non-finite value (inf) at flat index 5; "
                     "refusing to save it");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));

  save_groups(quantized_model(), path);
  edit_file(path, [](hid_t file) {
    hid_t dset = H5Dopen2(file, "/tensors/4.weight/values", H5P_DEFAULT);
    hid_t type = H5Dget_type(dset);  // the stored 16-bit type: raw bit patterns in and out
    std::vector<uint16_t> bits(10 * 64);
    ASSERT_GE(H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits.data()), 0);
    bits[5] = 0x7C00;  // +Inf in IEEE binary16
    ASSERT_GE(H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits.data()), 0);
    H5Tclose(type);
    H5Dclose(dset);
  });
  ASSERT_THROWS_WITH(load_model(path), ModelError,
                     "tensor '4.weight' has a non-finite value (inf) at flat index 5");
}

TEST_F(ModelFileErrorTest, ActivationZeroPointOutOfRange) {
  Model model = quantized_model();
  model.quant.activations["5.conv1"].zero_point = 300;
  ASSERT_THROWS_WITH(save_groups(model, path), ModelError,
                     "activation '5.conv1' has zero_point 300, expected 0 to 255 (uint8)");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));

  save_groups(quantized_model(), path);
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, "/activations/5.conv1", H5P_DEFAULT);
    hid_t attr = H5Aopen(group, "zero_point", H5P_DEFAULT);
    int64_t zero_point = 300;
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT64, &zero_point), 0);
    H5Aclose(attr);
    H5Gclose(group);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "activation '5.conv1' has zero_point 300, expected 0 to 255 (uint8)");
}

TEST_F(ModelFileErrorTest, ActivationScaleNotPositive) {
  save_groups(quantized_model(), path);
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, "/activations/input", H5P_DEFAULT);
    hid_t attr = H5Aopen(group, "scale", H5P_DEFAULT);
    double scale = 0.0;
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_DOUBLE, &scale), 0);
    H5Aclose(attr);
    H5Gclose(group);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "activation 'input' has scale 0, expected a finite value > 0");
}

TEST_F(ModelFileErrorTest, UnknownQuantMode) {
  Model model = quantized_model();
  model.quant.mode = "int4";
  ASSERT_THROWS_WITH(save_groups(model, path), ModelError, "unknown quant_mode 'int4'");
  save_groups(quantized_model(), path);
  edit_file(path, [](hid_t file) { replace_string_attr(file, "quant_mode", "int4"); });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "unknown quant_mode 'int4'; accepted: \"\" (none), fp16, bf16, int8-dynamic, "
                     "int8-static");
}

TEST_F(ModelFileErrorTest, QuantizedTensorNotInArchitecture) {
  Model model = quantized_model();
  model.quant.tensors["9.weight"] = model.quant.tensors["4.weight"];
  ASSERT_THROWS_WITH(save_groups(model, path), ModelError,
                     "quantized tensor '9.weight' is not a tensor of the architecture");
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

// --- Sparse layout: every broken CSR is refused, naming the tensor ---------------------------

const std::string kSparseWeight = "/tensors/0.weight";

class SparseFileErrorTest : public ModelFileErrorTest {
 protected:
  SparseFileErrorTest() {
    save_groups(sparse_mlp("fp32"), path);
    nnz = stored(inspect_model_file(path), "0.weight").nonzeros;
  }
  // Rewrites the row-delta column indices as absolute ones, as format version 1 stores them.
  void make_absolute() {
    edit_file(path, [&](hid_t file) {
      const std::vector<int64_t> indptr =
          read_dataset<int64_t>(file, kSparseWeight + "/indptr", H5T_NATIVE_INT64);
      std::vector<int64_t> columns =
          read_dataset<int64_t>(file, kSparseWeight + "/indices_delta", H5T_NATIVE_INT64);
      for (size_t r = 0; r + 1 < indptr.size(); ++r) {
        for (auto k = static_cast<size_t>(indptr[r]) + 1; k < static_cast<size_t>(indptr[r + 1]);
             ++k)
          columns[k] += columns[k - 1];
      }
      ASSERT_GE(H5Ldelete(file, (kSparseWeight + "/indices_delta").c_str(), H5P_DEFAULT), 0);
      replace_dataset(file, kSparseWeight + "/indices", H5T_STD_U16LE, H5T_NATIVE_INT64, columns);
    });
  }
  // Rewrites /tensors/0.weight/<member> (indptr, indices or indices_delta) after `change` edits
  // its values.
  void edit_ints(const std::string& member,
                 const std::function<void(std::vector<int64_t>&)>& change) {
    edit_file(path, [&](hid_t file) {
      const std::string name = kSparseWeight + "/" + member;
      std::vector<int64_t> values = read_dataset<int64_t>(file, name, H5T_NATIVE_INT64);
      change(values);
      replace_dataset(file, name, H5T_STD_I64LE, H5T_NATIVE_INT64, values);
    });
  }
  void expect_refused(const std::string& message) {
    ASSERT_THROWS_WITH(load_model(path), FormatError, "tensor '0.weight' (sparse) " + message);
    ASSERT_THROWS_WITH(inspect_model_file(path), FormatError,
                       "tensor '0.weight' (sparse) " + message);
  }
  int64_t nnz = 0;
};

TEST_F(SparseFileErrorTest, IndptrOfWrongLength) {
  edit_ints("indptr", [](std::vector<int64_t>& p) { p.pop_back(); });
  expect_refused("has an indptr of 300 entries, expected 301 (shape[0] + 1)");
}

TEST_F(SparseFileErrorTest, IndptrNotStartingAtZero) {
  edit_ints("indptr", [](std::vector<int64_t>& p) { p[0] = 1; });
  expect_refused("has indptr[0] = 1, expected 0");
}

TEST_F(SparseFileErrorTest, IndptrDecreasing) {
  int64_t row6 = 0;
  edit_ints("indptr", [&](std::vector<int64_t>& p) {
    row6 = p[6];
    p[5] = p[6] + 3;
  });
  expect_refused("has a decreasing indptr at row 5 (" + std::to_string(row6 + 3) + " then " +
                 std::to_string(row6) + "); it must be non-decreasing");
}

TEST_F(SparseFileErrorTest, IndptrNotEndingAtNnz) {
  edit_ints("indptr", [](std::vector<int64_t>& p) { p.back() -= 1; });
  expect_refused("has indptr ending at " + std::to_string(nnz - 1) + ", expected " +
                 std::to_string(nnz) + " (the number of stored values)");
}

TEST_F(SparseFileErrorTest, ColumnIndexOutOfRange) {
  int64_t last_of_row0 = 0;
  edit_file(path, [&](hid_t file) {
    last_of_row0 = read_dataset<int64_t>(file, kSparseWeight + "/indptr", H5T_NATIVE_INT64)[1] - 1;
  });
  ASSERT_GT(last_of_row0, 0);
  // Row-delta (version 2): the last gap of row 0 reaches past the last column, also when it is
  // so large that adding it would overflow.
  const auto last = static_cast<size_t>(last_of_row0);
  int64_t column_before = 0;
  edit_file(path, [&](hid_t file) {
    const std::vector<int64_t> gaps =
        read_dataset<int64_t>(file, kSparseWeight + "/indices_delta", H5T_NATIVE_INT64);
    for (size_t k = 0; k < last; ++k) column_before += gaps[k];
  });
  edit_ints("indices_delta", [&](std::vector<int64_t>& g) { g[last] = 784 - column_before; });
  expect_refused("has column index " + std::to_string(column_before) + " + " +
                 std::to_string(784 - column_before) + " in row 0, expected 0 to 783");
  edit_ints("indices_delta", [&](std::vector<int64_t>& g) { g[last] = INT64_MAX; });
  expect_refused("has column index " + std::to_string(column_before) +
                 " + 9223372036854775807 in row 0, expected 0 to 783");
  // Absolute (version 1).
  edit_ints("indices_delta", [&](std::vector<int64_t>& g) { g[last] = 1; });
  make_absolute();
  edit_ints("indices", [&](std::vector<int64_t>& i) { i[last] = 784; });
  expect_refused("has column index 784 in row 0, expected 0 to 783");
}

TEST_F(SparseFileErrorTest, ColumnGapOfZero) {
  std::vector<int64_t> gaps;
  edit_ints("indices_delta", [&](std::vector<int64_t>& g) {
    gaps = g;
    g[1] = 0;  // a duplicate entry
  });
  expect_refused("has column indices out of order in row 0 (gap 0 after column " +
                 std::to_string(gaps[0]) + "); each gap in indices_delta must be ≥ 1");
}

TEST_F(SparseFileErrorTest, BothIndexForms) {
  edit_file(path, [&](hid_t file) {
    replace_dataset(
        file, kSparseWeight + "/indices", H5T_STD_U16LE, H5T_NATIVE_INT64,
        read_dataset<int64_t>(file, kSparseWeight + "/indices_delta", H5T_NATIVE_INT64));
  });
  expect_refused("has both 'indices' and 'indices_delta'; expected one of them");
}

TEST_F(SparseFileErrorTest, ColumnIndicesNotStrictlyIncreasing) {
  make_absolute();
  std::vector<int64_t> before;
  edit_ints("indices", [&](std::vector<int64_t>& i) {
    before = i;
    std::swap(i[0], i[1]);
  });
  expect_refused("has column indices out of order in row 0 (" + std::to_string(before[0]) +
                 " after " + std::to_string(before[1]) +
                 "); they must be strictly increasing within a row");
  edit_ints("indices", [&](std::vector<int64_t>& i) {
    i = before;
    i[1] = i[0];  // a duplicate entry
  });
  expect_refused("has column indices out of order in row 0");
}

TEST_F(SparseFileErrorTest, ValuesAndIndicesCountsDiffer) {
  edit_file(path, [&](hid_t file) {
    replace_dataset(file, kSparseWeight + "/values", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>(static_cast<size_t>(nnz - 1), 0.5f));
  });
  expect_refused("has " + std::to_string(nnz) + " indices but " + std::to_string(nnz - 1) +
                 " values; expected one column index per stored value");
}

TEST_F(SparseFileErrorTest, DensityInconsistentOrMissing) {
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, kSparseWeight.c_str(), H5P_DEFAULT);
    hid_t attr = H5Aopen(group, "density", H5P_DEFAULT);
    const double density = 0.5;
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_DOUBLE, &density), 0);
    H5Aclose(attr);
    H5Gclose(group);
  });
  expect_refused("has density 0.5 but stores " + std::to_string(nnz) + " of 235200 entries");
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, kSparseWeight.c_str(), H5P_DEFAULT);
    ASSERT_GE(H5Adelete(group, "density"), 0);
    H5Gclose(group);
  });
  expect_refused("has no 'density' attribute");
}

TEST_F(SparseFileErrorTest, IndicesThatAreNotIntegers) {
  edit_file(path, [&](hid_t file) {
    replace_dataset(file, kSparseWeight + "/indices_delta", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>(static_cast<size_t>(nnz), 1.0f));
  });
  expect_refused("has an indices_delta dataset that is not integers (4-byte float)");
}

TEST_F(SparseFileErrorTest, MissingIndptr) {
  edit_file(path, [](hid_t file) {
    ASSERT_GE(H5Ldelete(file, (kSparseWeight + "/indptr").c_str(), H5P_DEFAULT), 0);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "/tensors/0.weight/indptr is missing");
}

TEST_F(SparseFileErrorTest, FlippedBitInIndicesFailsChecksum) {
  flip_bit_in_first_chunk(path, kSparseWeight + "/indices_delta", 0x10);
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight': cannot read its indices_delta; the data is corrupt");
}

TEST_F(ModelFileErrorTest, DenseValuesLabelledSparse) {
  // What a pre-sparse reader refused as "cannot read yet" is now checked as CSR.
  save_tiny();
  edit_file(path, [](hid_t file) {
    hid_t group = H5Gopen2(file, "/tensors/4.weight", H5P_DEFAULT);
    replace_string_attr(group, "layout", "sparse");
    H5Gclose(group);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '4.weight' (sparse) has a values dataset of shape [3, 32], expected "
                     "one dimension");
}

TEST_F(ModelFileErrorTest, MaskThatDisagreesWithTheValues) {
  Model model = mlp_model();
  prune_rows(model, "0.weight", 0.5);
  // Two kept, non-zero weights now marked pruned.
  const at::Tensor kept = model.masks["0.weight"].reshape({-1}).nonzero().reshape({-1});
  model.masks["0.weight"].view({-1})[kept[0].item<int64_t>()] = false;
  model.masks["0.weight"].view({-1})[kept[5].item<int64_t>()] = false;
  ASSERT_THROWS_WITH(save_groups(model, path), ModelError,
                     "tensor '0.weight' has 2 non-zero values where its pruning mask is false");
  model = mlp_model();
  model.masks["0.weight"] = at::ones({2}, at::kBool);
  ASSERT_THROWS_WITH(save_groups(model, path), ModelError,
                     "pruning mask of tensor '0.weight' has shape [2], expected [300, 784]");
  model = mlp_model();
  model.masks["9.weight"] = at::ones({2}, at::kBool);
  ASSERT_THROWS_WITH(save_groups(model, path), ModelError,
                     "pruning mask '9.weight' is not a tensor of the architecture");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST_F(ModelFileTest, HistoryEntriesStayOneLineEach) {
  Model model = tiny_model();
  model.history = {"{\"stage\": \"a\",\n \"note\": \"line\\nbreak\"}", "{}"};
  const std::string path = dir.file("h.h5");
  save_groups(model, path);
  // The raw line break between tokens became a space; the escaped one inside the string stays.
  EXPECT_EQ(load_model(path).history,
            (std::vector<std::string>{"{\"stage\": \"a\",  \"note\": \"line\\nbreak\"}", "{}"}));
}

TEST_F(ModelFileErrorTest, CorruptHistoryIsReported) {
  Model model = tiny_model();
  model.history.assign(20, R"({"stage":"train","metrics":{"accuracy":0.5}})");
  save_groups(model, path);
  flip_bit_in_first_chunk(path, "/history/entries", 0x08);
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "cannot read /history/entries; the data is corrupt");
}

// --- Older format versions -------------------------------------------------------------------

// Golden files written by format version 1 (variable-length strings, absolute CSR column
// indices), kept in tests/data/format-v1/ as docs/format.md §11 promises: every later reader
// must load them to the same values.
struct GoldenTensor {
  const char* name;
  int64_t numel;
  double sum, abs_sum;
  bool masked;
};

// The same two models written by format v1 (variable-length strings, absolute CSR columns),
// v2 (the groups container) and v3 (the packed container): files of every version ever
// written must keep loading to the same tensors.
class GoldenFileTest : public ::testing::TestWithParam<int> {};

TEST_P(GoldenFileTest, LoadsToTheSameTensors) {
  const int version = GetParam();
  for (const auto& [file, tensors] :
       {std::pair<std::string, std::vector<GoldenTensor>>{
            "mlp_sparse.h5",  // 0.weight: CSR, one stored value, pruned
            {{"0.weight", 12, 0.0349225402, 0.0349225402, true},
             {"0.bias", 3, -0.561751425, 0.561751425, false},
             {"2.weight", 6, 0.13082993, 2.34756762, false},
             {"2.bias", 2, 0.196723081, 0.397242092, false}}},
        {"tiny_dense.h5",  // conv, batchnorm, linear; a history entry and a recipe
         {{"0.weight", 18, -0.494731497, 2.43911556, false},
          {"0.bias", 2, 0.0518040955, 0.5747554, false},
          {"1.weight", 2, 2, 2, false},
          {"1.bias", 2, 0, 0, false},
          {"1.running_mean", 2, 0, 0, false},
          {"1.running_var", 2, 2, 2, false},
          {"4.weight", 96, 0.329766568, 7.84791352, false},
          {"4.bias", 3, -0.277697213, 0.277697213, false}}}}) {
    SCOPED_TRACE(file);
    const std::string path =
        std::string(MCOMPRESS_TEST_DATA_DIR) + "/format-v" + std::to_string(version) + "/" + file;
    const Model model = load_model(path);
    EXPECT_EQ(inspect_model_file(path).format_version, version);
    EXPECT_EQ(model.seed, 7u);
    ASSERT_EQ(model.tensor_infos().size(), tensors.size());
    for (const GoldenTensor& golden : tensors) {
      SCOPED_TRACE(golden.name);
      const at::Tensor t = model.tensor(golden.name).to(at::kDouble);
      EXPECT_EQ(t.numel(), golden.numel);
      // The sums were printed with 9 significant digits from the float32 values.
      EXPECT_NEAR(t.sum().item<double>(), golden.sum, 1e-8);
      EXPECT_NEAR(t.abs().sum().item<double>(), golden.abs_sum, 1e-8);
      EXPECT_EQ(model.masks.count(golden.name) != 0, golden.masked);
    }
    if (file == "tiny_dense.h5") {  // v1: variable-length strings
      EXPECT_EQ(model.history,
                std::vector<std::string>{R"({"stage":"train","metrics":{"accuracy":0.5}})"});
      EXPECT_EQ(model.recipe, "model: tiny\nstages: []\n");
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Versions, GoldenFileTest, ::testing::Values(1, 2, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "v" + std::to_string(info.param);
                         });

// --- The codebook encoding (§4.8) ----------------------------------------------------------

// Reads a whole uint8 dataset, checked to be stored as §4.5 says.
std::vector<uint8_t> read_bytes_dataset(hid_t group, const char* name) {
  hid_t dset = H5Dopen2(group, name, H5P_DEFAULT);
  EXPECT_GE(dset, 0) << name;
  hid_t type = H5Dget_type(dset);
  EXPECT_TRUE(H5Tequal(type, H5T_STD_U8LE) > 0) << name;
  H5Tclose(type);
  EXPECT_EQ(filters_of(dset), kFilters) << name;
  H5Dclose(dset);
  return read_dataset<uint8_t>(group, name, H5T_NATIVE_UINT8);
}

// Code i of `bits` bits from the packed stream, most significant bit first (§4.8).
unsigned packed_code(const std::vector<uint8_t>& packed, int64_t i, int64_t bits) {
  unsigned code = 0;
  for (int64_t b = 0; b < bits; ++b) {
    const int64_t bit = i * bits + b;
    code = (code << 1) | ((packed[static_cast<size_t>(bit / 8)] >> (7 - bit % 8)) & 1u);
  }
  return code;
}

TEST_F(ModelFileTest, RawHdf5ReaderSeesCodebookLayout) {
  const Model model = codebook_mlp();
  const std::string path = dir.file("cb.h5");
  save_groups(model, path);
  hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  EXPECT_EQ(read_string_attr(file, "quant_mode"), "codebook");
  for (const auto& [name, bits, layout] :
       {std::tuple<std::string, int64_t, std::string>{"0.weight", 2, "sparse"},
        {"2.weight", 3, "dense"}}) {
    SCOPED_TRACE(name);
    const QuantizedTensor& q = model.quant.tensors.at(name);
    hid_t group = H5Gopen2(file, ("/tensors/" + name).c_str(), H5P_DEFAULT);
    ASSERT_GE(group, 0);
    EXPECT_EQ(read_string_attr(group, "encoding"), "codebook");
    EXPECT_EQ(read_string_attr(group, "layout"), layout);
    hid_t attr = H5Aopen(group, "bits", H5P_DEFAULT);
    hid_t attr_type = H5Aget_type(attr);
    EXPECT_TRUE(H5Tequal(attr_type, H5T_STD_I32LE) > 0);
    int32_t stored_bits = 0;
    ASSERT_GE(H5Aread(attr, H5T_NATIVE_INT32, &stored_bits), 0);
    EXPECT_EQ(stored_bits, bits);
    H5Tclose(attr_type);
    H5Aclose(attr);
    EXPECT_EQ(H5Lexists(group, "values", H5P_DEFAULT), 0);

    hid_t dset = H5Dopen2(group, "codebook", H5P_DEFAULT);
    hid_t type = H5Dget_type(dset);
    EXPECT_TRUE(H5Tequal(type, H5T_IEEE_F32LE) > 0);
    H5Tclose(type);
    std::vector<float> book(static_cast<size_t>(q.codebook.numel()));
    ASSERT_GE(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, book.data()), 0);
    H5Dclose(dset);
    EXPECT_TRUE(at::tensor(book).equal(q.codebook));

    // The codes of the stored entries, packed: all of them (dense), or those whose shared
    // value is not the 0.0 of code 0, in row-major order (sparse).
    const at::Tensor codes = q.values.reshape({-1}).to(at::kLong);
    const at::Tensor stored = layout == "dense" ? codes : codes.masked_select(codes.ne(0));
    const std::vector<uint8_t> packed = read_bytes_dataset(group, "codes");
    ASSERT_EQ(static_cast<int64_t>(packed.size()), (stored.numel() * bits + 7) / 8);
    for (int64_t i = 0; i < stored.numel(); ++i) {
      ASSERT_EQ(packed_code(packed, i, bits), stored[i].item<int64_t>()) << i;
    }
    EXPECT_EQ(H5Lexists(group, "indices_delta", H5P_DEFAULT) > 0, layout == "sparse");
    H5Gclose(group);
  }
  EXPECT_EQ(H5Fclose(file), 0);

  const Model loaded = load_model(path);
  EXPECT_EQ(loaded.quant.mode, "codebook");
  for (const std::string name : {"0.weight", "2.weight"}) {
    const QuantizedTensor& q = loaded.quant.tensors.at(name);
    EXPECT_EQ(q.bits, model.quant.tensors.at(name).bits);
    EXPECT_TRUE(q.values.equal(model.quant.tensors.at(name).values)) << name;
    EXPECT_TRUE(q.codebook.equal(model.quant.tensors.at(name).codebook)) << name;
    EXPECT_TRUE(bit_identical(loaded.tensor(name), model.tensor(name))) << name;
  }
  EXPECT_TRUE(loaded.masks.at("0.weight").equal(model.masks.at("0.weight")));
  const auto summary = inspect_model_file(path);
  EXPECT_EQ(stored(summary, "0.weight").encoding, "codebook");
  EXPECT_EQ(stored(summary, "0.weight").nonzeros, model.masks.at("0.weight").sum().item<int64_t>());
  EXPECT_EQ(stored(summary, "2.weight").nonzeros, 64 * 300);
}

TEST_F(ModelFileTest, SavingRefusesAnInconsistentCodebook) {
  Model model = codebook_mlp();
  model.quant.tensors["2.weight"].bits = 9;
  ASSERT_THROWS_WITH(save_groups(model, dir.file("a.h5")), ModelError,
                     "tensor '2.weight' (codebook) has bits 9, expected 1 to 8");
  model = codebook_mlp();
  model.quant.tensors["2.weight"].codebook = at::zeros({3});
  ASSERT_THROWS_WITH(save_groups(model, dir.file("a.h5")), ModelError,
                     "tensor '2.weight' (codebook) has code 7 but only 3 shared values");
  model = codebook_mlp();
  model.quant.tensors["2.weight"].bits = 2;  // 8 shared values need 3 bits
  ASSERT_THROWS_WITH(save_groups(model, dir.file("a.h5")), ModelError,
                     "has 8 shared values, expected 1 to 4 (2^bits, bits 2)");
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

class CodebookFileErrorTest : public ModelFileErrorTest {
 protected:
  CodebookFileErrorTest() { save_groups(codebook_mlp(), path); }
  void edit_group(const std::string& tensor, const std::function<void(hid_t)>& edit) {
    edit_file(path, [&](hid_t file) {
      hid_t group = H5Gopen2(file, ("/tensors/" + tensor).c_str(), H5P_DEFAULT);
      ASSERT_GE(group, 0);
      edit(group);
      H5Gclose(group);
    });
  }
  void expect_refused(const std::string& message) {
    ASSERT_THROWS_WITH(load_model(path), FormatError, message);
    ASSERT_THROWS_WITH(inspect_model_file(path), FormatError, message);
  }
};

TEST_F(CodebookFileErrorTest, BitsOutOfRangeOrMissing) {
  edit_group("2.weight", [](hid_t group) {
    hid_t attr = H5Aopen(group, "bits", H5P_DEFAULT);
    const int32_t zero = 0;
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT32, &zero), 0);
    H5Aclose(attr);
  });
  expect_refused("tensor '2.weight' (codebook) has bits 0, expected 1 to 8");
  edit_group("2.weight", [](hid_t group) { ASSERT_GE(H5Adelete(group, "bits"), 0); });
  expect_refused("tensor '2.weight' (codebook) has no 'bits' attribute");
}

TEST_F(CodebookFileErrorTest, CodesOfTheWrongLengthOrType) {
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/2.weight/codes", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                    std::vector<uint8_t>(100, 0));
  });
  expect_refused(
      "tensor '2.weight' (codebook) has a codes dataset of shape [100], expected [7200] "
      "(19200 codes of 3 bits, packed)");
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/2.weight/codes", H5T_STD_I16LE, H5T_NATIVE_INT16,
                    std::vector<int16_t>(7200, 0));
  });
  expect_refused("has codes that are not 8-bit unsigned integers (2-byte integer)");
}

TEST_F(CodebookFileErrorTest, CodeBeyondTheCodebookOrBadSharedValue) {
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/2.weight/codebook", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>{0.1f, 0.2f});
  });
  expect_refused("tensor '2.weight' (codebook) has code 7 but only 2 shared values");
  std::vector<float> book(8, 0.5f);
  book[3] = std::numeric_limits<float>::quiet_NaN();
  edit_file(path, [&](hid_t file) {
    replace_dataset(file, "/tensors/2.weight/codebook", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, book);
  });
  expect_refused(
      "tensor '2.weight' (codebook) has shared value nan at index 3, expected finite values");
}

TEST_F(CodebookFileErrorTest, SparseCodebookWithoutZero) {
  edit_file(path, [](hid_t file) {
    replace_dataset(file, "/tensors/0.weight/codebook", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>{0.125f, -0.5f, 0.25f, 1.0f});
  });
  expect_refused("tensor '0.weight' (codebook, sparse) has no +0.0 among its shared values");
}

TEST_F(CodebookFileErrorTest, FlippedBitInCodesFailsChecksum) {
  flip_bit_in_first_chunk(path, "/tensors/0.weight/codes", 0x04);
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight': cannot read its codes; the data is corrupt");
}

}  // namespace
}  // namespace mcompress
