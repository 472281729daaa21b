// The groups container (format v2): round trips, atomic/deterministic writes, quantized
// tensors, and what docs/format.md promises of its layout (checked with the raw HDF5 C API, not
// ModelFile). These suites save with the groups container: their suite names say so.

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

#include "groups_container_support.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/version.h"
#include "mcompress/core/zoo.h"
#include "model_fixtures.h"
#include "raw_hdf5.h"
#include "test_support.h"

namespace mcompress {
namespace {

using testing::edit_file;
using testing::filters_of;
using testing::read_bytes;

TEST_F(GroupsContainerTest, RoundTripIsBitIdentical) {
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

TEST_F(GroupsContainerTest, RoundTripsZooModelWithResidualBlocks) {
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

TEST_F(GroupsContainerTest, EmptyHistoryAndRecipeRoundTrip) {
  Model model = Model::initialize(ArchSpec::from_json_text(kTinySpec), 1);
  save_groups(model, dir.file("m.h5"));
  Model loaded = load_model(dir.file("m.h5"));
  EXPECT_TRUE(loaded.history.empty());
  EXPECT_EQ(loaded.recipe, "");
}

TEST_F(GroupsContainerTest, SameModelGivesSameBytes) {
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

TEST_F(GroupsContainerTest, LeavesNoTemporaryFiles) {
  save_groups(tiny_model(), dir.file("m.h5"));
  SaveOptions overwrite;
  overwrite.overwrite = true;
  save_groups(tiny_model(), dir.file("m.h5"), overwrite);
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    names.push_back(entry.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"m.h5"});
}

TEST_F(GroupsContainerTest, OverwriteReplacesFileWhenAsked) {
  const std::string path = dir.file("m.h5");
  save_groups(tiny_model(1), path);
  Model second = tiny_model(2);
  SaveOptions overwrite;
  overwrite.overwrite = true;
  save_groups(second, path, overwrite);
  EXPECT_TRUE(bit_identical(load_model(path).tensor("0.weight"), second.tensor("0.weight")));
}

TEST_F(GroupsContainerTest, LoadingNeverModifiesTheFile) {
  const std::string path = dir.file("m.h5");
  save_groups(tiny_model(), path);
  const std::string before = read_bytes(path);
  const auto mtime = std::filesystem::last_write_time(path);
  load_model(path);
  inspect_model_file(path);
  EXPECT_TRUE(read_bytes(path) == before);
  EXPECT_EQ(std::filesystem::last_write_time(path), mtime);
}

TEST_F(GroupsContainerTest, LoadsFromReadOnlyFile) {
  const std::string path = dir.file("m.h5");
  save_groups(tiny_model(), path);
  std::filesystem::permissions(path, std::filesystem::perms::owner_read);
  EXPECT_NO_THROW(load_model(path));
}

TEST_F(GroupsContainerTest, InspectReportsStorageFacts) {
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

TEST_F(GroupsContainerTest, LargeTensorsSpanSeveralChunks) {
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
TEST_F(GroupsContainerTest, RawHdf5ReaderSeesDocumentedLayout) {
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

  EXPECT_EQ(filters_of(dset), (std::vector<H5Z_filter_t>{H5Z_FILTER_SHUFFLE, H5Z_FILTER_DEFLATE,
                                                         H5Z_FILTER_FLETCHER32}));
  H5Dclose(dset);
  H5Gclose(group);
  EXPECT_EQ(H5Fclose(file), 0);
}

TEST_F(GroupsContainerTest, RoundTripsQuantizedTensorsBitIdentical) {
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

TEST_F(GroupsContainerTest, SameQuantizedModelGivesSameBytes) {
  Model model = quantized_model();
  save_groups(model, dir.file("a.h5"));
  save_groups(model.clone(), dir.file("b.h5"));
  const std::string a = read_bytes(dir.file("a.h5"));
  EXPECT_FALSE(a.empty());
  EXPECT_TRUE(a == read_bytes(dir.file("b.h5")));
}

TEST_F(GroupsContainerTest, InspectShowsSmallerQuantizedTensors) {
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
TEST_F(GroupsContainerTest, RawHdf5ReaderSeesQuantizedLayout) {
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

TEST_F(GroupsContainerTest, IgnoresUnknownAttributes) {
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

TEST_F(GroupsContainerTest, AcceptsFixedLengthStrings) {
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

TEST_F(GroupsContainerTest, HistoryEntriesStayOneLineEach) {
  Model model = tiny_model();
  model.history = {"{\"stage\": \"a\",\n \"note\": \"line\\nbreak\"}", "{}"};
  const std::string path = dir.file("h.h5");
  save_groups(model, path);
  // The raw line break between tokens became a space; the escaped one inside the string stays.
  EXPECT_EQ(load_model(path).history,
            (std::vector<std::string>{"{\"stage\": \"a\",  \"note\": \"line\\nbreak\"}", "{}"}));
}

}  // namespace
}  // namespace mcompress
