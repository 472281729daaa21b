// `mcompress export --format onnx`: the file it writes, its summary, and its errors.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli_runner.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/zoo.h"
#include "test_support.h"

namespace mcompress {
namespace {

using testing::run_cli;

TEST(ExportOnnxCli, WritesTheModelAndSummarisesIt) {
  testing::TempDir tmp;
  save_model(Model::initialize(zoo_spec("lenet5-small"), 1), tmp.file("m.h5"));
  const auto r =
      run_cli("export " + tmp.file("m.h5") + " --format onnx --out " + tmp.file("m.onnx"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("ONNX opset 13"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Conv 2"), std::string::npos) << r.out;
  EXPECT_GT(std::filesystem::file_size(tmp.file("m.onnx")), 7674u * 4);  // its fp32 weights

  // An existing output needs --force; an unknown format is a usage error.
  const auto again =
      run_cli("export " + tmp.file("m.h5") + " --format onnx --out " + tmp.file("m.onnx"));
  EXPECT_NE(again.code, 0);
  EXPECT_NE(again.out.find("--force"), std::string::npos) << again.out;
  EXPECT_EQ(
      run_cli("export " + tmp.file("m.h5") + " --format onnx --force --out " + tmp.file("m.onnx"))
          .code,
      0);
  const auto bad =
      run_cli("export " + tmp.file("m.h5") + " --format tflite --out " + tmp.file("m.tflite"));
  EXPECT_EQ(bad.code, 2) << bad.out;
  EXPECT_NE(bad.out.find("mcompress: error: unknown --format 'tflite'"), std::string::npos)
      << bad.out;
  EXPECT_FALSE(std::filesystem::exists(tmp.file("m.tflite")));
}

}  // namespace
}  // namespace mcompress
