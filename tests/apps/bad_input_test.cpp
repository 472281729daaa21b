// The bad-input corpus of issue 7: bad input gets a clear error, never a crash. Each case builds
// one broken input inside the test (no checked-in binaries), runs the real mcompress binary on
// it and checks what docs/reliability.md promises: a non-zero exit code (2 for a usage or
// recipe error, 1 otherwise), exactly one line of output, "mcompress: error: ...", naming the
// culprit (file, tensor, layer, option path and line), and no file written or changed: the
// input model is byte-identical afterwards and no output (nor a temporary file) appears.

#include <gtest/gtest.h>
#include <hdf5.h>
#include <sys/wait.h>
#include <unistd.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "cli_runner.h"
#include "mcompress/core/arch_spec.h"
#include "mcompress/core/model.h"
#include "mcompress/core/model_file.h"
#include "raw_hdf5.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using mcompress::testing::edit_file;
using mcompress::testing::flip_bit_in_first_chunk;
using mcompress::testing::read_bytes;
using mcompress::testing::read_dataset;
using mcompress::testing::replace_dataset;
using mcompress::testing::TempDir;
using mcompress::testing::write_bytes;

using mcompress::testing::run_cli;
using Result = mcompress::testing::CliResult;

// Flatten + linear: 7850 parameters in two tensors, 1.weight [10, 784] and 1.bias [10].
std::string tiny_spec(int num_classes = 10) {
  return R"({"name":"tiny","input_shape":[1,28,28],"num_classes":)" + std::to_string(num_classes) +
         R"(,"layers":[{"type":"flatten"},{"type":"linear","out_features":)" +
         std::to_string(num_classes) + "}]}";
}

void put_be32(std::ofstream& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.write(b, 4);
}

// One IDX split whose header says what the case needs: `images` square images of `side`
// pixels and `labels` labels (i % 10).
void write_idx(const std::string& dir, const std::string& prefix, uint32_t images, uint32_t labels,
               uint32_t side) {
  fs::create_directories(dir);
  std::ofstream x(dir + "/" + prefix + "-images-idx3-ubyte", std::ios::binary);
  put_be32(x, 0x803);
  put_be32(x, images);
  put_be32(x, side);
  put_be32(x, side);
  for (uint32_t i = 0; i < images * side * side; ++i) x.put(static_cast<char>(i * 7 % 256));
  std::ofstream y(dir + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary);
  put_be32(y, 0x801);
  put_be32(y, labels);
  for (uint32_t i = 0; i < labels; ++i) y.put(static_cast<char>(i % 10));
}

// A folder per case with a usable data set and model file; the case breaks one of them, or
// adds a broken input next to them.
struct Workspace {
  Workspace() {
    mcompress::testing::write_idx_folder(data, mcompress::testing::block_images(40, 1),
                                         mcompress::testing::block_images(10, 2));
    // The groups container (format v2), whose datasets the cases below break one by one; the
    // packed_* cases re-save it in the default packed container first.
    mcompress::SaveOptions options;
    options.container = mcompress::ModelContainer::kGroups;
    mcompress::save_model(
        mcompress::Model::initialize(mcompress::ArchSpec::from_json_text(tiny_spec()), 7), model,
        options);
  }
  std::string file(const std::string& name) const { return dir.file(name); }

  TempDir dir;
  const std::string data = dir.file("data");
  const std::string model = dir.file("m.h5");
  const std::string out = dir.file("out.h5");
};

// --- Raw HDF5 edits of a saved model (as tests/core/model_file_error_test.cpp does them) ---------

// Replaces (or adds) attribute `name` of `loc`: scalar when dims is empty.
void replace_attr(hid_t loc, const char* name, hid_t file_type, hid_t mem_type,
                  const std::vector<hsize_t>& dims, const void* data) {
  if (H5Aexists(loc, name) > 0) {
    ASSERT_GE(H5Adelete(loc, name), 0);
  }
  const hid_t space = dims.empty()
                          ? H5Screate(H5S_SCALAR)
                          : H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  const hid_t attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
  ASSERT_GE(attr, 0) << name;
  ASSERT_GE(H5Awrite(attr, mem_type, data), 0) << name;
  H5Aclose(attr);
  H5Sclose(space);
}

void replace_string_attr(hid_t loc, const char* name, const std::string& value) {
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, value.size() + 1);
  H5Tset_cset(type, H5T_CSET_UTF8);
  replace_attr(loc, name, type, type, {}, value.c_str());
  H5Tclose(type);
}

void edit_group(const std::string& path, const std::string& group,
                const std::function<void(hid_t)>& edit) {
  edit_file(path, [&](hid_t file) {
    const hid_t g = H5Gopen2(file, group.c_str(), H5P_DEFAULT);
    ASSERT_GE(g, 0) << group;
    edit(g);
    H5Gclose(g);
  });
}

