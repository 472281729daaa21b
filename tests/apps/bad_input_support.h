#pragma once
// What the bad-input corpora (bad_input_test.cpp, hostile_input_test.cpp) share: a workspace
// per case with a usable data set and model file, raw HDF5 edits, and what a rejection must
// look like (docs/reliability.md): a non-zero exit code (2 for a usage or recipe error, 1
// otherwise), exactly one line "mcompress: error: ..." naming the culprit, within the time and
// memory limits, nothing leaked from the allocator or LibTorch, and no file written or changed.

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

namespace mcompress::testing::bad_input {

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
inline std::string tiny_spec(int num_classes = 10) {
  return R"({"name":"tiny","input_shape":[1,28,28],"num_classes":)" + std::to_string(num_classes) +
         R"(,"layers":[{"type":"flatten"},{"type":"linear","out_features":)" +
         std::to_string(num_classes) + "}]}";
}

inline void put_be32(std::ofstream& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.write(b, 4);
}

// One IDX split whose header says what the case needs: `images` square images of `side`
// pixels and `labels` labels (i % 10).
inline void write_idx(const std::string& dir, const std::string& prefix, uint32_t images,
                      uint32_t labels, uint32_t side) {
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
    fs::create_directories(data);
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
inline void replace_attr(hid_t loc, const char* name, hid_t file_type, hid_t mem_type,
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

inline void replace_string_attr(hid_t loc, const char* name, const std::string& value) {
  const hid_t type = H5Tcopy(H5T_C_S1);
  H5Tset_size(type, value.size() + 1);
  H5Tset_cset(type, H5T_CSET_UTF8);
  replace_attr(loc, name, type, type, {}, value.c_str());
  H5Tclose(type);
}

inline void edit_group(const std::string& path, const std::string& group,
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
inline void set_float(const std::string& path, const std::string& dataset, size_t index,
                      float value) {
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
inline void replace_float_dataset(const std::string& path, const std::string& dataset, hsize_t n) {
  edit_file(path, [&](hid_t file) {
    replace_dataset(file, dataset, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, std::vector<float>(n, 0.0f));
  });
}

// Re-saves the workspace model in the packed container (format v3, the default) and rewrites
// its /manifest through `edit` (nullptr: leaves it as it is).
inline void repack(const std::string& path, const std::function<void(nlohmann::json&)>& edit) {
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
inline std::map<std::string, std::string> snapshot(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    files[fs::relative(entry.path(), root).string()] =
        entry.is_regular_file() ? read_bytes(entry.path().string()) : std::string("<folder>");
  }
  return files;
}

inline std::string changes(const std::map<std::string, std::string>& before,
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
inline std::string expand(const std::string& text, const Workspace& ws) {
  std::string out;
  for (char c : text) out += c == '$' ? ws.dir.path().string() : std::string(1, c);
  return out;
}

// Every case runs under these limits (docs/reliability.md): an error within 10 s and under
// 1 GiB of resident memory. The address-space cap makes a runaway allocation fail at once
// rather than swap; it is well above what the binary maps at start (LibTorch, its threads).
constexpr double kTimeLimitSeconds = 10;
constexpr int64_t kMemoryLimitBytes = int64_t{1} << 30;
constexpr int64_t kAddressSpaceBytes = int64_t{6} << 30;

// What no error line may say: the allocator, LibTorch's internals or the TorchScript
// interpreter speaking instead of a message that names the culprit.
inline const std::vector<std::string>& leaked_internals() {
  static const std::vector<std::string> texts = {"bad_alloc",
                                                 "out of memory",
                                                 "DefaultCPUAllocator",
                                                 "can't allocate",
                                                 "TorchScript interpreter",
                                                 "Exception raised from",
                                                 "enforce fail",
                                                 "view size is not",
                                                 "integer multiplication overflow",
                                                 "Storage size calculation"};
  return texts;
}

inline void expect_rejected(const Workspace& ws, const std::string& args, int code,
                            const std::vector<std::string>& culprit) {
  const auto before = snapshot(ws.dir.path());
  const mcompress::testing::LimitedResult r =
      mcompress::testing::run_cli_limited(args, kTimeLimitSeconds, kAddressSpaceBytes);
  EXPECT_FALSE(r.timed_out) << "mcompress " << args << " ran past " << kTimeLimitSeconds << " s";
  EXPECT_LT(r.max_rss_bytes, kMemoryLimitBytes)
      << "mcompress " << args << " used " << (r.max_rss_bytes >> 20) << " MiB";
  for (const auto& text : leaked_internals()) {
    EXPECT_EQ(r.out.find(text), std::string::npos) << "the error leaks '" << text << "':\n"
                                                   << r.out;
  }
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

inline std::ostream& operator<<(std::ostream& out, const BadInput& c) { return out << c.name; }

// Commands that read a model file, one per kind of consumer.
inline std::string quantize(const Workspace& ws) {
  return "quantize " + ws.model + " --mode fp16 --data " + ws.data + " --out " + ws.out;
}
inline std::string eval(const Workspace& ws) { return "eval " + ws.model + " --data " + ws.data; }

inline std::string train_spec(Workspace& ws, const std::string& spec) {
  write_bytes(ws.file("spec.json"), spec);
  return "train --spec " + ws.file("spec.json") + " --data " + ws.data +
         " --epochs 1 --quiet --out " + ws.out;
}

// A graph document (docs/format.md §5) for 1x28x28 images and 10 classes whose nodes are
// `nodes` (the JSON list's content), ending in the value "logits".
inline std::string train_graph(Workspace& ws, const std::string& nodes) {
  return train_spec(ws, R"({"format":"mcompress-graph","version":1,
    "inputs":[{"name":"x","dtype":"float32","shape":["batch",1,28,28]}],"nodes":[)" +
                            nodes + R"(],"outputs":["logits"],
    "task":{"kind":"classification","num_classes":10}})");
}

// A recipe whose line 4 is the first stage.
inline std::string compress(Workspace& ws, const std::string& data, const std::string& stages) {
  write_bytes(ws.file("r.yaml"), "model: " + ws.model + "\ndata: {path: " + ws.data + data +
                                     "}\nstages:\n" + stages + "output: " + ws.out + "\n");
  return "compress " + ws.file("r.yaml");
}

}  // namespace mcompress::testing::bad_input
