// The hostile-input corpus (issue 22, docs/reliability.md "Threats"): inputs crafted as an
// attacker would, one case per finding and path. Each must end like every bad input
// (bad_input_support.h): one "mcompress: error:" line naming the culprit, within 10 s and under
// 1 GiB, nothing leaked from the allocator or LibTorch, no file written or changed, and, for
// the HDF5 cases, nothing read from any other file.

#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "bad_input_support.h"

namespace {

using namespace mcompress::testing::bad_input;
namespace fs = std::filesystem;

// --- Crafting ----------------------------------------------------------------------------------

// `levels` nested JSON (or YAML flow) lists around `leaf`.
std::string nested(size_t levels, const std::string& leaf) {
  return std::string(levels, '[') + leaf + std::string(levels, ']');
}

// A conv model spec whose padding is `padding`, followed by adaptive pooling (finding 1).
std::string conv_spec(const std::string& padding) {
  return R"({"input_shape":[1,28,28],"num_classes":10,"layers":[{"type":"conv2d","out_channels":2,)"
         R"("kernel_size":3,"padding":)" +
         padding +
         R"(},{"type":"adaptive_avgpool2d","output_size":1},{"type":"flatten"},)"
         R"({"type":"linear","out_features":10}]})";
}

// Replaces the root attribute `arch` of the workspace model.
void set_arch(const Workspace& ws, const std::string& arch) {
  edit_file(ws.model, [&](hid_t file) { replace_string_attr(file, "arch", arch); });
}

void unlink_if_present(hid_t file, const std::string& name) {
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0) {
    ASSERT_GE(H5Ldelete(file, name.c_str(), H5P_DEFAULT), 0) << name;
  }
}

