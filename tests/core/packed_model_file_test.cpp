// The packed container (format v3, the default; docs/format.md §9): round trips of every
// encoding and layout, the raw layout as the spec describes it (read with the HDF5 C API, zlib
// and nlohmann::json, not ModelFile), its size against the groups container, and every error
// a corrupt manifest or blob gives.

#include <ATen/ATen.h>
#include <hdf5.h>
#include <zlib.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "model_fixtures.h"
#include "raw_hdf5.h"
#include "test_support.h"

namespace mcompress {
namespace {

using testing::edit_file;
using testing::flip_bit_in_first_chunk;
using testing::read_bytes;
using testing::read_dataset;
using testing::replace_dataset;
using testing::TempDir;
using testing::write_bytes;

// --- Raw access to /manifest and /blob ------------------------------------------------------

nlohmann::json read_manifest(const std::string& path) {
  nlohmann::json manifest;
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  EXPECT_GE(file, 0) << path;
  const std::vector<uint8_t> bytes = read_dataset<uint8_t>(file, "manifest", H5T_NATIVE_UINT8);
  H5Fclose(file);
  return nlohmann::json::parse(bytes.begin(), bytes.end());
}

void edit_manifest(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  nlohmann::json manifest = read_manifest(path);
  edit(manifest);
  const std::string text = manifest.dump();
  edit_file(path, [&](hid_t file) {
    replace_dataset<uint8_t>(file, "manifest", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                             std::vector<uint8_t>(text.begin(), text.end()));
  });
}

nlohmann::json& tensor_entry(nlohmann::json& manifest, const std::string& name) {
  for (nlohmann::json& entry : manifest["tensors"]) {
    if (entry["name"] == name) return entry;
  }
  throw std::runtime_error("no tensor " + name);
}

// An array's elements as the spec defines them: its bytes, inflated, un-shuffled.
std::vector<uint8_t> decode(const std::vector<uint8_t>& blob, const nlohmann::json& d,
                            size_t itemsize) {
  const auto offset = d["offset"].get<size_t>();
  const auto size = d["size"].get<size_t>();
  std::vector<uint8_t> raw(blob.begin() + static_cast<long>(offset),
                           blob.begin() + static_cast<long>(offset + size));
  if (d["codec"] == "raw") return raw;
  size_t count = itemsize;
  for (int64_t dim : d["shape"]) count *= static_cast<size_t>(dim);
  std::vector<uint8_t> out(count);
  uLongf out_size = count;
  EXPECT_EQ(uncompress(out.data(), &out_size, raw.data(), raw.size()), Z_OK);
  EXPECT_EQ(out_size, count);
  if (d["codec"] != "shuffle-zlib") return out;
  std::vector<uint8_t> plain(count);
  const size_t n = count / itemsize;
  for (size_t i = 0; i < n; ++i) {
    for (size_t b = 0; b < itemsize; ++b) plain[i * itemsize + b] = out[b * n + i];
  }
  return plain;
}

void expect_same_model(const Model& a, const Model& b) {
  for (const TensorInfo& info : a.tensor_infos()) {
    EXPECT_TRUE(bit_identical(a.tensor(info.name), b.tensor(info.name))) << info.name;
  }
  ASSERT_EQ(a.quant.tensors.size(), b.quant.tensors.size());
  for (const auto& [name, q] : a.quant.tensors) {
    const QuantizedTensor& r = b.quant.tensors.at(name);
    EXPECT_EQ(q.encoding, r.encoding) << name;
    EXPECT_TRUE(bit_identical(q.values, r.values)) << name;
    if (q.encoding == Encoding::kInt8) {
      EXPECT_TRUE(bit_identical(q.scale, r.scale)) << name;
      EXPECT_TRUE(bit_identical(q.zero_point, r.zero_point)) << name;
      EXPECT_EQ(q.axis, r.axis) << name;
    }
    if (q.encoding == Encoding::kCodebook) {
      EXPECT_TRUE(bit_identical(q.codebook, r.codebook)) << name;
      EXPECT_EQ(q.bits, r.bits) << name;
    }
  }
  ASSERT_EQ(a.masks.size(), b.masks.size());
  for (const auto& [name, mask] : a.masks) {
    EXPECT_TRUE(at::equal(mask.to(at::kBool), b.masks.at(name).to(at::kBool))) << name;
  }
  EXPECT_EQ(a.quant.mode, b.quant.mode);
  ASSERT_EQ(a.quant.activations.size(), b.quant.activations.size());
  for (const auto& [key, params] : a.quant.activations) {
    const ActivationQParams& r = b.quant.activations.at(key);
    EXPECT_EQ(params.scale, r.scale) << key;  // exact: JSON numbers round-trip doubles
    EXPECT_EQ(params.zero_point, r.zero_point) << key;
    EXPECT_EQ(params.observer, r.observer) << key;
  }
  EXPECT_EQ(a.history, b.history);
  EXPECT_EQ(a.recipe, b.recipe);
  EXPECT_EQ(a.seed, b.seed);
}

// Every encoding and both layouts: fp32 (tiny), int8 per channel/per tensor, fp16, bf16 and
// activations (quantized), sparse in each encoding, codebook dense and sparse.
std::vector<std::pair<std::string, Model>> every_variant() {
  std::vector<std::pair<std::string, Model>> out;
  out.emplace_back("tiny", tiny_model());
  out.emplace_back("quantized", quantized_model());
  for (const char* encoding : {"fp32", "fp16", "bf16", "int8", "int8-affine"})
    out.emplace_back(std::string("sparse-") + encoding, sparse_mlp(encoding));
  out.emplace_back("codebook", codebook_mlp());
  out.back().second.history = {R"({"stage":"quantize"})"};
  out.back().second.recipe = "stages: [quantize]\n";
  out.back().second.seed = 12345678901234ull;
  return out;
}

class PackedModelFileTest : public ::testing::Test {
 protected:
  TempDir dir;
};

TEST_F(PackedModelFileTest, RoundTripsEveryEncodingAndLayoutBitIdentical) {
  for (const auto& [label, model] : every_variant()) {
    SCOPED_TRACE(label);
    const std::string packed = dir.file(label + ".h5");
    save_model(model, packed);
    const Model loaded = load_model(packed);
    expect_same_model(model, loaded);
    // The same model through the groups container loads to the same thing.
    SaveOptions groups;
    groups.container = ModelContainer::kGroups;
    save_model(model, dir.file(label + "-groups.h5"), groups);
    expect_same_model(load_model(dir.file(label + "-groups.h5")), loaded);
    // Saving what was loaded gives the same bytes (nothing lost, nothing time-stamped).
    save_model(loaded, dir.file(label + "-again.h5"));
    EXPECT_EQ(read_bytes(packed), read_bytes(dir.file(label + "-again.h5")));
  }
}

TEST_F(PackedModelFileTest, SameModelGivesSameBytes) {
  save_model(codebook_mlp(), dir.file("a.h5"));
  save_model(codebook_mlp(), dir.file("b.h5"));
  EXPECT_EQ(read_bytes(dir.file("a.h5")), read_bytes(dir.file("b.h5")));
}

TEST_F(PackedModelFileTest, RawLayoutIsWhatTheSpecSays) {
  Model model = sparse_mlp("int8");
  model.recipe = "seed: 3\n";
  model.history = {R"({"stage":"prune"})", R"({"stage":"quantize"})"};
  const std::string path = dir.file("m.h5");
  save_model(model, path);

  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  ASSERT_GE(file, 0);
  // Exactly three datasets at the root, no groups (§9.1).
  H5G_info_t info;
  ASSERT_GE(H5Gget_info(file, &info), 0);
  EXPECT_EQ(info.nlinks, 3u);
  for (const char* name : {"manifest", "blob", "history"}) {
    H5O_info_t object;
    ASSERT_GE(H5Oget_info_by_name(file, name, &object, H5P_DEFAULT), 0) << name;
    EXPECT_EQ(object.type, H5O_TYPE_DATASET) << name;
  }
  // §9.1: deflate then Fletcher-32 on the JSON, Fletcher-32 alone on the blob.
  const auto filters = [&](const char* name) {
    const hid_t dset = H5Dopen2(file, name, H5P_DEFAULT);
    const std::vector<H5Z_filter_t> out = testing::filters_of(dset);
    H5Dclose(dset);
    return out;
  };
  const std::vector<H5Z_filter_t> deflated = {H5Z_FILTER_DEFLATE, H5Z_FILTER_FLETCHER32};
  EXPECT_EQ(filters("manifest"), deflated);
  EXPECT_EQ(filters("history"), deflated);
  EXPECT_EQ(filters("blob"), std::vector<H5Z_filter_t>{H5Z_FILTER_FLETCHER32});
  int32_t version = 0;
  const hid_t attr = H5Aopen(file, "format_version", H5P_DEFAULT);
  ASSERT_GE(H5Aread(attr, H5T_NATIVE_INT32, &version), 0);
  H5Aclose(attr);
  EXPECT_EQ(version, 3);
  EXPECT_GT(H5Aexists(file, "recipe"), 0);
  const std::vector<uint8_t> history = read_dataset<uint8_t>(file, "history", H5T_NATIVE_UINT8);
  EXPECT_EQ(std::string(history.begin(), history.end()),
            "{\"stage\":\"prune\"}\n{\"stage\":\"quantize\"}\n");
  const std::vector<uint8_t> blob = read_dataset<uint8_t>(file, "blob", H5T_NATIVE_UINT8);
  H5Fclose(file);

  // Tensors in architecture order; each array decodes to the tensor's own bytes.
  const nlohmann::json manifest = read_manifest(path);
  std::vector<std::string> names;
  for (const nlohmann::json& entry : manifest["tensors"]) names.push_back(entry["name"]);
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "4.weight",
                                             "4.bias"}));
  const nlohmann::json& w = manifest["tensors"][0];
  EXPECT_EQ(w["encoding"], "int8");
  EXPECT_EQ(w["layout"], "sparse");
  EXPECT_EQ(w["axis"], 0);
  EXPECT_EQ(w["pruned"], true);
  EXPECT_FALSE(w.contains("density"));
  const QuantizedTensor& q = model.quant.tensors.at("0.weight");
  const at::Tensor keep = q.values.ne(0).reshape({-1});
  const at::Tensor stored = q.values.reshape({-1}).masked_select(keep).contiguous();
  const nlohmann::json& values = w["arrays"]["values"];
  EXPECT_EQ(values["dtype"], "int8");
  EXPECT_EQ(values["codec"], "zlib");
  const std::vector<uint8_t> decoded = decode(blob, values, 1);
  ASSERT_EQ(static_cast<int64_t>(decoded.size()), stored.numel());
  EXPECT_EQ(std::memcmp(decoded.data(), stored.data_ptr(), decoded.size()), 0);
  const nlohmann::json& scale = w["arrays"]["scale"];
  EXPECT_EQ(scale["dtype"], "float32");
  EXPECT_EQ(scale["codec"], "shuffle-zlib");
  const std::vector<uint8_t> scales = decode(blob, scale, 4);
  EXPECT_EQ(std::memcmp(scales.data(), q.scale.data_ptr(), scales.size()), 0);
  // Row-delta columns in the smallest type: 784 columns at 5% density fit a byte or two.
  const std::string index_dtype = w["arrays"]["indices_delta"]["dtype"];
  EXPECT_TRUE(index_dtype == "uint8" || index_dtype == "uint16") << index_dtype;
  // An fp32 dense tensor (2.weight) decodes to its float32 bytes.
  const nlohmann::json& dense = tensor_entry(const_cast<nlohmann::json&>(manifest), "2.weight");
  EXPECT_EQ(dense["layout"], "dense");
  const std::vector<uint8_t> floats = decode(blob, dense["arrays"]["values"], 4);
  EXPECT_EQ(std::memcmp(floats.data(), model.tensor("2.weight").data_ptr(), floats.size()), 0);
}

