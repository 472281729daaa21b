// The PyTorch round trip through the CLI: Python trains and saves a TorchScript model,
// `mcompress import` reads it, `mcompress prune` and `quantize` compress it, `mcompress export`
// writes it back, and Python checks the exported module against our runtime's outputs
// (tests/interop/python/torch_roundtrip.py states the tolerances).

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "mcompress/core/model_file.h"
#include "mcompress/runtime/executor.h"
#include "test_support.h"

namespace mcompress {
namespace {

using testing::TempDir;

const std::string kPython = "/usr/bin/python3";
const std::string kScript = std::string(MCOMPRESS_INTEROP_PYTHON_DIR) + "/torch_roundtrip.py";

using testing::ShellResult;

ShellResult run(const std::string& command) { return testing::run_shell(command); }

void write_f32(const std::string& path, const at::Tensor& t) {
  const at::Tensor c = t.to(at::kFloat).contiguous();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(c.data_ptr<float>()),
            static_cast<std::streamsize>(c.numel() * sizeof(float)));
}

at::Tensor runtime_output(const Model& model, runtime::KernelPolicy policy, const at::Tensor& x) {
  runtime::ExecutorOptions o;
  o.policy = policy;
  return runtime::Executor(model, o).run(x);
}

TEST(PyTorchRoundTrip, TrainImportCompressExportAndCompareInPython) {
#ifndef MCOMPRESS_CLI
  GTEST_SKIP() << "the mcompress CLI is not built (MCOMPRESS_BUILD_APPS=OFF)";
#else
  const ShellResult probe = run(kPython + " -c 'import torch, numpy'");
  if (probe.code != 0) {
    GTEST_SKIP() << kPython
                 << " cannot import torch and numpy (install python3-torch): " << probe.out;
  }
  TempDir dir;
  const std::string data = dir.file("data");
  std::filesystem::create_directories(data);
  const Dataset train = testing::block_images(512, 1);
  const Dataset test = testing::block_images(256, 2);
  testing::write_idx_folder(data, train, test);
  const std::string cli = MCOMPRESS_CLI;
  auto step = [](const std::string& command) {
    const ShellResult r = run(command);
    EXPECT_EQ(r.code, 0) << command << "\n" << r.out;
    return r.code == 0;
  };

  ASSERT_TRUE(
      step(kPython + " " + kScript + " train --data " + data + " --out " + dir.file("py.pt")));
  ASSERT_TRUE(step(cli + " import " + dir.file("py.pt") + " --out " + dir.file("imported.h5") +
                   " --input-shape 1,28,28 --mean 0.2860 --std 0.3530"));
  ASSERT_TRUE(step(cli + " prune " + dir.file("imported.h5") + " --out " + dir.file("pruned.h5") +
                   " --target 0.5 --finetune-epochs 0 --data " + data + " --threads 1"));
  ASSERT_TRUE(step(cli + " quantize " + dir.file("pruned.h5") + " --out " +
                   dir.file("compressed.h5") + " --mode int8-dynamic --data " + data +
                   " --threads 1"));
  ASSERT_TRUE(step(cli + " export " + dir.file("compressed.h5") + " --format torchscript --out " +
                   dir.file("compressed.pt")));

  // Our runtime's outputs on the first 64 test images, for Python to compare with.
  const at::Tensor x = test.x.slice(0, 0, 64);
  const Model imported = load_model(dir.file("imported.h5"));
  const Model compressed = load_model(dir.file("compressed.h5"));
  ASSERT_EQ(compressed.quant.mode, "int8-dynamic");
  ASSERT_FALSE(compressed.masks.empty());
  write_f32(dir.file("x.f32"), x);
  write_f32(dir.file("imported_fp32.f32"),
            runtime_output(imported, runtime::KernelPolicy::kFp32, x));
  write_f32(dir.file("compressed_fp32.f32"),
            runtime_output(compressed, runtime::KernelPolicy::kFp32, x));
  write_f32(dir.file("compressed_int8.f32"),
            runtime_output(compressed, runtime::KernelPolicy::kInt8, x));
  {
    std::ofstream names(dir.file("names.txt"));
    for (const auto& info : compressed.tensor_infos()) names << info.name << "\n";
  }
  const ShellResult check =
      run(kPython + " " + kScript + " check --original " + dir.file("py.pt") + " --exported " +
          dir.file("compressed.pt") + " --x " + dir.file("x.f32") + " --imported-fp32 " +
          dir.file("imported_fp32.f32") + " --compressed-fp32 " + dir.file("compressed_fp32.f32") +
          " --compressed-int8 " + dir.file("compressed_int8.f32") + " --names " +
          dir.file("names.txt") + " --mode int8-dynamic --min-zeros 0.45");
  EXPECT_EQ(check.code, 0) << check.out;
  std::cout << check.out;
#endif
}

TEST(PyTorchRoundTrip, CliErrorsAreOneLineNamingTheCulprit) {
#ifndef MCOMPRESS_CLI
  GTEST_SKIP() << "the mcompress CLI is not built (MCOMPRESS_BUILD_APPS=OFF)";
#else
  TempDir dir;
  const ShellResult r = run(std::string(MCOMPRESS_CLI) + " export " + dir.file("m.h5") +
                            " --format tflite --out " + dir.file("m.tflite"));
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("mcompress: error: unknown --format 'tflite'; accepted: torchscript"),
            std::string::npos)
      << r.out;
  const ShellResult missing = run(std::string(MCOMPRESS_CLI) + " import " + dir.file("none.pt") +
                                  " --out " + dir.file("m.h5"));
  EXPECT_NE(missing.code, 0);
  EXPECT_NE(missing.out.find("none.pt: no such file"), std::string::npos) << missing.out;
  EXPECT_FALSE(std::filesystem::exists(dir.file("m.h5")));
  // Errors are one line, naming the file (and the module).
  const std::string fixtures = std::string(MCOMPRESS_TEST_DATA_DIR) + "/interop/";
  const ShellResult gelu = run(std::string(MCOMPRESS_CLI) + " import " + fixtures + "gelu.pt" +
                               " --input-shape 4 --out " + dir.file("m.h5"));
  EXPECT_EQ(gelu.code, 1);
  EXPECT_EQ(gelu.out, "mcompress: error: " + fixtures +
                          "gelu.pt: unsupported module 'features.3' of type GELU\n");
  testing::write_bytes(dir.file("cut.pt"), "PK\x03\x04 not really a zip");
  const ShellResult cut = run(std::string(MCOMPRESS_CLI) + " import " + dir.file("cut.pt") +
                              " --out " + dir.file("m.h5"));
  EXPECT_EQ(cut.code, 1);
  EXPECT_NE(cut.out.find("cut.pt: not a TorchScript file saved by torch.jit.save ("),
            std::string::npos)
      << cut.out;
  EXPECT_EQ(std::count(cut.out.begin(), cut.out.end(), '\n'), 1) << cut.out;
  EXPECT_FALSE(std::filesystem::exists(dir.file("m.h5")));
#endif
}

}  // namespace
}  // namespace mcompress
