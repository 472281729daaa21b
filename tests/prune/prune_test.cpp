// The pruning stage end to end: layer vs global thresholds on known tensors, overrides and
// exclusions, the exact sparsity of every schedule, masks that only shrink, pruned weights that
// stay zero through fine-tuning, rewinding, the report, and every bad option.

#include <torch/torch.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <memory>
#include <string>

#include "mcompress/core/error.h"
#include "mcompress/core/train.h"
#include "mcompress/core/zoo.h"
#include "mcompress/prune/magnitude.h"
#include "mcompress/prune/prune.h"
#include "mcompress/prune/schedule.h"
#include "prune_support.h"
#include "test_support.h"

namespace mcompress::prune {
namespace {

using testing::bools;

// 4 → 3 → relu → 2 with hand-picked weights, so that thresholds can be computed by hand.
Model tiny_model() {
  const auto spec = ArchSpec::from_json_text(
      R"({"name":"tiny","input_shape":[4],"num_classes":2,"layers":[
          {"type":"linear","out_features":3},{"type":"relu"},{"type":"linear","out_features":2}]})");
  return Model::from_tensors(
      spec,
      {{"0.weight",
        torch::tensor({0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f, 0.7f, 0.8f, 0.9f, 1.0f, -1.1f, 1.2f})
            .reshape({3, 4})},
       {"0.bias", torch::tensor({0.01f, 0.02f, 0.03f})},
       {"2.weight", torch::tensor({0.05f, 0.15f, -2.0f, 0.25f, 0.35f, 0.45f}).reshape({2, 3})},
       {"2.bias", torch::tensor({0.0f, 0.0f})}});
}

PruneOptions no_finetune() {
  PruneOptions o;
  o.finetune_epochs = 0;
  return o;
}

// Removed entries of the pool must be exactly round(target · N): the schedule's promise.
int64_t expected_kept(int64_t total, double target) {
  return total - std::llround(target * static_cast<double>(total));
}

void expect_masks_enforced(const Model& m) {
  for (const auto& [name, mask] : m.masks) {
    EXPECT_EQ(m.tensor(name).masked_select(mask.logical_not()).abs().sum().item<double>(), 0.0)
        << name << ": a pruned weight is not zero";
  }
}

class PruneStageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    train_ = std::make_unique<Dataset>(testing::block_images(300, 1));
    val_ = std::make_unique<Dataset>(testing::block_images(100, 2));
    trained_ = std::make_unique<Model>(testing::quickly_trained("mlp-small", *train_, *val_));
  }
  static void TearDownTestSuite() {
    trained_.reset();
    train_.reset();
    val_.reset();
  }
  void SetUp() override { at::set_num_threads(1); }

  static PruneOptions quick(PruneSchedule schedule, double target) {
    PruneOptions o;
    o.scope = PruneScope::kGlobal;
    o.target = target;
    o.schedule = schedule;
    o.finetune.batch_size = 32;
    o.finetune.lr = 1e-3;
    return o;
  }

  static std::unique_ptr<Dataset> train_, val_;
  static std::unique_ptr<Model> trained_;  // mlp-small, briefly trained on block images
};
std::unique_ptr<Dataset> PruneStageTest::train_;
std::unique_ptr<Dataset> PruneStageTest::val_;
std::unique_ptr<Model> PruneStageTest::trained_;

// ---------------------------------------------------------------------------------------------
// Thresholds