// The reason for the container: a small compressed model is no longer mostly object headers.
TEST_F(PackedModelFileTest, PrunedInt8MlpIsMuchSmallerThanInGroups) {
  const Model model = sparse_mlp("int8");
  SaveOptions groups;
  groups.container = ModelContainer::kGroups;
  save_model(model, dir.file("groups.h5"), groups);
  save_model(model, dir.file("packed.h5"));
  const auto groups_bytes = static_cast<double>(read_bytes(dir.file("groups.h5")).size());
  const auto packed_bytes = static_cast<double>(read_bytes(dir.file("packed.h5")).size());
  // 6 tensors: ~4 KB of object headers in groups, ~1.5 KB packed (measured 2.5 KB apart).
  EXPECT_LT(packed_bytes, groups_bytes - 1500.0) << packed_bytes << " vs " << groups_bytes;
}

TEST_F(PackedModelFileTest, InspectReportsContainerAndArrayBytes) {
  const std::string path = dir.file("m.h5");
  save_model(sparse_mlp("int8"), path);
  const ModelFileSummary summary = inspect_model_file(path);
  EXPECT_EQ(summary.format_version, 3);
  EXPECT_EQ(summary.container, "packed");
  const nlohmann::json manifest = read_manifest(path);
  int64_t expected = 0;
  for (const auto& [name, d] : manifest["tensors"][0]["arrays"].items())
    expected += d["size"].get<int64_t>();
  ASSERT_EQ(summary.tensors.front().name, "0.weight");
  EXPECT_EQ(summary.tensors.front().bytes_on_disk, expected);
  EXPECT_EQ(summary.tensors.front().layout, "sparse");
  EXPECT_EQ(summary.tensors.front().nonzeros,
            sparse_mlp("int8").masks.at("0.weight").sum().item<int64_t>());
}

