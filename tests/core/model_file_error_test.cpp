// The model file's error paths, each with its message: missing or foreign files, atomic-write
// failures, and broken tensors, quantization state and history in groups-container files.

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
using testing::flip_bit_in_first_chunk;
using testing::read_bytes;
using testing::replace_dataset;
using testing::write_bytes;

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
    int32_t v5 = 5;
    ASSERT_GE(H5Awrite(attr, H5T_NATIVE_INT32, &v5), 0);
    H5Aclose(attr);
  });
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     path +
                         ": this mcompress supports model format v4 or below, but the file has v5; "
                         "it was written by a newer mcompress");
  ASSERT_THROWS_WITH(inspect_model_file(path), FormatError, "supports model format v4 or below");
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

TEST_F(ModelFileErrorTest, CorruptHistoryIsReported) {
  Model model = tiny_model();
  model.history.assign(20, R"({"stage":"train","metrics":{"accuracy":0.5}})");
  save_groups(model, path);
  flip_bit_in_first_chunk(path, "/history/entries", 0x08);
  ASSERT_THROWS_WITH(load_model(path), FormatError,
                     "cannot read /history/entries; the data is corrupt");
}

}  // namespace
}  // namespace mcompress