TEST(PruneThresholdTest, LayerScopePrunesEachTensorToItsOwnTarget) {
  Model m = tiny_model();
  auto o = no_finetune();
  o.scope = PruneScope::kLayer;
  const auto report = prune_model(m, o, Dataset{}, Dataset{});
  // 0.weight loses its 6 smallest |w| (0.1 ... 0.6), 2.weight its 3 smallest (0.05, 0.15, 0.25).
  EXPECT_TRUE(
      torch::equal(m.masks.at("0.weight"), bools({0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, {3, 4})));
  EXPECT_TRUE(torch::equal(m.masks.at("2.weight"), bools({0, 0, 1, 0, 1, 1}, {2, 3})));
  EXPECT_EQ(m.masks.size(), 2u);  // biases untouched
  EXPECT_FLOAT_EQ(m.tensor("0.bias")[0].item<float>(), 0.01f);
  expect_masks_enforced(m);
  EXPECT_EQ(report.kept, 9);
  EXPECT_EQ(report.total, 18);
  ASSERT_EQ(report.tensors.size(), 2u);
  EXPECT_EQ(report.tensors[0].rule, "layer");
  EXPECT_EQ(report.tensors[1].kept, 3);
}

TEST(PruneThresholdTest, GlobalScopeSharesOneThreshold) {
  Model m = tiny_model();
  auto o = no_finetune();
  o.scope = PruneScope::kGlobal;
  prune_model(m, o, Dataset{}, Dataset{});
  // The 9 smallest of all 18: 0.05 0.1 0.15 0.2 0.25 0.3 0.35 0.4 0.45; threshold 0.45.
  EXPECT_TRUE(
      torch::equal(m.masks.at("0.weight"), bools({0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}, {3, 4})));
  EXPECT_TRUE(torch::equal(m.masks.at("2.weight"), bools({0, 0, 1, 0, 0, 0}, {2, 3})));
  expect_masks_enforced(m);
}

TEST(PruneThresholdTest, GlobalScopeWithExclusionAndOverride) {
  Model m = tiny_model();
  auto o = no_finetune();
  o.scope = PruneScope::kGlobal;
  o.exclude = {"last"};
  prune_model(m, o, Dataset{}, Dataset{});
  EXPECT_EQ(m.masks.count("2.weight"), 0u);
  EXPECT_TRUE(
      torch::equal(m.masks.at("0.weight"), bools({0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, {3, 4})));

  Model m2 = tiny_model();
  o.exclude.clear();
  o.overrides = {{"2.weight", 1.0 / 3}};  // its own target: 2 of 6; the pool is 0.weight alone
  const auto report = prune_model(m2, o, Dataset{}, Dataset{});
  EXPECT_TRUE(torch::equal(m2.masks.at("2.weight"), bools({0, 0, 1, 1, 1, 1}, {2, 3})));
  EXPECT_TRUE(
      torch::equal(m2.masks.at("0.weight"), bools({0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}, {3, 4})));
  EXPECT_EQ(report.tensors[0].rule, "global");
  EXPECT_EQ(report.tensors[1].rule, "override");
  EXPECT_NEAR(report.tensors[1].target, 1.0 / 3, 1e-12);
}

// ---------------------------------------------------------------------------------------------
// Schedules reach exactly their target

TEST_F(PruneStageTest, OneShotReachesTheExactSparsity) {
  Model m = trained_->clone();
  const auto report = prune_model(m, quick(PruneSchedule::kOneShot, 0.9), *train_, *val_);
  EXPECT_EQ(report.total, 784 * 32 + 32 * 10);
  EXPECT_EQ(report.kept, expected_kept(report.total, 0.9));
  expect_masks_enforced(m);
  ASSERT_EQ(report.rounds.size(), 1u);
  EXPECT_GE(report.rounds[0].val_accuracy, 0.0);
  EXPECT_GE(report.val_accuracy_before, 0.5);  // block images are easy
}

TEST_F(PruneStageTest, LayerScopeReachesTheExactSparsityPerTensor) {
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kOneShot, 0.8);
  o.scope = PruneScope::kLayer;
  const auto report = prune_model(m, o, *train_, *val_);
  for (const auto& t : report.tensors) EXPECT_EQ(t.kept, expected_kept(t.total, 0.8)) << t.name;
  expect_masks_enforced(m);
}

TEST_F(PruneStageTest, IterativeRoundsFollowTheScheduleAndMasksOnlyShrink) {
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kIterative, 0.875);
  o.rounds = 3;
  const auto report = prune_model(m, o, *train_, *val_);
  ASSERT_EQ(report.rounds.size(), 3u);
  const int64_t total = report.total;
  const double scheduled[] = {0.5, 0.75, 0.875};
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_NEAR(report.rounds[r].target, scheduled[r], 1e-12);
    const double reached =
        1 - static_cast<double>(expected_kept(total, scheduled[r])) / static_cast<double>(total);
    EXPECT_NEAR(report.rounds[r].sparsity, reached, 1e-12) << "round " << r + 1;
    EXPECT_GE(report.rounds[r].val_accuracy, 0.0);
  }
  EXPECT_EQ(report.kept, expected_kept(total, 0.875));
  EXPECT_EQ(report.val_accuracy_after, report.rounds.back().val_accuracy);
}

TEST_F(PruneStageTest, LotteryTicketFractionPerRound) {
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kIterative, 0.5);
  o.round_fraction = 0.2;
  o.rounds = rounds_for_fraction(0.5, 0.2);  // 0.2, 0.36, 0.488, then 0.5
  o.finetune_epochs = 0;
  const auto report = prune_model(m, o, *train_, *val_);
  ASSERT_EQ(report.rounds.size(), 4u);
  EXPECT_NEAR(report.rounds[2].target, 0.488, 1e-12);
  EXPECT_EQ(report.kept, expected_kept(report.total, 0.5));
}