// --- Errors: each names the file, the tensor and the array ------------------------------------

class PackedFileErrorTest : public PackedModelFileTest {
 protected:
  void SetUp() override { save_model(sparse_mlp("int8"), path); }
  const std::string path = dir.file("m.h5");
};

TEST_F(PackedFileErrorTest, MissingManifest) {
  edit_file(path, [](hid_t file) { ASSERT_GE(H5Ldelete(file, "manifest", H5P_DEFAULT), 0); });
  ASSERT_THROWS_WITH(load_model(path), FormatError, path + ": the dataset /manifest is missing");
}

TEST_F(PackedFileErrorTest, ManifestThatIsNotJson) {
  edit_file(path, [](hid_t file) {
    replace_dataset<uint8_t>(file, "manifest", H5T_STD_U8LE, H5T_NATIVE_UINT8, {'{', '"', 't'});
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "/manifest is not valid JSON");
  ASSERT_THROWS_WITH(inspect_model_file(path), FormatError, "/manifest is not valid JSON");
}

TEST_F(PackedFileErrorTest, ManifestWithoutTensors) {
  edit_manifest(path, [](nlohmann::json& m) { m["tensors"] = 3; });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "a JSON object with a 'tensors' array");
}

TEST_F(PackedFileErrorTest, MissingAndDuplicateAndStrayTensors) {
  edit_manifest(path, [](nlohmann::json& m) { m["tensors"].erase(1); });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "missing tensor '0.bias' ([300])");
  edit_manifest(path, [](nlohmann::json& m) { m["tensors"].push_back(m["tensors"][0]); });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "lists tensor '0.weight' twice");
  edit_manifest(path, [](nlohmann::json& m) {
    m["tensors"].erase(m["tensors"].size() - 1);
    m["tensors"].push_back(m["tensors"][0]);
    m["tensors"].back()["name"] = "9.weight";
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '9.weight' is stored in the file but is not a tensor");
}

TEST_F(PackedFileErrorTest, WrongKeyTypes) {
  edit_manifest(path, [](nlohmann::json& m) { tensor_entry(m, "0.weight")["encoding"] = 8; });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight' of /manifest: 'encoding' must be a string");
  edit_manifest(path, [](nlohmann::json& m) { tensor_entry(m, "0.weight")["encoding"] = "fp8"; });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "tensor '0.weight' has unknown encoding 'fp8'");
}

