// Per-layer sensitivity and the accuracy guard: a layer made clearly worse must rank first and
// be the first one the guard keeps in fp32; a generous budget changes nothing; a zero budget
// always ends within budget.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <string>

#include "mcompress/core/error.h"
#include "mcompress/core/train.h"
#include "mcompress/core/zoo.h"
#include "mcompress/quant/quantize.h"
#include "mcompress/quant/sensitivity.h"
#include "mcompress/runtime/executor.h"
#include "test_support.h"

namespace mcompress::quant {
namespace {

double accuracy(const Model& m, const Dataset& val, runtime::KernelPolicy policy) {
  runtime::ExecutorOptions o;
  o.policy = policy;
  return runtime::evaluate(runtime::Executor(m, o), val).accuracy;
}

// Replaces a quantized tensor's int8 form by a per-tensor one whose scale is `coarseness` times
// max|W| (and the master tensor by its dequantized values, as the stage keeps them). From 2 up
// every code is 0: the layer's int8 form computes nothing but its bias, and the model's
// predictions become constant (10% on the ten balanced classes). A trained lenet5-small shrugs
// off milder damage (codes in {-1, 0, 1} keep 100% on this easy problem), hence 3.
void damage(Model& m, const std::string& name, double coarseness = 3.0) {
  const at::Tensor w = m.tensor(name);
  const double scale = coarseness * w.abs().max().item<double>();
  QuantizedTensor q;
  q.encoding = Encoding::kInt8;
  q.axis = -1;
  q.scale = torch::full({1}, scale, torch::kFloat);
  q.zero_point = torch::zeros({1}, torch::kInt);
  q.values = torch::round(w / scale).clamp(-127, 127).to(torch::kChar);
  m.tensor(name).copy_(q.dequantize());
  m.quant.tensors[name] = q;
}

class SensitivityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    const auto train_data = testing::block_images(300, 11);
    val_ = std::make_unique<Dataset>(testing::block_images(120, 12));
    fp32_ = std::make_unique<Model>(Model::initialize(zoo_spec("lenet5-small"), 4));
    TrainOptions o;
    o.epochs = 2;
    o.batch_size = 32;
    o.lr = 3e-3;
    o.progress = false;
    train_model(*fp32_, train_data, *val_, o);
    int8_ = std::make_unique<Model>(fp32_->clone());
    QuantizeOptions q;
    q.mode = QuantMode::kInt8Static;
    q.calib_batches = 2;
    q.calib_batch_size = 32;
    quantize_model(*int8_, q, train_data, Dataset{});
  }
  static void TearDownTestSuite() {
    val_.reset();
    fp32_.reset();
    int8_.reset();
  }
  void SetUp() override { at::set_num_threads(1); }

  static std::unique_ptr<Dataset> val_;
  static std::unique_ptr<Model> fp32_;  // lenet5-small, briefly trained
  static std::unique_ptr<Model> int8_;  // its int8-static form (4 int8 weights)
};
std::unique_ptr<Dataset> SensitivityTest::val_;
std::unique_ptr<Model> SensitivityTest::fp32_;
std::unique_ptr<Model> SensitivityTest::int8_;

constexpr const char* kDamaged = "7.weight";  // the first linear layer (200 → 32)

TEST_F(SensitivityTest, ModelIsTrainedAndItsInt8FormIsClose) {
  const double fp32 = accuracy(*fp32_, *val_, runtime::KernelPolicy::kFp32);
  EXPECT_GT(fp32, 0.8);
  EXPECT_NEAR(accuracy(*int8_, *val_, runtime::KernelPolicy::kInt8), fp32, 0.05);
  EXPECT_EQ(int8_->quant.tensors.size(), 4u);
}

TEST_F(SensitivityTest, OneRowPerInt8TensorSortedByDrop) {
  const auto rows = sensitivity(*fp32_, *int8_, *val_);
  ASSERT_EQ(rows.size(), 4u);
  const double fp32 = accuracy(*fp32_, *val_, runtime::KernelPolicy::kFp32);
  std::set<std::string> names;
  for (size_t i = 0; i < rows.size(); ++i) {
    names.insert(rows[i].tensor);
    EXPECT_NEAR(rows[i].drop_points, (fp32 - rows[i].accuracy) * 100, 1e-9);
    if (i > 0) {
      EXPECT_GE(rows[i - 1].drop_points, rows[i].drop_points);
    }
    // Every layer of a sound int8 model costs little on its own.
    EXPECT_LT(rows[i].drop_points, 5.0) << rows[i].tensor;
  }
  EXPECT_EQ(names, (std::set<std::string>{"0.weight", "3.weight", "7.weight", "9.weight"}));
}