TEST_F(PruneStageTest, MasksOnlyShrinkAcrossRuns) {
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kOneShot, 0.5);
  prune_model(m, o, *train_, *val_);
  const auto first = m.masks.at("1.weight").clone();
  // Undo the zeros by hand: the mask, not the zero values, decides what was pruned.
  {
    torch::NoGradGuard no_grad;
    m.tensor("1.weight").masked_fill_(first.logical_not(), 10.0f);
  }
  o.target = 0.7;
  prune_model(m, o, *train_, *val_);
  const auto second = m.masks.at("1.weight");
  EXPECT_FALSE(second.logical_and(first.logical_not()).any().item<bool>())
      << "a pruned weight grew back";
  EXPECT_LT(second.sum().item<int64_t>(), first.sum().item<int64_t>());
  expect_masks_enforced(m);
  // A lower target leaves the masks as they are.
  o.target = 0.3;
  o.finetune_epochs = 0;
  const auto before = m.masks.at("1.weight").clone();
  prune_model(m, o, *train_, *val_);
  EXPECT_TRUE(torch::equal(m.masks.at("1.weight"), before));
}

TEST_F(PruneStageTest, GradualScheduleReachesTheTargetAtItsEndStep) {
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kGradual, 0.9);
  o.finetune_epochs = 2;    // 2 x ceil(300/32) = 20 steps; the end is at 3/4: step 15
  o.gradual.frequency = 5;  // masks at steps 0, 5, 10, 15
  const auto report = prune_model(m, o, *train_, *val_);
  ASSERT_EQ(report.rounds.size(), 2u);
  const int64_t total = report.total;
  // After epoch 1 (step 10): s = 0.9 - 0.9 (1 - 10/15)^3
  const double s10 = 0.9 - 0.9 / 27.0;
  EXPECT_NEAR(report.rounds[0].target, s10, 1e-12);
  EXPECT_NEAR(report.rounds[0].sparsity,
              1 - static_cast<double>(expected_kept(total, s10)) / static_cast<double>(total),
              1e-12);
  EXPECT_EQ(report.kept, expected_kept(total, 0.9));
  EXPECT_GE(report.rounds[1].val_accuracy, 0.0);
  expect_masks_enforced(m);
}

TEST_F(PruneStageTest, GradualEndStepBeyondTheFineTuningIsAConfigError) {
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kGradual, 0.9);
  o.gradual.end_step = 21;  // 20 steps in one... two epochs
  o.finetune_epochs = 2;
  ASSERT_THROWS_WITH(prune_model(m, o, *train_, *val_), ConfigError, "gradual.end_step 21");
}

// ---------------------------------------------------------------------------------------------
// Fine-tuning keeps pruned weights at zero

TEST_F(PruneStageTest, PrunedWeightsStayExactlyZeroThroughSgdWithMomentumAndWeightDecay) {
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kOneShot, 0.8);
  o.finetune.optimizer = OptimizerKind::kSgd;
  o.finetune.lr = 0.05;
  o.finetune.momentum = 0.9;
  o.finetune.weight_decay = 0.01;
  o.finetune.restore_best = false;
  o.finetune_epochs = 2;
  Model one_shot = trained_->clone();
  auto no_ft = o;
  no_ft.finetune_epochs = 0;
  prune_model(one_shot, no_ft, *train_, *val_);

  prune_model(m, o, *train_, *val_);
  expect_masks_enforced(m);
  for (const auto& [name, mask] : m.masks) {
    EXPECT_TRUE(torch::equal(mask, one_shot.masks.at(name))) << name;
    // Fine-tuning did move the kept weights.
    EXPECT_FALSE(torch::equal(m.tensor(name), one_shot.tensor(name))) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// Rewinding

TEST_F(PruneStageTest, RewindResetsSurvivorsToTheInitialisation) {
  const Model init = Model::initialize(zoo_spec("mlp-small"), 0);  // trained_'s initialisation
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kOneShot, 0.7);
  o.finetune_epochs = 0;
  const auto report = prune_model(m, o, *train_, *val_, &init);
  EXPECT_TRUE(report.rewound);
  // The mask comes from the trained weights ...
  const auto expected =
      global_magnitude_masks({trained_->tensor("1.weight"), trained_->tensor("3.weight")}, 0.7);
  EXPECT_TRUE(torch::equal(m.masks.at("1.weight"), expected[0]));
  EXPECT_TRUE(torch::equal(m.masks.at("3.weight"), expected[1]));
  // ... the values from the initialisation.
  for (const auto& info : m.tensor_infos()) {
    auto want = init.tensor(info.name).clone();
    if (m.masks.count(info.name)) want.masked_fill_(m.masks.at(info.name).logical_not(), 0.0f);
    EXPECT_TRUE(torch::equal(m.tensor(info.name), want)) << info.name;
  }
}

