// The sparse (Eigen CSR) Linear kernel against the dense fp32 one, and how the executor offers,
// times, forces and reports it.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <string>
#include <tuple>

#include "mcompress/core/error.h"
#include "mcompress/core/zoo.h"
#include "mcompress/runtime/executor.h"
#include "runtime_support.h"
#include "test_support.h"

namespace mcompress {
namespace {

using testing::run_with;

// Both kernels sum the same products in different orders: float rounding only, ~1e-7
// relative for the fan-ins used here.
constexpr double kMaxRelErrSparse = 1e-5;

double max_rel_err(const at::Tensor& got, const at::Tensor& ref) {
  return (got - ref).abs().max().item<double>() / std::max(1e-30, ref.abs().max().item<double>());
}

// Zeroes all but the largest-magnitude `density` fraction of each row of every Linear weight.
void prune_linear_weights(Model& m, double density) {
  for (const auto& info : m.tensor_infos()) {
    const auto& layer = m.spec().layers[static_cast<size_t>(info.layer)];
    if (layer.type != LayerType::kLinear || info.role != TensorRole::kWeight) continue;
    const auto& w = m.tensor(info.name);
    const auto keep = static_cast<int64_t>(density * static_cast<double>(w.size(1)));
    auto mask = torch::zeros_like(w, torch::kBool);
    if (keep > 0) mask.scatter_(1, std::get<1>(w.abs().topk(keep, 1)), true);
    m.set_mask(info.name, mask);
  }
}

// One Linear layer of odd sizes (SIMD tails) with a random sparse weight, optionally + relu.
Model one_linear(double density, bool relu, uint64_t seed) {
  std::string layers = R"({"type":"linear","out_features":127})";
  if (relu) layers += R"(,{"type":"relu"})";
  Model m =
      Model::initialize(ArchSpec::from_json_text(
                            R"({"input_shape":[255],"num_classes":127,"layers":[)" + layers + "]}"),
                        seed);
  torch::manual_seed(seed);
  auto& w = m.tensor("0.weight");
  w.copy_(torch::randn_like(w));
  m.tensor("0.bias").copy_(torch::randn({127}));
  m.set_mask("0.weight", torch::rand_like(w) < density);
  return m;
}

class SparseKernelTest : public ::testing::TestWithParam<std::tuple<int64_t, bool, double>> {};

TEST_P(SparseKernelTest, MatchesDenseLinear) {
  const auto [batch, relu, density] = GetParam();
  const Model m = one_linear(density, relu, 17);
  torch::manual_seed(23);
  const auto x = torch::randn({batch, 255});
  const auto ref = run_with(m, runtime::KernelPolicy::kFp32, x);
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kSparse;
  const runtime::Executor exec(m, o);
  ASSERT_EQ(exec.sparse_layers(), 1);
  const auto got = exec.run(x);
  ASSERT_EQ(got.sizes(), ref.sizes());
  EXPECT_LT(max_rel_err(got, ref), kMaxRelErrSparse);
  if (relu) {
    EXPECT_GE(got.min().item<float>(), 0.0f);
  }
}

// Batches below 4 run one sparse matrix-vector product per example; 4 and more the transposed
// product in blocks of 16 examples (8 and 17 leave a partial block). Density 0 leaves only the
// bias.
INSTANTIATE_TEST_SUITE_P(BatchReluDensity, SparseKernelTest,
                         ::testing::Combine(::testing::Values(1, 3, 8, 17, 64), ::testing::Bool(),
                                            ::testing::Values(0.0, 0.05, 0.3)),
                         [](const auto& info) {
                           return "batch" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_relu" : "") + "_density" +
                                  std::to_string(static_cast<int>(std::get<2>(info.param) * 100));
                         });

TEST(SparseExecutorTest, ForcedSparseMatchesFp32OnPrunedMlp) {
  Model m = Model::initialize(zoo_spec("mlp"), 3);
  prune_linear_weights(m, 0.1);
  torch::manual_seed(4);
  const auto x = torch::rand({16, 1, 28, 28});
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kSparse;
  runtime::Executor exec(m, o);
  EXPECT_LT(max_rel_err(exec.run(x), run_with(m, runtime::KernelPolicy::kFp32, x)),
            kMaxRelErrSparse);
  EXPECT_EQ(exec.sparse_layers(), 3);
  EXPECT_EQ(exec.int8_layers(), 0);
  int linear = 0;
  for (const auto& s : exec.plan()) {
    if (s.op.rfind("Gemm", 0) != 0) continue;
    ++linear;
    EXPECT_EQ(s.kernel, "fp32-sparse") << s.layers;
    const auto at = s.note.find("density ");  // 78/784, 30/300, 10/100
    ASSERT_NE(at, std::string::npos) << s.note;
    EXPECT_NEAR(std::stod(s.note.substr(at + 8)), 0.1, 0.002) << s.note;
  }
  EXPECT_EQ(linear, 3);
}

TEST(SparseExecutorTest, OnlySparseEnoughLayersAreCandidates) {
  Model m = Model::initialize(zoo_spec("mlp"), 3);
  prune_linear_weights(m, 0.7);
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kSparse;
  runtime::Executor exec(m, o);
  EXPECT_EQ(exec.sparse_layers(), 0);
  for (const auto& s : exec.plan()) {
    if (s.op.rfind("Gemm", 0) != 0) continue;
    EXPECT_EQ(s.kernel, "fp32-dense");
    EXPECT_NE(s.note.find("> sparse bound 0.50"), std::string::npos) << s.note;
  }
  // The bound is an option: raised, the same layers become candidates.
  o.sparse_candidate_density = 0.8;
  EXPECT_EQ(runtime::Executor(m, o).sparse_layers(), 3);
  // An unpruned model: no density notes, no sparse forms.
  runtime::Executor dense(Model::initialize(zoo_spec("mlp"), 3), o);
  EXPECT_EQ(dense.sparse_layers(), 0);
  for (const auto& s : dense.plan()) EXPECT_EQ(s.note.find("density"), std::string::npos) << s.note;
}

// Whatever the timings on this (possibly busy) machine, the auto policy must time the sparse
// candidates and pick consistently with what it measured.
TEST(SparseExecutorTest, AutoTimesSparseKernelsAndChoosesByTheTimings) {
  Model m = Model::initialize(zoo_spec("mlp"), 3);
  prune_linear_weights(m, 0.05);
  runtime::ExecutorOptions o;
  o.batch_size = 1;
  runtime::Executor exec(m, o);
  const std::string& note = exec.plan_note();
  EXPECT_NE(note.find("at batch 1"), std::string::npos) << note;
  const bool all_fp32 = note.rfind("auto: fp32 everywhere", 0) == 0;
  int timed = 0;
  for (const auto& s : exec.plan()) {
    if (s.op.rfind("Gemm", 0) != 0) continue;
    EXPECT_GT(s.fp32_ms, 0.0) << s.layers;
    EXPECT_GT(s.sparse_ms, 0.0) << s.layers;
    EXPECT_EQ(s.int8_ms, 0.0) << s.layers;
    const bool sparse_faster = s.sparse_ms < s.fp32_ms;
    EXPECT_EQ(s.kernel, sparse_faster && !all_fp32 ? "fp32-sparse" : "fp32-dense")
        << s.layers << ": " << s.fp32_ms << " vs " << s.sparse_ms << " ms; " << note;
    ++timed;
  }
  EXPECT_EQ(timed, 3);
  torch::manual_seed(6);
  const auto x = torch::rand({5, 1, 28, 28});
  EXPECT_LT(max_rel_err(exec.run(x), run_with(m, runtime::KernelPolicy::kFp32, x)),
            kMaxRelErrSparse);
}

// Pruning and int8 compose: a pruned int8-dynamic model offers both forms; the sparse kernel
// runs on the fp32 masters, which hold the dequantized (still zero where pruned) values.
TEST(SparseExecutorTest, PrunedInt8ModelOffersBothForms) {
  Model m = Model::initialize(zoo_spec("mlp"), 3);
  prune_linear_weights(m, 0.05);
  for (const char* name : {"1.weight", "3.weight", "5.weight"}) {
    auto& w = m.tensor(name);
    const auto scale = w.abs().amax(1) / 127;
    QuantizedTensor q;
    q.encoding = Encoding::kInt8;
    q.scale = scale;
    q.zero_point = torch::zeros({w.size(0)}, torch::kInt);
    q.axis = 0;
    q.values = (w / scale.unsqueeze(1)).round().clamp(-127, 127).to(torch::kChar);
    w.copy_(q.dequantize());
    m.quant.tensors[name] = q;
  }
  m.quant.mode = "int8-dynamic";
  runtime::ExecutorOptions o;
  o.batch_size = 4;
  runtime::Executor exec(m, o);
  for (const auto& s : exec.plan()) {
    if (s.op.rfind("Gemm", 0) != 0) continue;
    EXPECT_GT(s.fp32_ms, 0.0);
    EXPECT_GT(s.int8_ms, 0.0);
    EXPECT_GT(s.sparse_ms, 0.0);
  }
  torch::manual_seed(8);
  const auto x = torch::rand({4, 1, 28, 28});
  EXPECT_LT(max_rel_err(run_with(m, runtime::KernelPolicy::kSparse, x),
                        run_with(m, runtime::KernelPolicy::kFp32, x)),
            kMaxRelErrSparse);
}

TEST(SparseExecutorTest, PolicyNames) {
  EXPECT_EQ(runtime::parse_kernel_policy("sparse"), runtime::KernelPolicy::kSparse);
  EXPECT_EQ(runtime::to_string(runtime::KernelPolicy::kSparse), "sparse");
  ASSERT_THROWS_WITH(runtime::parse_kernel_policy("csr"), ConfigError,
                     "accepted: auto, int8, fp32, sparse");
}

}  // namespace
}  // namespace mcompress
