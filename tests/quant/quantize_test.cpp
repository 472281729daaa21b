// The quantization stage end to end: what each mode decides, what the runtime then runs, the
// errors a user can reach, and the report.

#include <torch/torch.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <memory>
#include <set>
#include <string>

#include "mcompress/core/error.h"
#include "mcompress/core/train.h"
#include "mcompress/core/zoo.h"
#include "mcompress/quant/quantize.h"
#include "mcompress/runtime/executor.h"
#include "test_support.h"

namespace mcompress::quant {
namespace {

Dataset empty_data() {
  Dataset d;
  d.source = "empty";
  return d;
}

std::set<std::string> linear_weights(const ArchSpec& spec) {
  std::set<std::string> out;
  for (const auto& info : spec.tensors()) {
    if (info.role == TensorRole::kWeight &&
        spec.layers[static_cast<size_t>(info.layer)].type == LayerType::kLinear) {
      out.insert(info.name);
    }
  }
  return out;
}

// Weights of every conv and linear layer, residual convolutions included.
std::set<std::string> conv_linear_weights(const ArchSpec& spec) {
  std::set<std::string> out;
  for (const auto& info : spec.tensors()) {
    const auto type = spec.layers[static_cast<size_t>(info.layer)].type;
    if (info.role == TensorRole::kWeight &&
        (type == LayerType::kLinear || info.shape.size() == 4)) {
      out.insert(info.name);
    }
  }
  return out;
}

std::set<std::string> keys_of(const std::map<std::string, QuantizedTensor>& m) {
  std::set<std::string> out;
  for (const auto& [k, v] : m) out.insert(k);
  return out;
}

runtime::Executor int8_executor(const Model& m) {
  runtime::ExecutorOptions o;
  o.policy = runtime::KernelPolicy::kInt8;
  return runtime::Executor(m, o);
}

double int8_accuracy(const Model& m, const Dataset& val) {
  return runtime::evaluate(int8_executor(m), val).accuracy;
}

QuantizeOptions static_options() {
  QuantizeOptions o;
  o.mode = QuantMode::kInt8Static;
  o.calib_batches = 2;
  o.calib_batch_size = 32;
  return o;
}

class QuantizeStageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    train_ = std::make_unique<Dataset>(testing::block_images(300, 1));
    val_ = std::make_unique<Dataset>(testing::block_images(100, 2));
    trained_ = std::make_unique<Model>(testing::quickly_trained("lenet5-small", *train_, *val_));
  }
  static void TearDownTestSuite() {
    trained_.reset();
    train_.reset();
    val_.reset();
  }
  void SetUp() override { at::set_num_threads(1); }

  static std::unique_ptr<Dataset> train_, val_;
  static std::unique_ptr<Model> trained_;  // lenet5-small, briefly trained on block_data
};
std::unique_ptr<Dataset> QuantizeStageTest::train_;
std::unique_ptr<Dataset> QuantizeStageTest::val_;
std::unique_ptr<Model> QuantizeStageTest::trained_;

// ---------------------------------------------------------------------------------------------
// fp16 / bf16

TEST_F(QuantizeStageTest, Fp16MarksTensorsAndKeepsAnOutOfRangeTensorInFp32WithAWarning) {
  Model m = Model::initialize(zoo_spec("mlp-small"), 1);
  m.tensor("1.weight")[0][0].fill_(1e6);
  QuantizeOptions o;
  o.mode = QuantMode::kFp16;
  const auto report = quantize_model(m, o, empty_data(), empty_data());
  EXPECT_EQ(m.quant.mode, "fp16");
  EXPECT_EQ(report.mode, "fp16");
  EXPECT_TRUE(m.quant.activations.empty());
  EXPECT_EQ(m.quant.tensors.count("1.weight"), 0u);
  EXPECT_FLOAT_EQ(m.tensor("1.weight")[0][0].item<float>(), 1e6f);  // untouched
  for (const std::string name : {"1.bias", "3.weight", "3.bias"}) {
    ASSERT_EQ(m.quant.tensors.count(name), 1u) << name;
    const auto& q = m.quant.tensors.at(name);
    EXPECT_EQ(q.encoding, Encoding::kFp16) << name;
    EXPECT_EQ(q.values.scalar_type(), at::kHalf) << name;
    // The master tensor holds the values the model computes with: the fp16-rounded ones.
    EXPECT_TRUE(torch::equal(m.tensor(name), q.dequantize())) << name;
  }
  ASSERT_EQ(report.warnings.size(), 1u);
  EXPECT_NE(report.warnings[0].find("1.weight"), std::string::npos) << report.warnings[0];
  EXPECT_NE(report.warnings[0].find("65504"), std::string::npos) << report.warnings[0];
  ASSERT_EQ(report.tensors.size(), 4u);
  for (const auto& d : report.tensors) {
    EXPECT_EQ(d.encoding, d.tensor == "1.weight" ? "fp32" : "fp16") << d.tensor;
  }
}