TEST_F(PackedFileErrorTest, UnknownDtypeAndCodec) {
  edit_manifest(path, [](nlohmann::json& m) {
    tensor_entry(m, "0.weight")["arrays"]["values"]["dtype"] = "float8";
  });
  ASSERT_THROWS_WITH(
      load_model(path), FormatError,
      "tensor '0.weight': array 'values' has unknown dtype 'float8'; accepted: float32");
  edit_manifest(path, [](nlohmann::json& m) {
    auto& values = tensor_entry(m, "0.weight")["arrays"]["values"];
    values["dtype"] = "int8";
    values["codec"] = "lz4";
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "array 'values' has unknown codec 'lz4'; accepted: raw, zlib, shuffle-zlib");
}

TEST_F(PackedFileErrorTest, ValuesOfTheWrongDtype) {
  edit_manifest(path, [](nlohmann::json& m) {
    tensor_entry(m, "2.weight")["arrays"]["values"]["dtype"] = "int32";
  });
  ASSERT_THROWS_WITH(
      load_model(path), FormatError,
      "tensor '2.weight' has encoding fp32 but its values are not 32-bit floats (int32)");
}

TEST_F(PackedFileErrorTest, RangeOutsideTheBlob) {
  edit_manifest(path, [](nlohmann::json& m) {
    tensor_entry(m, "4.bias")["arrays"]["values"]["offset"] = 1u << 30;
  });
  ASSERT_THROWS_WITH(
      load_model(path), FormatError,
      "tensor '4.bias': array 'values' cannot be read: its bytes (offset 1073741824");
  ASSERT_THROWS_WITH(load_model(path), FormatError, "lie outside the blob");
}

TEST_F(PackedFileErrorTest, ShapeThatDisagreesWithTheBytes) {
  edit_manifest(path, [](nlohmann::json& m) {
    tensor_entry(m, "2.weight")["arrays"]["values"]["shape"] = {64, 301};
  });
  ASSERT_THROWS_WITH(
      load_model(path), FormatError,
      "tensor '2.weight' has a values dataset of shape [64, 301], expected [64, 300]");
  edit_manifest(path, [](nlohmann::json& m) {
    auto& values = tensor_entry(m, "0.weight")["arrays"]["values"];
    values["shape"] = {values["shape"][0].get<int64_t>() + 1};
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "tensor '0.weight'");
  // A shape no stream of its size can hold is refused before anything is allocated for it.
  edit_manifest(path, [](nlohmann::json& m) {
    tensor_entry(m, "0.weight")["arrays"]["values"]["shape"] = {int64_t{1} << 50};
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "array 'values' cannot be read: its shape and dtype claim 1125899906842624 "
                     "bytes, more than its");
}

TEST_F(PackedFileErrorTest, CorruptZlibStreamFailsItsChecksum) {
  const nlohmann::json manifest = read_manifest(path);
  const nlohmann::json& values = manifest["tensors"][0]["arrays"]["values"];
  ASSERT_EQ(values["codec"], "zlib");
  // Rewrite the blob with one byte of the stream changed, so /blob's own Fletcher-32 passes
  // and only the stream's Adler-32 can notice.
  edit_file(path, [&](hid_t file) {
    std::vector<uint8_t> blob = read_dataset<uint8_t>(file, "blob", H5T_NATIVE_UINT8);
    blob[values["offset"].get<size_t>() + values["size"].get<size_t>() / 2] ^= 0x10;
    replace_dataset<uint8_t>(file, "blob", H5T_STD_U8LE, H5T_NATIVE_UINT8, blob);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "tensor '0.weight': array 'values' cannot be read: its zlib stream");
}

TEST_F(PackedFileErrorTest, FlippedBitInTheBlobFailsFletcher32) {
  flip_bit_in_first_chunk(path, "/blob", 0x01);
  ASSERT_THROWS_WITH(
      load_model(path), FormatError,
      path + ": cannot read /blob; the data is corrupt (Fletcher-32 checksum mismatch)");
}

TEST_F(PackedFileErrorTest, ActivationsOfTheWrongShape) {
  SaveOptions overwrite;
  overwrite.overwrite = true;
  save_model(quantized_model(), path, overwrite);
  edit_manifest(path, [](nlohmann::json& m) { m["activations"]["input"]["zero_point"] = 300; });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "activation 'input' has zero_point 300");
  edit_manifest(path, [](nlohmann::json& m) { m["activations"]["input"].erase("scale"); });
  ASSERT_THROWS_WITH(load_model(path), FormatError, "activation 'input' has no 'scale' number");
}

TEST_F(PackedFileErrorTest, UnknownKeysAreIgnored) {
  edit_manifest(path, [](nlohmann::json& m) {
    m["x.example.note"] = "added by another tool";
    tensor_entry(m, "0.weight")["x.example.origin"] = 1;
    tensor_entry(m, "0.weight")["arrays"]["values"]["x.example.hash"] = "abc";
  });
  expect_same_model(sparse_mlp("int8"), load_model(path));
}

}  // namespace
}  // namespace mcompress
