// The teacher's outputs: runtime logits (int8 kernels for an int8 teacher), the bounded cache,
// and the hint activation.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/distill/teacher.h"
#include "mcompress/runtime/executor.h"
#include "test_support.h"
#include "trained_teacher.h"

namespace mcompress {
namespace {

class TeacherOutputsTest : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

runtime::Executor executor(const Model& model, runtime::KernelPolicy policy) {
  runtime::ExecutorOptions eo;
  eo.policy = policy;
  return runtime::Executor(model, eo);
}

// The executor over `x` in the batches TeacherOutputs fills its cache with (256 rows).
at::Tensor run_in_batches(const runtime::Executor& exec, const at::Tensor& x) {
  std::vector<at::Tensor> parts;
  for (int64_t begin = 0; begin < x.size(0); begin += 256) {
    parts.push_back(exec.run(x.slice(0, begin, std::min(begin + 256, x.size(0)))));
  }
  return torch::cat(parts);
}

// Rows in a scrambled order with a repeat, as a training batch might not have but could.
at::Tensor some_rows() { return torch::tensor({17, 3, 300, 3, 0, 255, 42}, torch::kLong); }

// int8-dynamic form of a model's linear weights, made by hand (the distill tests do not link
// quant/): symmetric per-tensor codes, the fp32 masters set to their dequantized values.
Model int8_dynamic(const Model& fp32) {
  Model m = fp32.clone();
  for (const auto& info : m.tensor_infos()) {
    if (info.role != TensorRole::kWeight) continue;
    auto& w = m.tensor(info.name);
    const double scale = w.abs().max().item<double>() / 127.0;
    QuantizedTensor q;
    q.encoding = Encoding::kInt8;
    q.values = torch::round(w / scale).clamp(-127, 127).to(torch::kChar);
    q.scale = torch::tensor({static_cast<float>(scale)});
    q.zero_point = torch::zeros({1}, torch::kInt);
    q.axis = -1;
    w.copy_(q.dequantize());
    m.quant.tensors[info.name] = q;
  }
  m.quant.mode = "int8-dynamic";
  return m;
}

TEST_F(TeacherOutputsTest, CachedLogitsAreTheRuntimeLogits) {
  const Model& teacher = testing::trained_teacher("lenet5");
  const Dataset& data = testing::distill_train_data();
  const distill::TeacherOutputs cached(teacher, data, {});
  distill::TeacherOutputOptions per_batch_options;
  per_batch_options.cache_limit_bytes = 0;
  const distill::TeacherOutputs per_batch(teacher, data, per_batch_options);
  ASSERT_TRUE(cached.logits_cached());
  EXPECT_FALSE(per_batch.logits_cached());
  EXPECT_EQ(cached.cache_bytes(), data.size() * 10 * 4);
  EXPECT_EQ(per_batch.cache_bytes(), 0);

  const auto exec = executor(teacher, runtime::KernelPolicy::kInt8);
  const auto rows = some_rows();
  // Per batch: exactly the runtime on those rows.
  EXPECT_TRUE(per_batch.logits(rows).equal(exec.run(data.x.index_select(0, rows))));
  // Cached: the runtime over the whole set in batches of 256, looked up. Another batch
  // composition may change the last bits of a GEMM, hence the tolerance between the two
  // (float32 logits of size ~10).
  const auto from_cache = cached.logits(rows);
  EXPECT_TRUE(from_cache.equal(run_in_batches(exec, data.x).index_select(0, rows)));
  EXPECT_TRUE(from_cache.allclose(per_batch.logits(rows), 1e-5, 1e-5));
  EXPECT_FALSE(from_cache.requires_grad());
}

TEST_F(TeacherOutputsTest, CacheLimitIsRespected) {
  const Model& teacher = testing::trained_teacher("lenet5");
  const Dataset& data = testing::distill_train_data();
  const int64_t logit_bytes = data.size() * 10 * 4;
  distill::TeacherOutputOptions o;
  o.cache_limit_bytes = logit_bytes - 1;
  EXPECT_FALSE(distill::TeacherOutputs(teacher, data, o).logits_cached());
  o.cache_limit_bytes = logit_bytes;
  EXPECT_TRUE(distill::TeacherOutputs(teacher, data, o).logits_cached());

  // A hint activation [16, 10, 10] needs 6400 bytes per example on top of the logits.
  o.hint_key = "4";
  const distill::TeacherOutputs logits_only(teacher, data, o);
  EXPECT_TRUE(logits_only.logits_cached());
  EXPECT_FALSE(logits_only.features_cached());
  EXPECT_EQ(logits_only.cache_bytes(), logit_bytes);
  o.cache_limit_bytes = logit_bytes + data.size() * 16 * 10 * 10 * 4;
  const distill::TeacherOutputs both(teacher, data, o);
  EXPECT_TRUE(both.features_cached());
  EXPECT_EQ(both.cache_bytes(), o.cache_limit_bytes);
  const auto rows = some_rows();
  EXPECT_TRUE(both.features(rows).allclose(logits_only.features(rows), 1e-5, 1e-5));
}

TEST_F(TeacherOutputsTest, Int8TeacherRunsItsInt8Kernels) {
  const Model teacher = int8_dynamic(testing::trained_teacher("mlp"));
  const Dataset& data = testing::distill_train_data();
  const distill::TeacherOutputs out(teacher, data, {});
  const auto rows = some_rows();
  const auto logits = out.logits(rows);
  const auto x = data.x.index_select(0, rows);
  // Dynamic quantization picks activation ranges per batch: the cached logits are those of
  // the batches that filled the cache.
  const auto int8 =
      run_in_batches(executor(teacher, runtime::KernelPolicy::kInt8), data.x).index_select(0, rows);
  const auto fp32 = executor(teacher, runtime::KernelPolicy::kFp32).run(x);
  EXPECT_TRUE(logits.equal(int8));
  // Dynamic quantization of the activations moves the logits off the fp32 plan's.
  EXPECT_FALSE(logits.allclose(fp32, 1e-6, 1e-6)) << (logits - fp32).abs().max().item<double>();
  EXPECT_TRUE(logits.allclose(fp32, 0.1, 0.1));
}

TEST_F(TeacherOutputsTest, HintFeaturesAreTheRuntimeActivation) {
  const Model& teacher = testing::trained_teacher("lenet5");
  const Dataset& data = testing::distill_train_data();
  distill::TeacherOutputOptions o;
  o.hint_key = "4";
  o.cache_limit_bytes = 0;
  const distill::TeacherOutputs out(teacher, data, o);
  EXPECT_EQ(out.feature_shape(), (std::vector<int64_t>{16, 10, 10}));
  const auto rows = some_rows();
  at::Tensor want;
  executor(teacher, runtime::KernelPolicy::kFp32)
      .run_observed(data.x.index_select(0, rows), [&](const std::string& key, const at::Tensor& t) {
        if (key == "4") want = t.clone();
      });
  EXPECT_TRUE(out.features(rows).equal(want));

  const auto keys = distill::activations(teacher);
  ASSERT_EQ(keys.size(), 6u);  // input, conv+relu 1 and 4, linear+relu 8 and 10, linear 11
  EXPECT_EQ(keys[0].key, "input");
  EXPECT_EQ(keys[5].key, "11");
  EXPECT_EQ(keys[5].shape, (std::vector<int64_t>{10}));

  o.hint_key = "5";  // a pool: no activation of its own
  ASSERT_THROWS_WITH(
      distill::TeacherOutputs(teacher, data, o), ConfigError,
      "hint_teacher: teacher 'lenet5' has no activation '5'; accepted: input, 1, 4, 8, 10, 11");
  ASSERT_THROWS_WITH(distill::TeacherOutputs(teacher, data, {}).features(rows), ModelError,
                     "without a hint");
}

TEST_F(TeacherOutputsTest, DataThatDoesNotFitTheTeacherIsRejected) {
  Dataset flat = testing::distill_train_data();
  flat.x = flat.x.reshape({flat.size(), 784});
  ASSERT_THROWS_WITH(distill::TeacherOutputs(testing::trained_teacher("lenet5"), flat, {}),
                     DataError, "teacher input");
}

}  // namespace
}  // namespace mcompress