TEST_F(SensitivityTest, ProbesRunOnlyTheProbedLayerInt8) {
  // A damaged layer must not leak into the other probes: each sees its own layer only.
  Model damaged = int8_->clone();
  damage(damaged, kDamaged);
  const auto rows = sensitivity(*fp32_, damaged, *val_);
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& r : rows) {
    if (r.tensor != kDamaged) {
      EXPECT_LT(r.drop_points, 5.0) << r.tensor;
    }
  }
  // The probe of one layer equals a model built by hand with only that layer int8.
  Model only = damaged.clone();
  for (const std::string other : {"0.weight", "3.weight", "9.weight"}) {
    only.quant.tensors.erase(other);
    only.tensor(other).copy_(fp32_->tensor(other));
  }
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kInt8;
  EXPECT_EQ(runtime::Executor(only, o).int8_layers(), 1);
  for (const auto& r : rows) {
    if (r.tensor == kDamaged) {
      EXPECT_DOUBLE_EQ(r.accuracy, accuracy(only, *val_, runtime::KernelPolicy::kInt8));
    }
  }
  // Neither input was changed.
  EXPECT_EQ(damaged.quant.tensors.size(), 4u);
  EXPECT_FALSE(torch::equal(damaged.tensor(kDamaged), fp32_->tensor(kDamaged)));
}

TEST_F(SensitivityTest, DamagedLayerRanksFirstAndIsTheFirstKeptFp32) {
  Model damaged = int8_->clone();
  damage(damaged, kDamaged);
  const double fp32 = accuracy(*fp32_, *val_, runtime::KernelPolicy::kFp32);
  const double before = accuracy(damaged, *val_, runtime::KernelPolicy::kInt8);
  ASSERT_GT((fp32 - before) * 100, 20.0) << "the damage should cost accuracy";

  const auto rows = sensitivity(*fp32_, damaged, *val_);
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows[0].tensor, kDamaged);
  EXPECT_GT(rows[0].drop_points, 20.0);
  EXPECT_GT(rows[0].drop_points, rows[1].drop_points + 15.0);

  const auto g = apply_accuracy_guard(damaged, *fp32_, *val_, 2.0);
  ASSERT_FALSE(g.kept_fp32.empty());
  EXPECT_EQ(g.kept_fp32[0], kDamaged);
  EXPECT_TRUE(g.budget_met);
  EXPECT_DOUBLE_EQ(g.fp32_accuracy, fp32);
  EXPECT_DOUBLE_EQ(g.accuracy_before, before);
  EXPECT_LE(g.drop_after_points(), 2.0 + 1e-9);
  EXPECT_EQ(g.sensitivity.size(), 4u);
  EXPECT_EQ(g.sensitivity[0].tensor, kDamaged);
  // The damaged layer is fp32 again: out of quant.tensors, master restored, runtime agrees.
  EXPECT_EQ(damaged.quant.tensors.count(kDamaged), 0u);
  EXPECT_TRUE(torch::equal(damaged.tensor(kDamaged), fp32_->tensor(kDamaged)));
  EXPECT_DOUBLE_EQ(accuracy(damaged, *val_, runtime::KernelPolicy::kInt8), g.accuracy_after);
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kInt8;
  EXPECT_EQ(runtime::Executor(damaged, o).int8_layers(),
            static_cast<int64_t>(4 - g.kept_fp32.size()));
  // int8-static activation ranges stay as calibrated.
  EXPECT_EQ(damaged.quant.activations.size(), int8_->quant.activations.size());
}

TEST_F(SensitivityTest, GenerousBudgetChangesNothing) {
  Model m = int8_->clone();
  const auto g = apply_accuracy_guard(m, *fp32_, *val_, 100.0);
  EXPECT_TRUE(g.budget_met);
  EXPECT_TRUE(g.kept_fp32.empty());
  EXPECT_TRUE(g.sensitivity.empty());  // no ranking needed
  EXPECT_DOUBLE_EQ(g.accuracy_after, g.accuracy_before);
  ASSERT_EQ(m.quant.tensors.size(), int8_->quant.tensors.size());
  for (const auto& [name, q] : int8_->quant.tensors) {
    ASSERT_EQ(m.quant.tensors.count(name), 1u) << name;
    EXPECT_TRUE(torch::equal(m.quant.tensors.at(name).values, q.values)) << name;
  }
  for (const auto& [name, t] : int8_->tensors())
    EXPECT_TRUE(torch::equal(m.tensor(name), t)) << name;
  EXPECT_EQ(m.quant.activations.size(), int8_->quant.activations.size());
}

