// The bad-input corpus of issue 7: bad input gets a clear error, never a crash. Each case builds
// one broken input inside the test (no checked-in binaries), runs the real mcompress binary on
// it and checks what docs/reliability.md promises (bad_input_support.h): a non-zero exit code,
// exactly one line of output, "mcompress: error: ...", naming the culprit (file, tensor,
// layer, option path and line), and no file written or changed: the input model is
// byte-identical afterwards and no output (nor a temporary file) appears.

#include <gtest/gtest.h>
#include <hdf5.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "bad_input_support.h"

namespace {

using namespace mcompress::testing::bad_input;
namespace fs = std::filesystem;

const std::vector<BadInput>& bad_input_corpus() {
  static const std::vector<BadInput> cases = {
      // Model files.
      {"truncated_model",
       1,
       {"$/m.h5: ", "truncated or corrupt"},
       [](Workspace& ws) {
         const std::string bytes = read_bytes(ws.model);
         write_bytes(ws.model, bytes.substr(0, bytes.size() / 2));
         return quantize(ws);
       }},
      {"bit_flipped_chunk",
       1,
       {"$/m.h5: ", "tensor '1.weight'", "corrupt", "Fletcher-32 checksum"},
       [](Workspace& ws) {
         flip_bit_in_first_chunk(ws.model, "/tensors/1.weight/values");
         return eval(ws);
       }},
      {"packed_flipped_blob_bit",
       1,
       {"$/m.h5: ", "cannot read /blob", "Fletcher-32 checksum"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         flip_bit_in_first_chunk(ws.model, "/blob");
         return eval(ws);
       }},
      {"packed_manifest_not_json",
       1,
       {"$/m.h5: ", "/manifest is not valid JSON"},
       [](Workspace& ws) {
         repack(ws.model, nullptr);
         edit_file(ws.model, [](hid_t file) {
           const hid_t dset = H5Dopen2(file, "manifest", H5P_DEFAULT);
           const char garbage[4] = {'{', '{', '{', '{'};
           const hsize_t start = 0, count = 4;
           const hid_t space = H5Dget_space(dset);
           H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
           const hid_t memory = H5Screate_simple(1, &count, nullptr);
           ASSERT_GE(H5Dwrite(dset, H5T_NATIVE_UINT8, memory, space, H5P_DEFAULT, garbage), 0);
           H5Sclose(memory);
           H5Sclose(space);
           H5Dclose(dset);
         });
         return quantize(ws);
       }},
      {"packed_array_outside_blob",
       1,
       {"$/m.h5: ", "tensor '1.weight'", "array 'values'", "lie outside the blob"},
       [](Workspace& ws) {
         repack(ws.model, [](nlohmann::json& manifest) {
           manifest["tensors"][0]["arrays"]["values"]["offset"] = 1u << 30;
         });
         return eval(ws);
       }},
      {"text_file_as_model",
       1,
       {"$/m.h5: ", "not an HDF5 file"},
       [](Workspace& ws) {
         write_bytes(ws.model, "model: mlp\nweights: none\n");
         return "inspect " + ws.model;
       }},
      {"hdf5_file_not_a_model",
       1,
       {"$/m.h5: ", "not an mcompress model file", "'format'"},
       [](Workspace& ws) {
         const hid_t file = H5Fcreate(ws.model.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
         EXPECT_GE(file, 0);
         H5Gclose(H5Gcreate2(file, "x", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
         H5Fclose(file);
         return quantize(ws);
       }},
      {"future_format_version",
       1,
       {"$/m.h5: ", "has v" + std::to_string(mcompress::kModelFormatVersion + 1),
        "newer mcompress"},
       [](Workspace& ws) {
         const int32_t version = mcompress::kModelFormatVersion + 1;
         edit_file(ws.model, [&](hid_t file) {
           replace_attr(file, "format_version", H5T_STD_I32LE, H5T_NATIVE_INT32, {}, &version);
         });
         return eval(ws);
       }},
      {"missing_tensor",
       1,
       {"$/m.h5: ", "missing tensor '1.bias'"},
       [](Workspace& ws) {
         edit_file(ws.model, [](hid_t file) {
           ASSERT_GE(H5Ldelete(file, "/tensors/1.bias", H5P_DEFAULT), 0);
         });
         return quantize(ws);
       }},
      {"wrong_shape_attribute",
       1,
       {"$/m.h5: ", "tensor '1.weight'", "[10, 783]", "[10, 784]"},
       [](Workspace& ws) {
         const int64_t shape[2] = {10, 783};
         edit_group(ws.model, "/tensors/1.weight", [&](hid_t group) {
           replace_attr(group, "shape", H5T_STD_I64LE, H5T_NATIVE_INT64, {2}, shape);
         });
         return "prune " + ws.model + " --target 0.5 --data " + ws.data + " --out " + ws.out;
       }},
      {"wrong_dataset_shape",
       1,
       {"$/m.h5: ", "tensor '1.bias'", "[5]"},
       [](Workspace& ws) {
         replace_float_dataset(ws.model, "/tensors/1.bias/values", 5);
         return quantize(ws);
       }},
      {"unknown_encoding",
       1,
       {"$/m.h5: ", "tensor '1.weight'", "unknown encoding 'fp8'"},
       [](Workspace& ws) {
         edit_group(ws.model, "/tensors/1.weight",
                    [](hid_t group) { replace_string_attr(group, "encoding", "fp8"); });
         return eval(ws);
       }},
      {"nan_weight",
       1,
       {"$/m.h5: ", "tensor '1.weight'", "non-finite value (nan)"},
       [](Workspace& ws) {
         set_float(ws.model, "/tensors/1.weight/values", 3,
                   std::numeric_limits<float>::quiet_NaN());
         return quantize(ws);
       }},
      {"inf_weight_in_teacher",
       1,
       {"$/m.h5: ", "tensor '1.bias'", "non-finite value (inf)"},
       [](Workspace& ws) {
         set_float(ws.model, "/tensors/1.bias/values", 2, std::numeric_limits<float>::infinity());
         return "distill --teacher " + ws.model + " --student mlp-small --data " + ws.data +
                " --epochs 1 --quiet --out " + ws.out;
       }},

      // Architecture spec files (docs/format.md §5).
      {"spec_unknown_layer_type",
       1,
       {"$/spec.json: ", "layer 1", "unknown layer type 'frob'"},
       [](Workspace& ws) {
         return train_spec(ws, R"({"input_shape":[1,28,28],"layers":[{"type":"flatten"},
           {"type":"frob"},{"type":"linear","out_features":10}]})");
       }},
      {"spec_shapes_do_not_chain",
       1,
       {"$/spec.json: ", "layer 3 (linear)", "in_features is 16 but the input has 32"},
       [](Workspace& ws) {
         return train_spec(ws, R"({"input_shape":[1,28,28],"layers":[{"type":"flatten"},
           {"type":"linear","out_features":32},{"type":"relu"},
           {"type":"linear","in_features":16,"out_features":10}]})");
       }},
      {"spec_conv_after_flatten",
       1,
       {"$/spec.json: ", "layer 1 (conv2d)", "[784]"},
       [](Workspace& ws) {
         return train_spec(ws, R"({"input_shape":[1,28,28],"layers":[{"type":"flatten"},
           {"type":"conv2d","out_channels":4,"kernel_size":3},{"type":"linear","out_features":10}]})");
       }},

      // Graph documents (docs/format.md §5): every error names the node.
      {"graph_unknown_op",
       1,
       {"$/spec.json: ", "node 'flat'", "got 'Frob'", "expected one of: Conv, Gemm"},
       [](Workspace& ws) {
         return train_graph(ws, R"({"name":"flat","op":"Frob","inputs":["x"],"outputs":["f"]},
           {"name":"fc","op":"Gemm","inputs":["f"],"outputs":["logits"],"attrs":{"out_features":10}})");
       }},
      {"graph_cycle",
       1,
       {"$/spec.json: ", "node 'flat' (Flatten)", "value 'y' is produced by node 'back'",
        "a cycle cannot be"},
       [](Workspace& ws) {
         return train_graph(ws, R"({"name":"flat","op":"Flatten","inputs":["y"],"outputs":["f"]},
           {"name":"fc","op":"Gemm","inputs":["f"],"outputs":["logits"],"attrs":{"out_features":10}},
           {"name":"back","op":"Relu","inputs":["logits"],"outputs":["y"]})");
       }},
      {"graph_dangling_value",
       1,
       {"$/spec.json: ", "node 'flat' (Flatten)", "value 'nope' is not defined"},
       [](Workspace& ws) {
         return train_graph(ws, R"({"name":"flat","op":"Flatten","inputs":["nope"],"outputs":["f"]},
           {"name":"fc","op":"Gemm","inputs":["f"],"outputs":["logits"],"attrs":{"out_features":10}})");
       }},
      {"graph_shapes_disagree",
       1,
       {"$/spec.json: ", "node 'sum' (Add)", "[batch, 784] and [batch, 10] do not broadcast"},
       [](Workspace& ws) {
         return train_graph(ws, R"({"name":"flat","op":"Flatten","inputs":["x"],"outputs":["f"]},
           {"name":"fc","op":"Gemm","inputs":["f"],"outputs":["h"],"attrs":{"out_features":10}},
           {"name":"sum","op":"Add","inputs":["f","h"],"outputs":["logits"]})");
       }},
      {"graph_unknown_attribute",
       1,
       {"$/spec.json: ", "node 'fc' (Gemm)", "attribute 'kernel': unknown"},
       [](Workspace& ws) {
         return train_graph(ws, R"({"name":"flat","op":"Flatten","inputs":["x"],"outputs":["f"]},
           {"name":"fc","op":"Gemm","inputs":["f"],"outputs":["logits"],
            "attrs":{"out_features":10,"kernel":3}})");
       }},

      // Recipes: the YAML path and line of the bad value.
      {"recipe_sparsity_above_one",
       2,
       {"stages[0].prune.target (line 4)", "[0, 1)", "1.5"},
       [](Workspace& ws) { return compress(ws, "", "  - prune: {target: 1.5}\n"); }},
      {"recipe_zero_temperature",
       2,
       {"stages[0].distill.temperature (line 4)", "got 0"},
       [](Workspace& ws) { return compress(ws, "", "  - distill: {temperature: 0}\n"); }},
      {"recipe_zero_calibration_batches",
       2,
       {"data.calib_batches (line 2)", ">= 1, got 0"},
       [](Workspace& ws) {
         return compress(ws, ", calib_batches: 0", "  - quantize: {mode: int8-static}\n");
       }},
      {"recipe_unknown_stage",
       2,
       {"stages[1] (line 5)", "unknown stage 'frobnicate'"},
       [](Workspace& ws) {
         return compress(ws, "", "  - prune: {target: 0.5}\n  - frobnicate: {level: 3}\n");
       }},
      {"recipe_unknown_option",
       2,
       {"stages[0].prune.colour (line 4)", "unknown option"},
       [](Workspace& ws) { return compress(ws, "", "  - prune: {target: 0.5, colour: red}\n"); }},
      {"recipe_wrong_type",
       2,
       {"stages[0].prune.target (line 4)", "must be a number", "'lots'"},
       [](Workspace& ws) { return compress(ws, "", "  - prune: {target: lots}\n"); }},
      {"recipe_not_yaml",
       2,
       {"$/r.yaml: line 5"},
       [](Workspace& ws) { return compress(ws, "", "  - prune: {target: 0.5\n"); }},

      // Data sets.
      {"empty_dataset",
       1,
       {"$/empty/train-images-idx3-ubyte", "0x28x28"},
       [](Workspace& ws) {
         write_idx(ws.file("empty"), "train", 0, 0, 28);
         write_idx(ws.file("empty"), "t10k", 0, 0, 28);
         return "train --arch mlp-small --data " + ws.file("empty") + " --epochs 1 --out " + ws.out;
       }},
      {"label_count_mismatch",
       1,
       {"$/odd/t10k-images-idx3-ubyte' has 20 images", "$/odd/t10k-labels-idx1-ubyte' has 15"},
       [](Workspace& ws) {
         write_idx(ws.file("odd"), "train", 20, 15, 28);
         write_idx(ws.file("odd"), "t10k", 20, 15, 28);
         return "eval " + ws.model + " --data " + ws.file("odd");
       }},
      {"image_size_mismatch_eval",
       1,
       {"'$/small (test)'", "[1, 14, 14], expected [1, 28, 28]"},
       [](Workspace& ws) {
         write_idx(ws.file("small"), "train", 20, 20, 14);
         write_idx(ws.file("small"), "t10k", 20, 20, 14);
         return "eval " + ws.model + " --data " + ws.file("small");
       }},
      {"image_size_mismatch_prune",
       1,
       {"'$/small (train)'", "[1, 14, 14], expected [1, 28, 28]"},
       [](Workspace& ws) {
         write_idx(ws.file("small"), "train", 20, 20, 14);
         write_idx(ws.file("small"), "t10k", 20, 20, 14);
         return "prune " + ws.model + " --target 0.5 --data " + ws.file("small") + " --out " +
                ws.out;
       }},
      {"image_size_mismatch_distill",
       1,
       {"'$/small (train)'", "[1, 14, 14], expected [1, 28, 28]"},
       [](Workspace& ws) {
         write_idx(ws.file("small"), "train", 20, 20, 14);
         write_idx(ws.file("small"), "t10k", 20, 20, 14);
         return "distill --teacher " + ws.model + " --student mlp-small --data " +
                ws.file("small") + " --epochs 1 --quiet --out " + ws.out;
       }},
      {"teacher_class_count_mismatch",
       1,
       {"$/t12.h5", "12 classes", "has 10"},
       [](Workspace& ws) {
         mcompress::save_model(
             mcompress::Model::initialize(mcompress::ArchSpec::from_json_text(tiny_spec(12)), 7),
             ws.file("t12.h5"));
         return "distill --teacher " + ws.file("t12.h5") + " --student mlp-small --data " +
                ws.data + " --epochs 1 --quiet --out " + ws.out;
       }},

      // Output paths: refused before any work.
      {"output_in_missing_folder",
       1,
       {"$/no/such", "does not exist"},
       [](Workspace& ws) {
         return "train --arch mlp-small --data " + ws.data + " --epochs 1 --out " +
                ws.file("no/such/out.h5");
       }},
      {"output_under_a_file",
       1,
       {"$/m.h5'", "not a folder"},
       [](Workspace& ws) {
         return "quantize " + ws.model + " --mode fp16 --data " + ws.data + " --out " +
                ws.file("m.h5/out.h5");
       }},
      {"output_in_unwritable_folder",
       1,
       {"'/proc'", "not writable"},
       [](Workspace& ws) {
         return "train --arch mlp-small --data " + ws.data +
                " --epochs 1 --out /proc/mcompress-bad-input-test.h5";
       }},
  };
  return cases;
}

class BadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputTest, OneErrorLineNamingTheCulpritNothingWritten) {
  const BadInput& c = GetParam();
  Workspace ws;
  const std::string args = c.make(ws);
  ASSERT_FALSE(HasFailure()) << "could not build the bad input";
  expect_rejected(ws, args, c.exit_code, c.culprit);
}

INSTANTIATE_TEST_SUITE_P(Corpus, BadInputTest, ::testing::ValuesIn(bad_input_corpus()),
                         [](const ::testing::TestParamInfo<BadInput>& info) {
                           return info.param.name;
                         });

// A 0555 folder: refused before any work, unless the tests run as root, for whom the folder is
// writable (the /proc case above covers an unwritable folder then).
TEST(BadInputFolderTest, OutputInReadOnlyFolder) {
  Workspace ws;
  const std::string folder = ws.file("read-only");
  fs::create_directory(folder);
  fs::permissions(folder, fs::perms::owner_read | fs::perms::owner_exec);
  if (::access(folder.c_str(), W_OK) == 0) {
    fs::permissions(folder, fs::perms::owner_all);
    GTEST_SKIP() << "running as root: a 0555 folder is writable, so this sub-check cannot fail";
  }
  expect_rejected(
      ws, "train --arch mlp-small --data " + ws.data + " --epochs 1 --out " + folder + "/out.h5", 1,
      {"$/read-only'", "not writable", "Permission denied"});
  fs::permissions(folder, fs::perms::owner_all);
}

}  // namespace