// Overwrites one element of a float dataset in place (through its filters, so the checksum
// stays valid: the value itself is the fault).
void set_float(const std::string& path, const std::string& dataset, size_t index, float value) {
  edit_file(path, [&](hid_t file) {
    const hid_t dset = H5Dopen2(file, dataset.c_str(), H5P_DEFAULT);
    ASSERT_GE(dset, 0) << dataset;
    const hid_t space = H5Dget_space(dset);
    std::vector<float> values(static_cast<size_t>(H5Sget_simple_extent_npoints(space)));
    H5Sclose(space);
    ASSERT_GE(H5Dread(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
    values.at(index) = value;
    ASSERT_GE(H5Dwrite(dset, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()), 0);
    H5Dclose(dset);
  });
}

// Replaces a dataset with an unfiltered 1-D float32 one of `n` zeros.
void replace_float_dataset(const std::string& path, const std::string& dataset, hsize_t n) {
  edit_file(path, [&](hid_t file) {
    replace_dataset(file, dataset, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, std::vector<float>(n, 0.0f));
  });
}

// Re-saves the workspace model in the packed container (format v3, the default) and rewrites
// its /manifest through `edit` (nullptr: leaves it as it is).
void repack(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
  mcompress::SaveOptions options;
  options.overwrite = true;
  mcompress::save_model(mcompress::load_model(path), path, options);
  if (!edit) return;
  edit_file(path, [&](hid_t file) {
    const std::vector<uint8_t> text = read_dataset<uint8_t>(file, "manifest", H5T_NATIVE_UINT8);
    nlohmann::json manifest = nlohmann::json::parse(text.begin(), text.end());
    edit(manifest);
    const std::string edited = manifest.dump();
    replace_dataset(file, "manifest", H5T_STD_U8LE, H5T_NATIVE_UINT8,
                    std::vector<uint8_t>(edited.begin(), edited.end()));
  });
}

// --- What a rejection must look like ---------------------------------------------------------

// Every file under `root` with its bytes (folders as a marker), to prove nothing was written.
std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    files[fs::relative(entry.path(), root).string()] =
        entry.is_regular_file() ? read_bytes(entry.path().string()) : std::string("<folder>");
  }
  return files;
}

std::string changes(const std::map<std::string, std::string>& before,
                    const std::map<std::string, std::string>& after) {
  std::string out;
  for (const auto& [name, bytes] : after) {
    const auto it = before.find(name);
    if (it == before.end())
      out += "created " + name + "\n";
    else if (it->second != bytes)
      out += "changed " + name + "\n";
  }
  for (const auto& [name, bytes] : before) {
    if (after.count(name) == 0) out += "removed " + name + "\n";
  }
  return out;
}

// `$` in a fragment stands for the case's folder.
std::string expand(const std::string& text, const Workspace& ws) {
  std::string out;
  for (char c : text) out += c == '$' ? ws.dir.path().string() : std::string(1, c);
  return out;
}

void expect_rejected(const Workspace& ws, const std::string& args, int code,
                     const std::vector<std::string>& culprit) {
  const auto before = snapshot(ws.dir.path());
  const Result r = run_cli(args);
  ::testing::Test::RecordProperty("error", r.out);  // in --gtest_output=xml, for the docs
  const std::string prefix = "mcompress: error: ";
  EXPECT_EQ(r.code, code) << "mcompress " << args << "\n" << r.out;
  EXPECT_EQ(r.out.rfind(prefix, 0), 0u) << "the output does not start with '" << prefix << "':\n"
                                        << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << "not exactly one line:\n" << r.out;
  EXPECT_TRUE(!r.out.empty() && r.out.back() == '\n') << r.out;
  for (const auto& fragment : culprit) {
    EXPECT_NE(r.out.find(expand(fragment, ws)), std::string::npos)
        << "the error does not name '" << expand(fragment, ws) << "':\n"
        << r.out;
  }
  EXPECT_EQ(changes(before, snapshot(ws.dir.path())), "")
      << "a failed command must not write or change files";
}

// --- The corpus ------------------------------------------------------------------------------

struct BadInput {
  std::string name;
  int exit_code;
  std::vector<std::string> culprit;  // fragments the error line must contain; `$` = the folder
  std::function<std::string(Workspace&)> make;  // breaks the workspace, returns CLI arguments
};

std::ostream& operator<<(std::ostream& out, const BadInput& c) { return out << c.name; }

// Commands that read a model file, one per kind of consumer.
std::string quantize(const Workspace& ws) {
  return "quantize " + ws.model + " --mode fp16 --data " + ws.data + " --out " + ws.out;
}
std::string eval(const Workspace& ws) { return "eval " + ws.model + " --data " + ws.data; }

std::string train_spec(Workspace& ws, const std::string& spec) {
  write_bytes(ws.file("spec.json"), spec);
  return "train --spec " + ws.file("spec.json") + " --data " + ws.data +
         " --epochs 1 --quiet --out " + ws.out;
}

// A recipe whose line 4 is the first stage.
std::string compress(Workspace& ws, const std::string& data, const std::string& stages) {
  write_bytes(ws.file("r.yaml"), "model: " + ws.model + "\ndata: {path: " + ws.data + data +
                                     "}\nstages:\n" + stages + "output: " + ws.out + "\n");
  return "compress " + ws.file("r.yaml");
}

const std::vector<BadInput>& corpus() {
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

INSTANTIATE_TEST_SUITE_P(Corpus, BadInputTest, ::testing::ValuesIn(corpus()),
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