TEST_F(SensitivityTest, ZeroBudgetOnALossyModelEndsWithinBudget) {
  Model m = int8_->clone();
  damage(m, kDamaged);
  damage(m, "3.weight");
  const auto g = apply_accuracy_guard(m, *fp32_, *val_, 0.0);
  EXPECT_LT(g.accuracy_before, g.fp32_accuracy);
  EXPECT_TRUE(g.budget_met);
  EXPECT_GE(g.accuracy_after, g.fp32_accuracy - 1e-12);
  EXPECT_GE(g.kept_fp32.size(), 2u);
  const std::set<std::string> kept(g.kept_fp32.begin(), g.kept_fp32.end());
  EXPECT_EQ(kept.count(kDamaged), 1u);
  EXPECT_EQ(kept.count("3.weight"), 1u);
  for (const auto& name : g.kept_fp32) {
    EXPECT_EQ(m.quant.tensors.count(name), 0u) << name;
    EXPECT_TRUE(torch::equal(m.tensor(name), fp32_->tensor(name))) << name;
  }
}

TEST_F(SensitivityTest, EveryLayerDamagedEndsAllFp32AtTheFp32Accuracy) {
  Model m = int8_->clone();
  for (const auto& name : {"0.weight", "3.weight", "7.weight", "9.weight"}) damage(m, name);
  const auto g = apply_accuracy_guard(m, *fp32_, *val_, 0.0);
  EXPECT_TRUE(g.budget_met);
  EXPECT_EQ(g.kept_fp32.size(), 4u);
  EXPECT_TRUE(m.quant.tensors.empty());
  EXPECT_EQ(m.quant.mode, "int8-static");
  // Nothing int8 is left: the runtime runs the fp32 weights, so the accuracy is the fp32 one.
  EXPECT_DOUBLE_EQ(g.accuracy_after, g.fp32_accuracy);
  for (const auto& [name, t] : fp32_->tensors())
    EXPECT_TRUE(torch::equal(m.tensor(name), t)) << name;
}

TEST_F(SensitivityTest, Int8DynamicRanksItsLinearLayers) {
  Model m = fp32_->clone();
  QuantizeOptions q;
  q.mode = QuantMode::kInt8Dynamic;
  quantize_model(m, q, Dataset{}, Dataset{});
  damage(m, "9.weight");
  const auto rows = sensitivity(*fp32_, m, *val_);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].tensor, "9.weight");
  EXPECT_EQ(rows[1].tensor, "7.weight");
}

TEST_F(SensitivityTest, NothingInt8GivesNoRows) {
  Model half = fp32_->clone();
  QuantizeOptions q;
  q.mode = QuantMode::kFp16;
  quantize_model(half, q, Dataset{}, Dataset{});
  EXPECT_TRUE(sensitivity(*fp32_, half, *val_).empty());
  const auto g = apply_accuracy_guard(half, *fp32_, *val_, 100.0);
  EXPECT_TRUE(g.kept_fp32.empty());
  EXPECT_EQ(half.quant.tensors.size(), fp32_->tensor_infos().size());  // fp16 entries kept
}

TEST_F(SensitivityTest, Validation) {
  Dataset empty;
  empty.source = "nothing";
  Model m = int8_->clone();
  ASSERT_THROWS_WITH(sensitivity(*fp32_, m, empty), DataError, "'nothing' is empty");
  ASSERT_THROWS_WITH(apply_accuracy_guard(m, *fp32_, empty, 1.0), DataError, "is empty");
  ASSERT_THROWS_WITH(apply_accuracy_guard(m, *fp32_, *val_, -0.5), ConfigError,
                     "max_accuracy_drop");
  ASSERT_THROWS_WITH(
      apply_accuracy_guard(m, *fp32_, *val_, std::numeric_limits<double>::quiet_NaN()), ConfigError,
      "max_accuracy_drop");
  // The reference must be the fp32 original, of the same architecture.
  ASSERT_THROWS_WITH(sensitivity(*int8_, m, *val_), ModelError, "fp32 original");
  const Model other = Model::initialize(zoo_spec("mlp-small"), 0);
  ASSERT_THROWS_WITH(sensitivity(other, m, *val_), ModelError, "has no tensor '0.weight'");
  EXPECT_EQ(m.quant.tensors.size(), 4u);  // rejected calls change nothing
}

}  // namespace
}  // namespace mcompress::quant