TEST_F(QuantizeStageTest, Fp16WithBf16FallbackStoresTheOutOfRangeTensorInBf16) {
  Model m = Model::initialize(zoo_spec("mlp-small"), 1);
  m.tensor("1.weight")[0][0].fill_(1e6);
  QuantizeOptions o;
  o.mode = QuantMode::kFp16;
  o.half_fallback_bf16 = true;
  const auto report = quantize_model(m, o, empty_data(), empty_data());
  EXPECT_TRUE(report.warnings.empty());
  ASSERT_EQ(m.quant.tensors.count("1.weight"), 1u);
  const auto& q = m.quant.tensors.at("1.weight");
  EXPECT_EQ(q.encoding, Encoding::kBf16);
  EXPECT_TRUE(torch::equal(m.tensor("1.weight"), q.dequantize()));
  EXPECT_FLOAT_EQ(m.tensor("1.weight")[0][0].item<float>(), 999424.f);  // 1e6 rounded to bf16
  EXPECT_EQ(m.quant.tensors.at("3.weight").encoding, Encoding::kFp16);
  for (const auto& d : report.tensors) {
    if (d.tensor != "1.weight") continue;
    EXPECT_EQ(d.encoding, "bf16");
    EXPECT_NE(d.note.find("bf16"), std::string::npos) << d.note;
  }
}