TEST_F(PruneStageTest, RewindThenRetrainKeepsTheMask) {
  const Model init = Model::initialize(zoo_spec("mlp-small"), 0);
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kIterative, 0.75);
  o.rounds = 2;
  const auto report = prune_model(m, o, *train_, *val_, &init);
  EXPECT_EQ(report.kept, expected_kept(report.total, 0.75));
  expect_masks_enforced(m);
}

TEST_F(PruneStageTest, RewindModelMustMatchAndScheduleMustAllowIt) {
  const Model other = Model::initialize(zoo_spec("lenet5-small"), 0);
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kOneShot, 0.5);
  ASSERT_THROWS_WITH(prune_model(m, o, *train_, *val_, &other), ModelError, "rewind model");
  const Model init = Model::initialize(zoo_spec("mlp-small"), 0);
  o.schedule = PruneSchedule::kGradual;
  ASSERT_THROWS_WITH(prune_model(m, o, *train_, *val_, &init), ConfigError,
                     "rewind applies to one-shot and iterative magnitude pruning");
}

// ---------------------------------------------------------------------------------------------
// Report

TEST_F(PruneStageTest, ReportJsonCarriesStageOptionsAndMetrics) {
  Model m = trained_->clone();
  auto o = quick(PruneSchedule::kIterative, 0.6);
  o.rounds = 2;
  o.exclude = {"last"};
  const auto report = prune_model(m, o, *train_, *val_);
  const auto doc = nlohmann::json::parse(report.to_json());
  EXPECT_EQ(doc.at("stage"), "prune");
  EXPECT_EQ(doc.at("options").at("scope"), "global");
  EXPECT_EQ(doc.at("options").at("schedule"), "iterative");
  EXPECT_DOUBLE_EQ(doc.at("options").at("target").get<double>(), 0.6);
  EXPECT_EQ(doc.at("options").at("exclude"), nlohmann::json::array({"last"}));
  EXPECT_DOUBLE_EQ(doc.at("options").at("finetune").at("lr").get<double>(), 1e-3);
  EXPECT_DOUBLE_EQ(doc.at("metrics").at("sparsity").get<double>(), report.sparsity());
  EXPECT_EQ(doc.at("rounds").size(), 2u);
  ASSERT_EQ(doc.at("tensors").size(), 2u);
  EXPECT_EQ(doc.at("tensors")[1].at("rule"), "excluded");
  EXPECT_EQ(doc.at("tensors")[1].at("kept"), 320);  // the class layer stays dense
  EXPECT_LT(report.nonzero_after, report.nonzero_before);
  EXPECT_EQ(report.parameters_after, report.parameters_before);  // same shape
}

TEST_F(PruneStageTest, WithoutValidationDataAccuraciesAreMinusOne) {
  Model m = trained_->clone();
  const auto report = prune_model(m, quick(PruneSchedule::kOneShot, 0.5), *train_, Dataset{});
  EXPECT_EQ(report.val_accuracy_before, -1);
  EXPECT_EQ(report.rounds.at(0).val_accuracy, -1);
}

// ---------------------------------------------------------------------------------------------
// Bad options: ConfigError naming the option

