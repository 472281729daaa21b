// Golden files of every format version ever written (tests/data/format-v*/, tests/data/README.md):
// each must keep loading to the same tensors.

#include <ATen/ATen.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "mcompress/core/model_file.h"
#include "test_support.h"

namespace mcompress {
namespace {

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

// The model has exactly these tensors, each with its element count, sums and mask.
void expect_golden_tensors(const Model& model, const std::vector<GoldenTensor>& tensors) {
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
}

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
    expect_golden_tensors(model, tensors);
    if (file == "tiny_dense.h5") {  // v1: variable-length strings
      EXPECT_EQ(model.history,
                std::vector<std::string>{R"({"stage":"train","metrics":{"accuracy":0.5}})"});
      EXPECT_EQ(model.recipe, "model: tiny\nstages: []\n");
    }
  }
}

// The sums above pin each tensor's values; this pins them bit for bit: every version's file
// holds the same float32 bytes in every tensor, and the same masks.
TEST(GoldenFileBitsTest, EveryVersionLoadsToTheSameBytes) {
  for (const std::string file : {"mlp_sparse.h5", "tiny_dense.h5"}) {
    SCOPED_TRACE(file);
    const auto path = [&](int version) {
      return std::string(MCOMPRESS_TEST_DATA_DIR) + "/format-v" + std::to_string(version) + "/" +
             file;
    };
    const Model first = load_model(path(1));
    for (int version : {2, 3}) {
      SCOPED_TRACE("v" + std::to_string(version));
      const Model other = load_model(path(version));
      for (const TensorInfo& info : first.tensor_infos()) {
        SCOPED_TRACE(info.name);
        const at::Tensor a = first.tensor(info.name).contiguous();
        const at::Tensor b = other.tensor(info.name).contiguous();
        ASSERT_EQ(a.sizes(), b.sizes());
        ASSERT_EQ(a.scalar_type(), b.scalar_type());
        EXPECT_EQ(std::memcmp(a.data_ptr(), b.data_ptr(), a.nbytes()), 0);
        EXPECT_EQ(first.masks.count(info.name), other.masks.count(info.name));
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Versions, GoldenFileTest, ::testing::Values(1, 2, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return "v" + std::to_string(info.param);
                         });

// Version 4: a graph model (its arch is the graph document), written by make_fuzz_seeds as the
// fuzz seed tiny_graph.h5: a residual block with a renamed parameter (block.conv.weight).
TEST(GoldenFileV4Test, AGraphModelLoadsToTheSameTensors) {
  const std::string path = std::string(MCOMPRESS_TEST_DATA_DIR) + "/format-v4/tiny_graph.h5";
  const Model model = load_model(path);
  EXPECT_EQ(inspect_model_file(path).format_version, 4);
  EXPECT_FALSE(model.is_sequential());
  EXPECT_EQ(model.name(), "tiny-graph");
  EXPECT_EQ(model.seed, 7u);
  EXPECT_EQ(model.history,
            std::vector<std::string>{R"({"stage":"train","metrics":{"accuracy":0.5}})"});
  const std::vector<GoldenTensor> tensors = {
      {"conv1.weight", 18, -0.494731497, 2.43911556, false},
      {"bn1.weight", 2, 2, 2, false},
      {"bn1.bias", 2, 0, 0, false},
      {"bn1.running_mean", 2, 0, 0, false},
      {"bn1.running_var", 2, 2, 2, false},
      {"block.conv.weight", 18, 1.83563157, 2.99005853, false},
      {"conv2.bias", 2, -0.259874389, 0.259874389, false},
      {"fc.weight", 6, -0.385474488, 2.28600143, false},
      {"fc.bias", 3, 0.60593944, 0.850828476, false}};
  expect_golden_tensors(model, tensors);
}

}  // namespace
}  // namespace mcompress