TEST_F(QuantizeStageTest, Bf16ModeMarksEveryTensorBf16) {
  Model m = Model::initialize(zoo_spec("mlp-small"), 1);
  m.tensor("1.weight")[0][0].fill_(1e6);  // within bf16's range
  QuantizeOptions o;
  o.mode = QuantMode::kBf16;
  const auto report = quantize_model(m, o, empty_data(), empty_data());
  EXPECT_EQ(m.quant.mode, "bf16");
  EXPECT_TRUE(report.warnings.empty());
  ASSERT_EQ(m.quant.tensors.size(), 4u);
  for (const auto& [name, q] : m.quant.tensors) {
    EXPECT_EQ(q.encoding, Encoding::kBf16) << name;
    EXPECT_EQ(q.values.scalar_type(), at::kBFloat16) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// int8

TEST_F(QuantizeStageTest, Int8DynamicQuantizesOnlyLinearWeights) {
  Model m = trained_->clone();
  QuantizeOptions o;
  o.mode = QuantMode::kInt8Dynamic;
  const auto report = quantize_model(m, o, empty_data(), empty_data());
  EXPECT_EQ(m.quant.mode, "int8-dynamic");
  EXPECT_TRUE(m.quant.activations.empty());
  const auto expected = linear_weights(m.spec());
  ASSERT_EQ(expected.size(), 2u);
  EXPECT_EQ(keys_of(m.quant.tensors), expected);
  for (const auto& [name, q] : m.quant.tensors) {
    EXPECT_EQ(q.encoding, Encoding::kInt8) << name;
    EXPECT_EQ(q.values.scalar_type(), at::kChar) << name;
    EXPECT_EQ(q.axis, 0) << name;  // per channel by default
    EXPECT_EQ(q.scale.numel(), m.tensor(name).size(0)) << name;
    EXPECT_TRUE(torch::equal(m.tensor(name), q.dequantize())) << name;
  }
  EXPECT_EQ(report.tensors.size(), expected.size());
  const auto exec = int8_executor(m);
  EXPECT_EQ(exec.int8_layers(), 2);
  int dynamic = 0;
  for (const auto& s : exec.plan()) dynamic += s.kernel == "int8-dynamic";
  EXPECT_EQ(dynamic, 2);
  // Rounding weights to int8 costs this easy problem next to nothing.
  runtime::ExecutorOptions fp32;
  fp32.policy = runtime::KernelPolicy::kFp32;
  EXPECT_NEAR(int8_accuracy(m, *val_),
              runtime::evaluate(runtime::Executor(*trained_, fp32), *val_).accuracy, 0.05);
}

TEST_F(QuantizeStageTest, Int8PerTensorGranularityUsesOneScale) {
  Model m = trained_->clone();
  QuantizeOptions o;
  o.mode = QuantMode::kInt8Dynamic;
  o.granularity = Granularity::kPerTensor;
  quantize_model(m, o, empty_data(), empty_data());
  for (const auto& [name, q] : m.quant.tensors) {
    EXPECT_EQ(q.axis, -1) << name;
    EXPECT_EQ(q.scale.numel(), 1) << name;
  }
}

TEST_F(QuantizeStageTest, Int8StaticCalibratesEveryKeyTheRuntimeUses) {
  at::manual_seed(0);
  Model m = Model::initialize(zoo_spec("resnet8"), 3);  // residual internals and a projection
  const auto calib = testing::block_images(64, 5);
  const auto report = quantize_model(m, static_options(), calib, empty_data());
  EXPECT_EQ(m.quant.mode, "int8-static");
  EXPECT_EQ(report.observer, "minmax");
  EXPECT_EQ(keys_of(m.quant.tensors), conv_linear_weights(m.spec()));

  std::set<std::string> runtime_keys;
  runtime::ExecutorOptions fp32;
  fp32.policy = runtime::KernelPolicy::kFp32;
  runtime::Executor(m, fp32).run_observed(
      calib.x.slice(0, 0, 4),
      [&](const std::string& key, const at::Tensor&) { runtime_keys.insert(key); });
  std::set<std::string> calibrated;
  for (const auto& [key, qp] : m.quant.activations) {
    calibrated.insert(key);
    EXPECT_GT(qp.scale, 0) << key;
    EXPECT_TRUE(std::isfinite(qp.scale)) << key;
    EXPECT_GE(qp.zero_point, 0) << key;
    EXPECT_LE(qp.zero_point, 255) << key;
    EXPECT_EQ(qp.observer, "minmax") << key;
  }
  EXPECT_EQ(calibrated, runtime_keys);
  EXPECT_EQ(runtime_keys.count("input"), 1u);
  EXPECT_EQ(runtime_keys.count("3.relu1"), 1u);  // residual internals by their value names
  EXPECT_EQ(runtime_keys.count("3.bn2"), 1u);
  EXPECT_EQ(runtime_keys.count("4.shortcut.1"), 1u);

  const auto exec = int8_executor(m);
  EXPECT_GT(exec.int8_layers(), 0);
  int static_steps = 0, quantizes = 0;
  for (const auto& s : exec.plan()) {
    static_steps += s.kernel == "int8-static";
    quantizes += s.op == "quantize";
    EXPECT_EQ(s.note.find("no calibrated qparams"), std::string::npos) << s.layers;
  }
  EXPECT_GT(static_steps, 0);
  EXPECT_GE(quantizes, 1);
}

// Files calibrated before the runtime ran sequential models as graphs name a residual block's
// inner activations after its layers ("3.conv1", "3.conv2", "4.shortcut"); they keep running
// the same int8 plan to the bit.
TEST_F(QuantizeStageTest, Int8StaticResidualKeysOfOlderFilesKeepWorking) {
  at::manual_seed(0);
  Model m = Model::initialize(zoo_spec("resnet8"), 3);
  quantize_model(m, static_options(), testing::block_images(64, 5), empty_data());
  Model old = m.clone();
  int renamed = 0;
  for (const auto& [now, before] : {std::pair<std::string, std::string>{".relu1", ".conv1"},
                                    {".bn2", ".conv2"},
                                    {".shortcut.1", ".shortcut"}}) {
    for (const auto& [key, qp] : m.quant.activations) {
      if (key.size() > now.size() && key.compare(key.size() - now.size(), now.size(), now) == 0) {
        old.quant.activations.erase(key);
        old.quant.activations[key.substr(0, key.size() - now.size()) + before] = qp;
        ++renamed;
      }
    }
  }
  EXPECT_EQ(renamed, 3 * 2 + 2);  // three blocks, two of them with a projection
  const auto x = testing::block_images(8, 6).x;
  const auto exec = int8_executor(m), old_exec = int8_executor(old);
  EXPECT_EQ(old_exec.int8_layers(), exec.int8_layers());
  EXPECT_TRUE(at::equal(old_exec.run(x), exec.run(x)));
}

TEST_F(QuantizeStageTest, Int8StaticKeepsAccuracyOnATrainedModel) {
  Model m = trained_->clone();
  quantize_model(m, static_options(), *train_, empty_data());
  const auto exec = int8_executor(m);
  EXPECT_EQ(exec.int8_layers(), 4);  // two convs, two linears
  runtime::ExecutorOptions fp32;
  fp32.policy = runtime::KernelPolicy::kFp32;
  EXPECT_NEAR(runtime::evaluate(exec, *val_).accuracy,
              runtime::evaluate(runtime::Executor(*trained_, fp32), *val_).accuracy, 0.05);
}

TEST_F(QuantizeStageTest, CompareObserversFillsFiveRowsAndKeepsTheBest) {
  Model m = trained_->clone();
  auto o = static_options();
  o.compare_observers = true;
  o.observer.bins = 256;
  const auto report = quantize_model(m, o, *train_, *val_);
  ASSERT_EQ(report.comparison.size(), 5u);
  const std::vector<std::string> names = {"minmax", "moving-average-minmax", "percentile",
                                          "entropy", "mse"};
  double best = -1;
  std::string best_name;
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ(report.comparison[i].observer, names[i]);
    EXPECT_GE(report.comparison[i].val_accuracy, 0.0);
    EXPECT_LE(report.comparison[i].val_accuracy, 1.0);
    if (report.comparison[i].val_accuracy > best) {
      best = report.comparison[i].val_accuracy;
      best_name = names[i];
    }
  }
  EXPECT_EQ(report.observer, best_name);  // the first of the best, on ties
  for (const auto& [key, qp] : m.quant.activations) EXPECT_EQ(qp.observer, best_name) << key;
  EXPECT_DOUBLE_EQ(int8_accuracy(m, *val_), best);  // the kept ranges are the scored ones
}

TEST_F(QuantizeStageTest, CompareObserversNeedsValidationData) {
  Model m = trained_->clone();
  auto o = static_options();
  o.compare_observers = true;
  ASSERT_THROWS_WITH(quantize_model(m, o, *train_, empty_data()), DataError, "validation set");
}

TEST_F(QuantizeStageTest, CalibrationWithoutDataIsADataError) {
  Model m = trained_->clone();
  ASSERT_THROWS_WITH(quantize_model(m, static_options(), empty_data(), empty_data()), DataError,
                     "calibration");
  ASSERT_THROWS_WITH(calibrate(*trained_, empty_data(), ObserverOptions{}, 1, 8), DataError,
                     "calibration");
}

TEST_F(QuantizeStageTest, QuantizingAQuantizedModelIsAConfigError) {
  Model m = trained_->clone();
  QuantizeOptions o;
  o.mode = QuantMode::kInt8Dynamic;
  quantize_model(m, o, empty_data(), empty_data());
  ASSERT_THROWS_WITH(quantize_model(m, o, empty_data(), empty_data()), ConfigError,
                     "already quantized (int8-dynamic)");
  o.mode = QuantMode::kFp16;
  ASSERT_THROWS_WITH(quantize_model(m, o, empty_data(), empty_data()), ConfigError,
                     "quantize its fp32 original instead");
}

TEST_F(QuantizeStageTest, ParseQuantModeRoundTripsAndListsTheModes) {
  for (auto mode :
       {QuantMode::kFp16, QuantMode::kBf16, QuantMode::kInt8Dynamic, QuantMode::kInt8Static}) {
    EXPECT_EQ(parse_quant_mode(to_string(mode)), mode);
  }
  ASSERT_THROWS_WITH(parse_quant_mode("int4"), ConfigError,
                     "unknown quantization mode 'int4'; accepted: fp16, bf16, int8-dynamic, "
                     "int8-static");
  ASSERT_THROWS_WITH(parse_quant_mode("INT8-STATIC"), ConfigError, "unknown quantization mode");
}

TEST_F(QuantizeStageTest, OptionsValidationNamesTheOption) {
  Model m = trained_->clone();
  auto o = static_options();
  o.calib_batches = 0;
  ASSERT_THROWS_WITH(quantize_model(m, o, *train_, *val_), ConfigError, "calib_batches");
  o = static_options();
  o.calib_batch_size = -1;
  ASSERT_THROWS_WITH(o.validate(), ConfigError, "calib_batch_size");
  o = static_options();
  o.max_accuracy_drop = std::numeric_limits<double>::quiet_NaN();
  ASSERT_THROWS_WITH(o.validate(), ConfigError, "max_accuracy_drop");
  o.max_accuracy_drop = -1;  // off
  EXPECT_NO_THROW(o.validate());
  EXPECT_TRUE(m.quant.empty());  // a rejected call leaves the model alone
}

// ---------------------------------------------------------------------------------------------
// The accuracy guard, through the stage

TEST_F(QuantizeStageTest, AccuracyGuardNeedsValidationData) {
  Model m = trained_->clone();
  auto o = static_options();
  o.max_accuracy_drop = 1.0;
  ASSERT_THROWS_WITH(quantize_model(m, o, *train_, empty_data()), DataError,
                     "max_accuracy_drop needs a validation set");
  EXPECT_TRUE(m.quant.empty());
}

TEST_F(QuantizeStageTest, AccuracyGuardIsIgnoredWithAWarningForHalfModes) {
  Model m = trained_->clone();
  QuantizeOptions o;
  o.mode = QuantMode::kFp16;
  o.max_accuracy_drop = 0;
  const auto report = quantize_model(m, o, empty_data(), empty_data());
  ASSERT_EQ(report.warnings.size(), 1u);
  EXPECT_NE(report.warnings[0].find("ignored for fp16"), std::string::npos);
  EXPECT_LT(report.max_accuracy_drop, 0);
}

TEST_F(QuantizeStageTest, AccuracyGuardWithZeroBudgetEndsWithinBudget) {
  Model m = trained_->clone();
  auto o = static_options();
  o.granularity = Granularity::kPerTensor;
  o.max_accuracy_drop = 0;
  const auto report = quantize_model(m, o, *train_, *val_);
  EXPECT_TRUE(report.accuracy_budget_met);
  EXPECT_DOUBLE_EQ(report.max_accuracy_drop, 0);
  EXPECT_GE(report.val_accuracy_fp32, 0);
  EXPECT_GE(report.val_accuracy_quantized, report.val_accuracy_fp32 - 1e-12);
  // The report's numbers are the model's.
  EXPECT_DOUBLE_EQ(int8_accuracy(m, *val_), report.val_accuracy_quantized);
  for (const auto& name : report.kept_fp32) {
    EXPECT_EQ(m.quant.tensors.count(name), 0u) << name;
    EXPECT_TRUE(torch::equal(m.tensor(name), trained_->tensor(name))) << name;
    for (const auto& d : report.tensors) {
      if (d.tensor == name) {
        EXPECT_EQ(d.encoding, "fp32") << name;
      }
    }
  }
  if (report.val_accuracy_int8_all < report.val_accuracy_fp32) {
    EXPECT_FALSE(report.kept_fp32.empty());
    EXPECT_FALSE(report.sensitivity.empty());
  }
}

// One outlier weight makes a per-tensor int8 scale so coarse that every other code of the
// layer is 0. The outlier is negative on non-negative inputs (post-ReLU/pool features), so the
// unit it feeds is always 0 after its ReLU and the fp32 model does not mind it.
Model with_outlier(const Model& trained, const std::string& name) {
  Model m = trained.clone();
  auto& w = m.tensor(name);
  w[0][0].fill_(-500 * w.abs().max().item<double>());
  return m;
}

TEST_F(QuantizeStageTest, AccuracyGuardKeepsTheLayerAPerTensorScaleRuinsInFp32) {
  const Model original = with_outlier(*trained_, "7.weight");
  Model m = original.clone();
  auto o = static_options();
  o.granularity = Granularity::kPerTensor;
  o.max_accuracy_drop = 1.0;
  const auto report = quantize_model(m, o, *train_, *val_);
  EXPECT_GT((report.val_accuracy_fp32 - report.val_accuracy_int8_all) * 100, 20.0);
  EXPECT_TRUE(report.accuracy_budget_met);
  EXPECT_LE((report.val_accuracy_fp32 - report.val_accuracy_quantized) * 100, 1.0 + 1e-9);
  ASSERT_FALSE(report.kept_fp32.empty());
  EXPECT_EQ(report.kept_fp32[0], "7.weight");
  ASSERT_EQ(report.sensitivity.size(), 4u);
  EXPECT_EQ(report.sensitivity[0].tensor, "7.weight");
  EXPECT_EQ(m.quant.tensors.count("7.weight"), 0u);
  EXPECT_TRUE(torch::equal(m.tensor("7.weight"), original.tensor("7.weight")));
  EXPECT_EQ(m.quant.tensors.size(), 4u - report.kept_fp32.size());
  EXPECT_EQ(int8_executor(m).int8_layers(), static_cast<int64_t>(4 - report.kept_fp32.size()));
  bool noted = false;
  for (const auto& d : report.tensors) {
    if (d.tensor != "7.weight") continue;
    EXPECT_EQ(d.encoding, "fp32");
    noted = d.note.find("kept fp32 by the accuracy guard") != std::string::npos;
  }
  EXPECT_TRUE(noted);
  const auto doc = nlohmann::json::parse(report.to_json());
  EXPECT_EQ(doc.at("accuracy_guard").at("kept_fp32")[0], "7.weight");
  EXPECT_EQ(doc.at("accuracy_guard").at("sensitivity").size(), 4u);

  // Per-channel scales confine the outlier to its own (dead) unit: nothing to keep.
  Model pc = original.clone();
  o.granularity = Granularity::kPerChannel;
  const auto report_pc = quantize_model(pc, o, *train_, *val_);
  EXPECT_TRUE(report_pc.accuracy_budget_met);
  EXPECT_TRUE(report_pc.kept_fp32.empty());
  EXPECT_EQ(pc.quant.tensors.size(), 4u);
}

TEST_F(QuantizeStageTest, ReportToJsonIsValidJsonWithTheFields) {
  Model m = trained_->clone();
  auto o = static_options();
  o.max_accuracy_drop = 100;  // generous: measures, keeps everything int8
  const auto report = quantize_model(m, o, *train_, *val_);
  const auto doc = nlohmann::json::parse(report.to_json());
  EXPECT_EQ(doc.at("stage"), "quantize");
  EXPECT_EQ(doc.at("options").at("mode"), "int8-static");
  EXPECT_EQ(doc.at("options").at("observer"), "minmax");
  EXPECT_DOUBLE_EQ(doc.at("options").at("max_accuracy_drop").get<double>(), 100.0);
  ASSERT_TRUE(doc.at("tensors").is_array());
  EXPECT_EQ(doc.at("tensors").size(), report.tensors.size());
  EXPECT_EQ(doc.at("tensors")[0].at("encoding"), "int8");
  EXPECT_TRUE(doc.at("tensors")[0].contains("note"));
  EXPECT_TRUE(doc.at("observer_comparison").is_array());
  EXPECT_TRUE(doc.at("warnings").is_array());
  const auto& g = doc.at("accuracy_guard");
  EXPECT_TRUE(g.at("budget_met").get<bool>());
  EXPECT_TRUE(g.at("kept_fp32").empty());
  EXPECT_DOUBLE_EQ(g.at("val_accuracy_fp32").get<double>(), report.val_accuracy_fp32);
  EXPECT_DOUBLE_EQ(g.at("val_accuracy_quantized").get<double>(), report.val_accuracy_quantized);
  EXPECT_TRUE(g.at("sensitivity").is_array());

  // Without the guard there is no guard section; a warning with quotes still parses.
  Model h = Model::initialize(zoo_spec("mlp-small"), 1);
  h.tensor("1.weight")[0][0].fill_(1e6);
  QuantizeOptions half;
  half.mode = QuantMode::kFp16;
  const auto doc2 =
      nlohmann::json::parse(quantize_model(h, half, empty_data(), empty_data()).to_json());
  EXPECT_FALSE(doc2.contains("accuracy_guard"));
  ASSERT_EQ(doc2.at("warnings").size(), 1u);
  EXPECT_EQ(doc2.at("options").at("mode"), "fp16");
}

}  // namespace
}  // namespace mcompress::quant