TEST(PruneOptionsTest, EveryBadValueNamesItsOption) {
  const Model model = Model::initialize(zoo_spec("mlp-small"), 0);
  auto expect_bad = [&model](const std::function<void(PruneOptions&)>& edit,
                             const std::string& text) {
    PruneOptions o;
    edit(o);
    ASSERT_THROWS_WITH(o.validate(model), ConfigError, text);
  };
  expect_bad([](PruneOptions& o) { o.target = 1.5; }, "target must be in [0, 1), got 1.5");
  expect_bad([](PruneOptions& o) { o.target = 1.0; }, "target must be in [0, 1)");
  expect_bad([](PruneOptions& o) { o.target = -0.1; }, "target must be in [0, 1)");
  expect_bad([](PruneOptions& o) { o.target = NAN; }, "target must be in [0, 1)");
  expect_bad([](PruneOptions& o) { o.rounds = 0; }, "rounds must be >= 1");
  expect_bad([](PruneOptions& o) { o.round_fraction = 1; }, "round_fraction");
  expect_bad(
      [](PruneOptions& o) {
        o.schedule = PruneSchedule::kIterative;
        o.target = 0.5;
        o.round_fraction = 0.2;
        o.rounds = 10;
      },
      "use at most 4 rounds");
  expect_bad([](PruneOptions& o) { o.finetune_epochs = -1; }, "finetune_epochs must be >= 0");
  expect_bad([](PruneOptions& o) { o.finetune.lr = 0; }, "lr must be > 0");
  expect_bad(
      [](PruneOptions& o) {
        o.overrides = {{"9.weight", 0.5}};
      },
      "overrides: unknown tensor '9.weight'; prunable: 1.weight, 3.weight, first, last");
  expect_bad(
      [](PruneOptions& o) {
        o.overrides = {{"1.bias", 0.5}};
      },
      "overrides: tensor '1.bias' is not prunable");
  expect_bad(
      [](PruneOptions& o) {
        o.overrides = {{"1.weight", 1.0}};
      },
      "overrides: target of '1.weight' must be in [0, 1)");
  expect_bad([](PruneOptions& o) { o.exclude = {"nope"}; }, "exclude: unknown tensor 'nope'");
  expect_bad(
      [](PruneOptions& o) {
        o.exclude = {"first"};
        o.overrides = {{"1.weight", 0.5}};
      },
      "overrides: tensor '1.weight' is also excluded");
  expect_bad(
      [](PruneOptions& o) {
        o.schedule = PruneSchedule::kGradual;
        o.finetune_epochs = 0;
      },
      "finetune_epochs must be >= 1 for the gradual schedule");
  expect_bad(
      [](PruneOptions& o) {
        o.schedule = PruneSchedule::kGradual;
        o.gradual.initial_sparsity = 0.6;
      },
      "gradual.initial_sparsity must be in [0, target = 0.5]");
  expect_bad(
      [](PruneOptions& o) {
        o.schedule = PruneSchedule::kGradual;
        o.gradual.frequency = 0;
      },
      "gradual.frequency must be >= 1");
  expect_bad(
      [](PruneOptions& o) {
        o.schedule = PruneSchedule::kGradual;
        o.gradual.begin_step = 10;
        o.gradual.end_step = 5;
      },
      "gradual.end_step must be after gradual.begin_step");
  expect_bad(
      [](PruneOptions& o) {
        o.method = PruneMethod::kStructured;
        o.scope = PruneScope::kGlobal;
      },
      "scope must be layer for structured pruning");
  expect_bad(
      [](PruneOptions& o) {
        o.method = PruneMethod::kStructured;
        o.schedule = PruneSchedule::kGradual;
      },
      "schedule gradual applies to magnitude pruning");
  PruneOptions fine;
  EXPECT_NO_THROW(fine.validate(model));
}

TEST(PruneOptionsTest, NamesParseAndPrintBothWays) {
  for (auto m : {PruneMethod::kMagnitude, PruneMethod::kStructured})
    EXPECT_EQ(parse_prune_method(to_string(m)), m);
  for (auto s : {PruneScope::kLayer, PruneScope::kGlobal})
    EXPECT_EQ(parse_prune_scope(to_string(s)), s);
  for (auto s : {PruneSchedule::kOneShot, PruneSchedule::kIterative, PruneSchedule::kGradual}) {
    EXPECT_EQ(parse_prune_schedule(to_string(s)), s);
  }
  ASSERT_THROWS_WITH(parse_prune_schedule("cubic"), ConfigError,
                     "accepted: one-shot, iterative, gradual");
  ASSERT_THROWS_WITH(parse_prune_scope("net"), ConfigError, "accepted: layer, global");
  ASSERT_THROWS_WITH(parse_prune_method("random"), ConfigError, "accepted: magnitude, structured");
}

TEST(PruneOptionsTest, QuantizedModelsAreRejected) {
  Model m = Model::initialize(zoo_spec("mlp-small"), 0);
  m.quant.mode = "fp16";
  ASSERT_THROWS_WITH(prune_model(m, no_finetune(), Dataset{}, Dataset{}), ConfigError,
                     "the model is quantized (fp16)");
}

}  // namespace
}  // namespace mcompress::prune