// Puts at `name` a uint8 dataset of `size` bytes whose bytes live in the raw file `target`
// (HDF5 "external storage"): reading it would read that other file.
void make_external_dataset(const std::string& path, const std::string& name,
                           const std::string& target, hsize_t size) {
  edit_file(path, [&](hid_t file) {
    unlink_if_present(file, name);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    ASSERT_GE(H5Pset_external(dcpl, target.c_str(), 0, size), 0);
    const hid_t space = H5Screate_simple(1, &size, nullptr);
    const hid_t dset =
        H5Dcreate2(file, name.c_str(), H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ASSERT_GE(dset, 0) << name;
    H5Dclose(dset);
    H5Sclose(space);
    H5Pclose(dcpl);
  });
}

// Puts at `name` an external link to `object` in the HDF5 file `target`.
void make_external_link(const std::string& path, const std::string& name, const std::string& target,
                        const std::string& object) {
  edit_file(path, [&](hid_t file) {
    unlink_if_present(file, name);
    ASSERT_GE(H5Lcreate_external(target.c_str(), object.c_str(), file, name.c_str(), H5P_DEFAULT,
                                 H5P_DEFAULT),
              0);
  });
}

// Puts at `name` a soft link to `object` of the same file.
void make_soft_link(const std::string& path, const std::string& name, const std::string& object) {
  edit_file(path, [&](hid_t file) {
    unlink_if_present(file, name);
    ASSERT_GE(H5Lcreate_soft(object.c_str(), file, name.c_str(), H5P_DEFAULT, H5P_DEFAULT), 0);
  });
}

// Puts at `name` a chunked, compressed dataset of `dims` that is never written: HDF5 returns
// its fill value for every element, from a file of a few KB.
void make_unwritten(const std::string& path, const std::string& name,
                    const std::vector<hsize_t>& dims, hid_t type) {
  edit_file(path, [&](hid_t file) {
    unlink_if_present(file, name);
    std::vector<hsize_t> chunk(dims.size(), 1);
    chunk.back() = std::min<hsize_t>(dims.back(), 1 << 16);
    const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data());
    H5Pset_deflate(dcpl, 4);
    const hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    const hid_t dset = H5Dcreate2(file, name.c_str(), type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    ASSERT_GE(dset, 0) << name;
    H5Dclose(dset);
    H5Sclose(space);
    H5Pclose(dcpl);
  });
}

// An HDF5 x/y data set of `n` 28x28 float images (labels i % 10) with `x_value` everywhere.
std::string write_h5_data(const Workspace& ws, hsize_t n, float x_value) {
  const std::string path = ws.file("data.h5");
  const hid_t file = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  EXPECT_GE(file, 0);
  const std::vector<hsize_t> dims{n, 1, 28, 28};
  std::vector<float> x(n * 28 * 28, 0.5f);
  x[x.size() / 2] = x_value;
  std::vector<int64_t> y(n);
  for (hsize_t i = 0; i < n; ++i) y[i] = static_cast<int64_t>(i % 10);
  const hid_t xs = H5Screate_simple(4, dims.data(), nullptr);
  const hid_t xd = H5Dcreate2(file, "x", H5T_IEEE_F32LE, xs, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(xd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x.data());
  const hid_t ys = H5Screate_simple(1, &n, nullptr);
  const hid_t yd = H5Dcreate2(file, "y", H5T_STD_I64LE, ys, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(yd, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, y.data());
  H5Dclose(xd);
  H5Dclose(yd);
  H5Sclose(xs);
  H5Sclose(ys);
  H5Fclose(file);
  return path;
}

// A gzip file of several members: an IDX header declaring `images` 28x28 images, then
// `members` gzip members of 1 MiB of zeros each (each member ~1 KB: deflate's 1000:1).
void write_gzip_bomb(const std::string& path, uint32_t images, int members) {
  std::string header;
  for (uint32_t v : {0x803u, images, 28u, 28u}) {
    for (int shift = 24; shift >= 0; shift -= 8) header += static_cast<char>((v >> shift) & 0xff);
  }
  gzFile out = gzopen(path.c_str(), "wb9");
  ASSERT_NE(out, nullptr);
  gzwrite(out, header.data(), static_cast<unsigned>(header.size()));
  gzclose(out);
  const std::string zeros(1 << 20, '\0');
  for (int m = 0; m < members; ++m) {
    gzFile more = gzopen(path.c_str(), "ab9");
    gzwrite(more, zeros.data(), static_cast<unsigned>(zeros.size()));
    gzclose(more);
  }
}

// A billion-laughs YAML: ten levels of ten aliases each, 10^10 nodes once expanded.
std::string yaml_bomb() {
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i <= 9; ++i) {
    const std::string prev = "*a" + std::to_string(i - 1);
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) text += (k ? ", " : "") + prev;
    text += "]\n";
  }
  return text;
}

// A recipe with `prefix` before its keys and `stages` as its stage list.
std::string recipe(Workspace& ws, const std::string& prefix, const std::string& stages) {
  write_bytes(ws.file("r.yaml"), prefix + "model: " + ws.model + "\ndata: {path: " + ws.data +
                                     "}\nstages:\n" + stages + "output: " + ws.out + "\n");
  return "compress " + ws.file("r.yaml") + " --check";
}

// The workspace model re-saved with tensor `1.bias` renamed to `name` in the packed manifest
// and the architecture unchanged: the reader then names the unexpected tensor.
std::string model_with_tensor_name(Workspace& ws, const std::string& name) {
  repack(ws.model, [&](nlohmann::json& manifest) {
    for (auto& t : manifest["tensors"]) {
      if (t["name"] == "1.bias") t["name"] = name;
    }
  });
  return eval(ws);
}

// The workspace model as int8 (quantize --mode int8-dynamic), its int8 tensor's `scale` or
// `zero_point` array rewritten through the groups container.
void quantized_groups_model(Workspace& ws) {
  const std::string int8 = ws.file("int8.h5");
  ASSERT_EQ(
      run_cli("quantize " + ws.model + " --mode int8-dynamic --data " + ws.data + " --out " + int8)
          .code,
      0);
  mcompress::SaveOptions options;
  options.container = mcompress::ModelContainer::kGroups;
  options.overwrite = true;
  mcompress::save_model(mcompress::load_model(int8), ws.model, options);
  fs::remove(int8);
}

void set_scale(Workspace& ws, float value) {
  quantized_groups_model(ws);
  replace_float_dataset(ws.model, "/tensors/1.weight/scale", 10);
  edit_file(ws.model, [&](hid_t file) {
    replace_dataset(file, "/tensors/1.weight/scale", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT,
                    std::vector<float>(10, value));
  });
}

const std::vector<BadInput>& hostile_corpus() {
  static const std::vector<BadInput> cases = {
      // 1. Conv arithmetic: sizes bounded and products checked before LibTorch sees them.
      {"spec_conv_padding_near_int_max",
       1,
       {"$/spec.json: ", "layer 0 (conv2d)", "'padding' must be in [0, 1048576]", "2147483634"},
       [](Workspace& ws) { return train_spec(ws, conv_spec("2147483634")); }},
      {"model_arch_conv_padding_near_int_max",
       1,
       {"$/m.h5: ", "layer 0 (conv2d)", "'padding' must be in [0, 1048576]"},
       [](Workspace& ws) {
         set_arch(ws, conv_spec("2147483634"));
         return eval(ws);
       }},
      {"spec_padding_beyond_int64",
       1,
       {"$/spec.json: ", "'padding' must be in [0, 1048576]", "18446744073709551615"},
       [](Workspace& ws) { return train_spec(ws, conv_spec("18446744073709551615")); }},
      {"spec_flatten_overflows",
       1,
       {"$/spec.json: ", "layer 0 (flatten)", "more than 1073741824 elements"},
       [](Workspace& ws) {
         return train_spec(ws, R"({"input_shape":[1048576,1048576,1048576],"layers":[
           {"type":"flatten"},{"type":"linear","out_features":10}]})");
       }},
      {"spec_weight_too_large",
       1,
       {"$/spec.json: ", "tensor '1.weight'", "more than 1073741824 elements"},
       [](Workspace& ws) {
         return train_spec(ws, R"({"input_shape":[4,28,28],"layers":[{"type":"flatten"},
           {"type":"linear","out_features":1048576},{"type":"linear","out_features":10}]})");
       }},
      {"spec_kernel_zero",
       1,
       {"$/spec.json: ", "layer 0 (conv2d)", "kernel_size must be > 0"},
       [](Workspace& ws) {
         return train_spec(ws, R"({"input_shape":[1,28,28],"layers":[{"type":"conv2d",
           "out_channels":2,"kernel_size":0},{"type":"flatten"},{"type":"linear","out_features":10}]})");
       }},
      {"spec_stride_zero",
       1,
       {"$/spec.json: ", "layer 0 (conv2d)", "'stride' must be >= 1", "got 0"},
       [](Workspace& ws) {
         return train_spec(ws, R"({"input_shape":[1,28,28],"layers":[{"type":"conv2d",
           "out_channels":2,"kernel_size":3,"stride":0},{"type":"flatten"},
           {"type":"linear","out_features":10}]})");
       }},

      // 2. Deep nesting: refused while parsing, before anything recursive sees it.
      {"spec_nested_100k_levels_for_an_integer",
       1,
       {"$/spec.json: ", "nested deeper than 64 levels"},
       [](Workspace& ws) {
         return train_spec(ws, R"({"input_shape":[1,28,28],"layers":[{"type":"flatten"},
           {"type":"linear","out_features":)" +
                                   nested(100000, "10") + "}]}");
       }},
      {"spec_nested_100k_levels_for_a_layer",
       1,
       {"$/spec.json: ", "nested deeper than 64 levels"},
       [](Workspace& ws) {
         return train_spec(ws, R"({"input_shape":[1,28,28],"layers":)" +
                                   nested(100000, R"({"type":"flatten"})") + "}");
       }},
      {"model_arch_nested_100k_levels_eval",
       1,
       {"$/m.h5: ", "nested deeper than 64 levels"},
       [](Workspace& ws) {
         set_arch(ws, R"({"input_shape":[1,28,28],"layers":)" + nested(100000, "true") + "}");
         return eval(ws);
       }},
      {"model_arch_nested_100k_levels_inspect",
       1,
       {"$/m.h5: ", "nested deeper than 64 levels"},
       [](Workspace& ws) {
         set_arch(ws, R"({"input_shape":)" + nested(100000, "1") + "}");
         return "inspect " + ws.model;
       }},
      {"packed_manifest_nested_100k_levels",
       1,
       {"$/m.h5: ", "/manifest", "nested deeper than 64 levels"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         const std::string text = R"({"tensors":)" + nested(100000, "0") + "}";
         edit_file(ws.model, [&](hid_t file) {
           replace_dataset(file, "manifest", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                           std::vector<uint8_t>(text.begin(), text.end()));
         });
         return quantize(ws);
       }},

      // 4. Nothing outside the file: external storage, external and soft links, VDS.
      {"history_with_external_storage",
       1,
       {"$/m.h5: ", "/history", "external files"},
       [](Workspace& ws) {
         write_bytes(ws.file("secret.txt"), "the password is swordfish\n");
         repack(ws.model, nullptr);
         make_external_dataset(ws.model, "history", ws.file("secret.txt"), 26);
         return "inspect " + ws.model + " --history";
       }},
      {"history_external_storage_copied_by_quantize",
       1,
       {"$/m.h5: ", "/history", "external files"},
       [](Workspace& ws) {
         write_bytes(ws.file("secret.txt"), "the password is swordfish\n");
         repack(ws.model, nullptr);
         make_external_dataset(ws.model, "history", ws.file("secret.txt"), 26);
         return quantize(ws);
       }},
      {"blob_with_external_storage_on_dev_zero",
       1,
       {"$/m.h5: ", "/blob", "external files"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         make_external_dataset(ws.model, "blob", "/dev/zero", hsize_t{6} << 30);
         return eval(ws);
       }},
      {"blob_external_link",
       1,
       {"$/m.h5: ", "/blob", "external link"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         fs::copy_file(ws.model, ws.file("other.h5"));
         make_external_link(ws.model, "blob", ws.file("other.h5"), "/blob");
         return eval(ws);
       }},
      {"history_soft_link",
       1,
       {"$/m.h5: ", "/history", "soft link"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         make_soft_link(ws.model, "history", "/manifest");
         return "inspect " + ws.model + " --history";
       }},
      {"groups_tensor_external_link",
       1,
       {"$/m.h5: ", "1.weight", "external link"},
       [](Workspace& ws) {
         fs::copy_file(ws.model, ws.file("other.h5"));
         make_external_link(ws.model, "/tensors/1.weight/values", ws.file("other.h5"),
                            "/tensors/1.weight/values");
         return eval(ws);
       }},
      {"groups_values_external_storage",
       1,
       {"$/m.h5: ", "1.bias", "external files"},
       [](Workspace& ws) {
         write_bytes(ws.file("raw.bin"), std::string(40, '\0'));
         edit_file(ws.model,
                   [&](hid_t file) { unlink_if_present(file, "/tensors/1.bias/values"); });
         edit_file(ws.model, [&](hid_t file) {
           const hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
           H5Pset_external(dcpl, ws.file("raw.bin").c_str(), 0, 40);
           const hsize_t n = 10;
           const hid_t space = H5Screate_simple(1, &n, nullptr);
           const hid_t d = H5Dcreate2(file, "/tensors/1.bias/values", H5T_IEEE_F32LE, space,
                                      H5P_DEFAULT, dcpl, H5P_DEFAULT);
           EXPECT_GE(d, 0);
           H5Dclose(d);
           H5Sclose(space);
           H5Pclose(dcpl);
         });
         return eval(ws);
       }},
      {"data_h5_x_external_link",
       1,
       {"$/data.h5", "'x'", "external link"},
       [](Workspace& ws) {
         const std::string data = write_h5_data(ws, 20, 0.5f);
         fs::copy_file(data, ws.file("other.h5"));
         make_external_link(data, "x", ws.file("other.h5"), "/x");
         return "eval " + ws.model + " --data " + data;
       }},
      {"data_h5_x_external_storage",
       1,
       {"$/data.h5", "'/x'", "external files"},
       [](Workspace& ws) {
         const std::string data = write_h5_data(ws, 20, 0.5f);
         make_external_dataset(data, "x", "/dev/zero", 20 * 28 * 28);
         return "eval " + ws.model + " --data " + data;
       }},

      // 5. A YAML alias bomb, in any stage's options, under compress --check.
      {"recipe_billion_laughs_in_quantize",
       2,
       {"$/r.yaml", "expands to more than 100000 nodes"},
       [](Workspace& ws) {
         return recipe(ws, yaml_bomb(), "  - quantize: {mode: int8-static, observer: *a9}\n");
       }},
      {"recipe_billion_laughs_in_prune",
       2,
       {"$/r.yaml", "expands to more than 100000 nodes"},
       [](Workspace& ws) { return recipe(ws, yaml_bomb(), "  - prune: {target: *a9}\n"); }},
      {"recipe_billion_laughs_in_set",
       2,
       {"--set", "expands to more than 100000 nodes"},
       [](Workspace& ws) {
         std::string bomb = "[&a0 [x, x, x, x, x, x, x, x, x, x]";
         for (int i = 1; i <= 9; ++i) {
           bomb += ", &a" + std::to_string(i) + " [";
           for (int k = 0; k < 10; ++k) bomb += (k ? ", *a" : "*a") + std::to_string(i - 1);
           bomb += "]";
         }
         return recipe(ws, "", "  - prune: {target: 0.5}\n") +
                " --set 'stages[0].prune.target=" + bomb + "]'";
       }},
      {"recipe_nested_deeper_than_64",
       2,
       {"$/r.yaml", "nested deeper than 64 levels"},
       [](Workspace& ws) {
         return recipe(ws, "", "  - prune: {target: " + nested(100, "0.5") + "}\n");
       }},
      {"recipe_second_document",
       2,
       {"$/r.yaml", "holds more than one YAML document"},
       [](Workspace& ws) {
         recipe(ws, "", "  - prune: {target: 0.5}\n");
         write_bytes(ws.file("r.yaml"),
                     read_bytes(ws.file("r.yaml")) + "---\nstages: [quantize: {mode: fp16}]\n");
         return "compress " + ws.file("r.yaml") + " --check";
       }},
      {"recipe_bool_for_an_integer",
       2,
       {"stages[0].quantize.bits (line 4)", "must be an integer", "'true'"},
       [](Workspace& ws) {
         return recipe(ws, "", "  - quantize: {mode: codebook, bits: true}\n");
       }},

      // 6. Model-file bombs: sizes declared, never written.
      {"packed_blob_declared_3gb_never_written",
       1,
       {"$/m.h5: ", "/blob", "never written"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         make_unwritten(ws.model, "blob", {hsize_t{3} << 30}, H5T_STD_U8LE);
         return eval(ws);
       }},
      {"packed_blob_declared_1tb_never_written",
       1,
       {"$/m.h5: ", "/blob", "never written"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         make_unwritten(ws.model, "blob", {hsize_t{1} << 40}, H5T_STD_U8LE);
         return "inspect " + ws.model;
       }},
      {"packed_history_declared_3gb_never_written",
       1,
       {"$/m.h5: ", "/history", "never written"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         make_unwritten(ws.model, "history", {hsize_t{3} << 30}, H5T_STD_U8LE);
         return eval(ws);
       }},
      {"packed_manifest_declared_3gb_never_written",
       1,
       {"$/m.h5: ", "/manifest", "never written"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         make_unwritten(ws.model, "manifest", {hsize_t{3} << 30}, H5T_STD_U8LE);
         return "inspect " + ws.model;
       }},
      {"packed_array_declares_3gb",
       1,
       {"$/m.h5: ", "tensor '1.weight'", "array 'values'"},
       [](Workspace& ws) {
         repack(ws.model, [](nlohmann::json& manifest) {
           for (auto& t : manifest["tensors"]) {
             if (t["name"] == "1.weight") t["arrays"]["values"]["shape"] = {49152, 16384};
           }
         });
         return eval(ws);
       }},
      {"groups_values_declared_1_5e9_never_written",
       1,
       {"$/m.h5: ", "/tensors/1.weight/values", "never written"},
       [](Workspace& ws) {
         make_unwritten(ws.model, "/tensors/1.weight/values", {1500000000}, H5T_IEEE_F32LE);
         return eval(ws);
       }},
      {"groups_history_declared_3gb_never_written",
       1,
       {"$/m.h5: ", "history", "never written"},
       [](Workspace& ws) {
         make_unwritten(ws.model, "/history/entries", {hsize_t{3} << 30}, H5T_STD_U8LE);
         return "inspect " + ws.model + " --history";
       }},

      // 7. Data-set bombs.
      {"idx_gzip_bomb_claims_2_31_images",
       1,
       {"$/bomb/", "-images-idx3-ubyte.gz' declares", "more than 64x compression is not plausible"},
       [](Workspace& ws) {
         fs::create_directories(ws.file("bomb"));
         write_gzip_bomb(ws.file("bomb/train-images-idx3-ubyte.gz"), 1u << 31, 8);
         write_gzip_bomb(ws.file("bomb/t10k-images-idx3-ubyte.gz"), 1u << 31, 8);
         fs::copy_file(ws.data + "/train-labels-idx1-ubyte",
                       ws.file("bomb/train-labels-idx1-ubyte"));
         fs::copy_file(ws.data + "/t10k-labels-idx1-ubyte", ws.file("bomb/t10k-labels-idx1-ubyte"));
         return "eval " + ws.model + " --data " + ws.file("bomb");
       }},
      {"data_h5_x_declared_1e6_images_never_written",
       1,
       {"$/data.h5", "'/x'", "never written"},
       [](Workspace& ws) {
         const std::string data = write_h5_data(ws, 20, 0.5f);
         make_unwritten(data, "x", {1000000, 1, 28, 28}, H5T_IEEE_F32LE);
         return "eval " + ws.model + " --data " + data;
       }},
      {"data_h5_nan_input",
       1,
       {"$/data.h5", "non-finite value (nan)", "example 10"},
       [](Workspace& ws) {
         const std::string data = write_h5_data(ws, 20, std::numeric_limits<float>::quiet_NaN());
         return "eval " + ws.model + " --data " + data;
       }},
      {"data_h5_inf_input_train_quiet",
       1,
       {"$/data.h5", "non-finite value (inf)"},
       [](Workspace& ws) {
         const std::string data = write_h5_data(ws, 20, std::numeric_limits<float>::infinity());
         return "train --arch mlp-small --data " + data + " --epochs 1 --quiet --out " + ws.out;
       }},

      // 10. One line: no header before a failure.
      {"compress_with_truncated_model",
       1,
       {"$/m.h5: ", "truncated or corrupt"},
       [](Workspace& ws) {
         const std::string bytes = read_bytes(ws.model);
         write_bytes(ws.model, bytes.substr(0, bytes.size() / 2));
         return compress(ws, "", "  - quantize: {mode: fp16}\n");
       }},

      // 11. Outputs: compared as files, only regular files replaced, links resolved first.
      {"out_is_input_by_another_spelling",
       2,
       {"is the input", "(the same file)"},
       [](Workspace& ws) {
         return "quantize " + ws.model + " --mode fp16 --data " + ws.data + " --force --out " +
                ws.dir.path().string() + "/./m.h5";
       }},
      {"out_is_a_hard_link_of_the_input",
       2,
       {"is the input", "(the same file)"},
       [](Workspace& ws) {
         fs::create_hard_link(ws.model, ws.file("alias.h5"));
         return "prune " + ws.model + " --target 0.5 --data " + ws.data + " --force --out " +
                ws.file("alias.h5");
       }},
      {"out_is_a_symlink_to_the_input",
       2,
       {"is the input", "(the same file)"},
       [](Workspace& ws) {
         fs::create_symlink(ws.model, ws.file("link.h5"));
         return "convert " + ws.model + " --force --out " + ws.file("link.h5");
       }},
      {"out_is_a_fifo",
       1,
       {"$/pipe", "is a FIFO", "only a regular file can be replaced"},
       [](Workspace& ws) {
         EXPECT_EQ(::mkfifo(ws.file("pipe").c_str(), 0644), 0);
         return "quantize " + ws.model + " --mode fp16 --data " + ws.data + " --force --out " +
                ws.file("pipe");
       }},
      {"out_is_a_symlink_to_a_fifo",
       1,
       {"is a FIFO"},
       [](Workspace& ws) {
         EXPECT_EQ(::mkfifo(ws.file("pipe").c_str(), 0644), 0);
         fs::create_symlink(ws.file("pipe"), ws.file("link.h5"));
         return "export " + ws.model + " --format torchscript --force --out " + ws.file("link.h5");
       }},
      {"out_is_a_folder",
       1,
       {"$/folder", "is a folder"},
       [](Workspace& ws) {
         fs::create_directory(ws.file("folder"));
         return "train --arch mlp-small --data " + ws.data + " --epochs 1 --force --out " +
                ws.file("folder");
       }},
      {"out_is_a_dangling_symlink_refused_before_training",
       1,
       {"$/link.h5", "dangling symbolic link"},
       [](Workspace& ws) {
         fs::create_symlink(ws.file("nowhere/m.h5"), ws.file("link.h5"));
         return "train --arch mlp-small --data " + ws.data + " --epochs 5 --out " +
                ws.file("link.h5");
       }},
      {"recipe_output_is_the_input_by_another_spelling",
       2,
       {"is the input", "(the same file)"},
       [](Workspace& ws) {
         write_bytes(ws.file("r.yaml"), "model: " + ws.model + "\ndata: {path: " + ws.data +
                                            "}\nstages:\n  - quantize: {mode: fp16}\noutput: " +
                                            ws.dir.path().string() + "/./m.h5\n");
         return "compress " + ws.file("r.yaml") + " --force";
       }},

      // 12. Untrusted bytes in error lines: escaped and cut.
      {"escape_sequences_in_a_tensor_name",
       1,
       {"$/m.h5: ", "\\x1B]0;pwned\\x07"},
       [](Workspace& ws) { return model_with_tensor_name(ws, "\x1b]0;pwned\x07"); }},
      {"carriage_return_in_a_stage_name",
       2,
       {"unknown stage", "\\x0Dmcompress: ok"},
       [](Workspace& ws) { return compress(ws, "", "  - \"x\\rmcompress: ok\": {}\n"); }},
      {"nul_in_a_tensor_name",
       1,
       {"$/m.h5: ", "a\\x00b"},
       [](Workspace& ws) { return model_with_tensor_name(ws, std::string("a\0b", 3)); }},
      {"ten_megabyte_tensor_name",
       1,
       {"$/m.h5: ", "bytes cut"},
       [](Workspace& ws) { return model_with_tensor_name(ws, std::string(10 << 20, 'n')); }},

      // 13. Values the runtime trusts, and lenient parsing.
      {"int8_scale_nan",
       1,
       {"$/m.h5: ", "tensor '1.weight'", "scale nan"},
       [](Workspace& ws) {
         set_scale(ws, std::numeric_limits<float>::quiet_NaN());
         return "inspect " + ws.model;
       }},
      {"int8_scale_zero",
       1,
       {"$/m.h5: ", "tensor '1.weight'", "scale 0 "},
       [](Workspace& ws) {
         set_scale(ws, 0.0f);
         return "inspect " + ws.model;
       }},
      {"int8_scale_negative",
       1,
       {"$/m.h5: ", "tensor '1.weight'", "scale -1 "},
       [](Workspace& ws) {
         set_scale(ws, -1.0f);
         return eval(ws);
       }},
      {"int8_zero_point_out_of_range",
       1,
       {"$/m.h5: ", "tensor '1.weight'", "zero_point 1000"},
       [](Workspace& ws) {
         quantized_groups_model(ws);
         edit_file(ws.model, [&](hid_t file) {
           replace_dataset(file, "/tensors/1.weight/zero_point", H5T_STD_I64LE, H5T_NATIVE_INT64,
                           std::vector<int64_t>(10, 1000));
         });
         return "inspect " + ws.model;
       }},
      {"manifest_bytes_after_a_nul",
       1,
       {"$/m.h5: ", "/manifest", "NUL byte"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         edit_file(ws.model, [](hid_t file) {
           std::vector<uint8_t> text = read_dataset<uint8_t>(file, "manifest", H5T_NATIVE_UINT8);
           text.push_back(0);
           for (char c : std::string("{\"x\":1}")) text.push_back(static_cast<uint8_t>(c));
           replace_dataset(file, "manifest", H5T_STD_U8LE, H5T_NATIVE_UINT8, text);
         });
         return eval(ws);
       }},
      {"manifest_with_a_byte_order_mark",
       1,
       {"$/m.h5: ", "/manifest", "byte-order mark"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         edit_file(ws.model, [](hid_t file) {
           std::vector<uint8_t> text = read_dataset<uint8_t>(file, "manifest", H5T_NATIVE_UINT8);
           text.insert(text.begin(), {0xEF, 0xBB, 0xBF});
           replace_dataset(file, "manifest", H5T_STD_U8LE, H5T_NATIVE_UINT8, text);
         });
         return eval(ws);
       }},
      {"manifest_with_a_duplicate_key",
       1,
       {"$/m.h5: ", "/manifest", "'tensors' appears twice"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         edit_file(ws.model, [](hid_t file) {
           std::vector<uint8_t> text = read_dataset<uint8_t>(file, "manifest", H5T_NATIVE_UINT8);
           std::string s(text.begin(), text.end());
           s = "{\"tensors\":[]," + s.substr(1);
           replace_dataset(file, "manifest", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                           std::vector<uint8_t>(s.begin(), s.end()));
         });
         return eval(ws);
       }},
      {"arch_with_a_duplicate_key",
       1,
       {"$/m.h5: ", "'layers' appears twice"},
       [](Workspace& ws) {
         set_arch(ws, R"({"input_shape":[1,28,28],"layers":[],"layers":[{"type":"flatten"},
           {"type":"linear","out_features":10}]})");
         return eval(ws);
       }},
  };
  return cases;
}

class HostileInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(HostileInputTest, OneErrorLineWithinLimitsNothingWritten) {
  const BadInput& c = GetParam();
  Workspace ws;
  const std::string args = c.make(ws);
  ASSERT_FALSE(HasFailure()) << "could not build the hostile input";
  expect_rejected(ws, args, c.exit_code, c.culprit);
}

INSTANTIATE_TEST_SUITE_P(Corpus, HostileInputTest, ::testing::ValuesIn(hostile_corpus()),
                         [](const ::testing::TestParamInfo<BadInput>& info) {
                           return info.param.name;
                         });

// --- 3 and 8: TorchScript files are code (written by tests/apps/python/hostile_torchscript.py
// with Debian's python3-torch; skipped with a message where it is absent).

class HostileTorchScriptTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (mcompress::testing::run_shell("/usr/bin/python3 -c 'import torch'").code != 0) {
      GTEST_SKIP() << "/usr/bin/python3 cannot import torch (install python3-torch)";
    }
  }
  // The hostile file of `kind`, in the workspace.
  std::string make(const std::string& kind) {
    const std::string pt = ws_.file(kind + ".pt");
    const auto r = mcompress::testing::run_shell(
        "/usr/bin/python3 " MCOMPRESS_APPS_PYTHON_DIR "/hostile_torchscript.py " + kind + " " + pt);
    EXPECT_EQ(r.code, 0) << r.out;
    return pt;
  }
  Workspace ws_;
};

TEST_F(HostileTorchScriptTest, ForwardThatNeverReturnsIsStoppedAtTheTimeLimit) {
  const std::string pt = make("loop");
  expect_rejected(ws_, "import " + pt + " --forward-timeout 2 --out " + ws_.out, 1,
                  {"$/loop.pt: the module's forward", "did not finish within 2 s"});
}

TEST_F(HostileTorchScriptTest, ForwardThatRaisesNamesTheFileAndTheError) {
  const std::string pt = make("raises");
  expect_rejected(ws_, "import " + pt + " --out " + ws_.out, 1,
                  {"$/raises.pt: the module's forward", "boom from the model", "line "});
}

TEST_F(HostileTorchScriptTest, ViewPastItsStorageIsRefusedBeforeUse) {
  const std::string pt = make("far_view");
  expect_rejected(ws_, "import " + pt + " --out " + ws_.out, 1,
                  {"$/far_view.pt: tensor '1.weight' reaches byte", "of a storage of 50000 bytes"});
}

TEST_F(HostileTorchScriptTest, ViewEndingPastItsStorageIsRefusedBeforeUse) {
  const std::string pt = make("near_view");
  expect_rejected(
      ws_, "import " + pt + " --out " + ws_.out, 1,
      {"$/near_view.pt: tensor '1.weight' reaches byte 50400", "of a storage of 50000 bytes"});
}

TEST_F(HostileTorchScriptTest, WhatTheForwardPrintsDoesNotReachOurOutput) {
  const std::string pt = make("prints");
  const auto r = run_cli("import " + pt + " --out " + ws_.out);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find("mcompress: ok"), std::string::npos) << r.out;
  EXPECT_TRUE(fs::exists(ws_.out));
}

}  // namespace
