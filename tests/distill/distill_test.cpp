// The distillation stage: options, compatibility checks, the training run it makes on the
// shared loop (α = 0 is plain training, α = 1 learns from the teacher alone), caching, hints.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "mcompress/core/error.h"
#include "mcompress/distill/distill.h"
#include "mcompress/runtime/executor.h"
#include "test_support.h"
#include "trained_teacher.h"

namespace mcompress {
namespace {

class DistillTest : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

distill::DistillOptions quick(int64_t epochs, double alpha, double temperature = 4.0) {
  distill::DistillOptions o;
  o.train = testing::quick_train_options(epochs);
  o.alpha = alpha;
  o.temperature = temperature;
  return o;
}

Model fresh(const std::string& arch, uint64_t seed = 3) {
  return Model::initialize(zoo_spec(arch), seed);
}

double accuracy(const Model& model, const Dataset& data) {
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kFp32;
  return runtime::evaluate(runtime::Executor(model, eo), data).accuracy;
}

void expect_same_tensors(const Model& a, const Model& b) {
  for (const auto& [name, t] : a.tensors()) EXPECT_TRUE(t.equal(b.tensor(name))) << name;
}

TEST_F(DistillTest, OptionsAreValidatedNamingTheOption) {
  auto bad = [](auto edit) {
    distill::DistillOptions o;
    edit(o);
    return o;
  };
  using O = distill::DistillOptions;
  EXPECT_NO_THROW(O().validate());
  ASSERT_THROWS_WITH(bad([](O& o) { o.temperature = 0; }).validate(), ConfigError,
                     "temperature must be > 0, got 0");
  ASSERT_THROWS_WITH(bad([](O& o) { o.temperature = -2; }).validate(), ConfigError, "temperature");
  ASSERT_THROWS_WITH(bad([](O& o) { o.temperature = std::nan(""); }).validate(), ConfigError,
                     "temperature");
  ASSERT_THROWS_WITH(bad([](O& o) { o.alpha = -0.1; }).validate(), ConfigError,
                     "alpha must be in [0, 1], got -0.1");
  ASSERT_THROWS_WITH(bad([](O& o) { o.alpha = 1.5; }).validate(), ConfigError, "alpha");
  ASSERT_THROWS_WITH(bad([](O& o) { o.train.epochs = 0; }).validate(), ConfigError,
                     "epochs must be >= 1");
  ASSERT_THROWS_WITH(bad([](O& o) { o.train.lr = 0; }).validate(), ConfigError, "lr must be > 0");
  ASSERT_THROWS_WITH(bad([](O& o) { o.beta = -1; }).validate(), ConfigError, "beta must be >= 0");
  ASSERT_THROWS_WITH(bad([](O& o) { o.beta = 0.5; }).validate(), ConfigError,
                     "beta must be 0 without a hint");
  ASSERT_THROWS_WITH(bad([](O& o) { o.hint_teacher = "4"; }).validate(), ConfigError,
                     "hint_teacher and hint_student go together");
  ASSERT_THROWS_WITH(bad([](O& o) {
                       o.hint_teacher = "4";
                       o.hint_student = "4";
                     }).validate(),
                     ConfigError, "beta must be > 0 with a hint");
  ASSERT_THROWS_WITH(bad([](O& o) { o.cache_limit_mb = -1; }).validate(), ConfigError,
                     "cache_limit_mb must be >= 0");
}

TEST_F(DistillTest, ClassCountMismatchIsAClearError) {
  ArchSpec five = zoo_spec("mlp-small");
  five.num_classes = 5;
  five.layers.back().out_features = 5;
  Model student = Model::initialize(five.resolved(), 0);
  const Model& teacher = testing::trained_teacher("mlp");
  ASSERT_THROWS_WITH(distill::distill_model(student, teacher, quick(1, 0.5),
                                            testing::distill_train_data(), Dataset{}),
                     ModelError, "teacher 'mlp' has 10 classes but student 'mlp-small' has 5");
}

TEST_F(DistillTest, InputShapeMismatchIsAClearError) {
  ArchSpec small = zoo_spec("mlp-small");
  small.input_shape = {1, 14, 14};
  for (auto& l : small.layers) l.in_features = 0;  // inferred again from the new input
  Model student = Model::initialize(small.resolved(), 0);
  ASSERT_THROWS_WITH(
      distill::check_compatible(testing::trained_teacher("mlp"), student), ModelError,
      "teacher 'mlp' takes input [1, 28, 28] but student 'mlp-small' takes [1, 14, 14]");
}

TEST_F(DistillTest, QuantizedStudentIsRejected) {
  Model student = fresh("mlp-small");
  student.quant.mode = "fp16";
  ASSERT_THROWS_WITH(distill::distill_model(student, testing::trained_teacher("mlp"), quick(1, 0.5),
                                            testing::distill_train_data(), Dataset{}),
                     ConfigError, "the student is quantized (fp16)");
}

TEST_F(DistillTest, AlphaZeroIsPlainTraining) {
  // Same options, loss α = 0: bitwise the weights `train` gives. This is what makes the
  // experiment's baseline comparison differ in the loss only.
  const auto& data = testing::distill_train_data();
  const auto& val = testing::distill_val_data();
  Model distilled = fresh("mlp-small"), alone = fresh("mlp-small");
  const auto o = quick(2, 0.0);
  const auto report =
      distill::distill_model(distilled, testing::trained_teacher("lenet5"), o, data, val);
  const auto result = train_model(alone, data, val, o.train);
  expect_same_tensors(distilled, alone);
  EXPECT_EQ(report.train.best_epoch, result.best_epoch);
}

TEST_F(DistillTest, AlphaOneLearnsFromTheTeacherAlone) {
  // Labels scrambled: with α = 1 the student never uses them, and learns the task from the
  // teacher's soft targets; with α = 0 it can only learn the noise.
  Dataset scrambled = testing::distill_train_data();
  torch::manual_seed(4);
  scrambled.y = scrambled.y.index_select(
      0, torch::randperm(scrambled.size(), torch::TensorOptions(torch::kLong)));
  const Model& teacher = testing::trained_teacher("lenet5");
  const auto& val = testing::distill_val_data();
  ASSERT_GT(accuracy(teacher, val), 0.95);
  Model from_teacher = fresh("mlp-small"), from_labels = fresh("mlp-small");
  const auto report =
      distill::distill_model(from_teacher, teacher, quick(4, 1.0), scrambled, Dataset{});
  distill::distill_model(from_labels, teacher, quick(4, 0.0), scrambled, Dataset{});
  EXPECT_GT(accuracy(from_teacher, val), 0.9);
  EXPECT_LT(accuracy(from_labels, val), 0.5);
  EXPECT_EQ(report.train.epochs.size(), 4u);
  EXPECT_LT(report.train.epochs.back().train_loss, report.train.epochs.front().train_loss);
}

TEST_F(DistillTest, TeacherIsUnchangedAndOnlyTheStudentTrains) {
  const Model teacher = testing::trained_teacher("lenet5").clone();
  const Model before = teacher.clone();
  Model student = fresh("lenet5-small");
  const Model student_before = student.clone();
  distill::distill_model(student, teacher, quick(1, 0.9), testing::distill_train_data(), Dataset{});
  expect_same_tensors(teacher, before);
  bool any_changed = false;
  for (const auto& [name, t] : student.tensors())
    any_changed |= !t.equal(student_before.tensor(name));
  EXPECT_TRUE(any_changed);
}

TEST_F(DistillTest, SelfDistillationFromAClone) {
  // Recovery fine-tuning / self-distillation: the teacher is the student as it came in.
  Model student = testing::trained_teacher("lenet5-small").clone();
  const Model teacher = student.clone();
  const auto& val = testing::distill_val_data();
  const auto report =
      distill::distill_model(student, teacher, quick(1, 1.0), testing::distill_train_data(), val);
  EXPECT_DOUBLE_EQ(report.teacher_val_accuracy, report.student_val_accuracy_before);
  EXPECT_GE(report.student_val_accuracy, report.student_val_accuracy_before - 0.02);
  expect_same_tensors(teacher, testing::trained_teacher("lenet5-small"));
}

TEST_F(DistillTest, PrunedStudentKeepsItsZeros) {
  Model student = fresh("mlp-small");
  const auto mask = torch::rand({32, 784}) > 0.5;
  student.set_mask("1.weight", mask);
  distill::distill_model(student, testing::trained_teacher("mlp"), quick(2, 0.9),
                         testing::distill_train_data(), Dataset{});
  const auto& w = student.tensor("1.weight");
  EXPECT_EQ(w.masked_select(mask.logical_not()).abs().sum().item<double>(), 0.0);
  EXPECT_GT(w.masked_select(mask).abs().sum().item<double>(), 0.0);
}

TEST_F(DistillTest, CachingGivesTheSameStudent) {
  // Cached teacher logits are looked up, uncached ones computed per batch; they agree to the
  // last bits of a GEMM (see teacher_test), so after 2 epochs the weights agree to 1e-4.
  const auto& data = testing::distill_train_data();
  const Model& teacher = testing::trained_teacher("lenet5");
  Model cached = fresh("lenet5-small"), uncached = fresh("lenet5-small");
  auto o = quick(2, 0.9);
  const auto a = distill::distill_model(cached, teacher, o, data, Dataset{});
  o.cache_limit_mb = 0;
  const auto b = distill::distill_model(uncached, teacher, o, data, Dataset{});
  EXPECT_TRUE(a.logits_cached);
  EXPECT_FALSE(b.logits_cached);
  EXPECT_EQ(a.cache_bytes, data.size() * 10 * 4);
  for (const auto& [name, t] : cached.tensors()) {
    EXPECT_TRUE(t.allclose(uncached.tensor(name), 1e-4, 1e-4))
        << name << " differs by " << (t - uncached.tensor(name)).abs().max().item<double>();
  }
}

TEST_F(DistillTest, HintTrainsThroughAnAdapter) {
  const auto& data = testing::distill_train_data();
  const Model& teacher = testing::trained_teacher("lenet5");
  auto o = quick(6, 0.9);
  Model plain = fresh("lenet5-small"), hinted = fresh("lenet5-small");
  distill::distill_model(plain, teacher, o, data, Dataset{});
  EXPECT_GT(accuracy(plain, testing::distill_val_data()), 0.9);
  o.hint_teacher = "4";  // [16, 10, 10] after the second conv's relu
  o.hint_student = "4";  // [8, 10, 10]
  o.beta = 1.0;
  const auto report = distill::distill_model(hinted, teacher, o, data, testing::distill_val_data());
  EXPECT_EQ(report.hint_adapter, "conv1x1");
  EXPECT_TRUE(report.features_cached);
  EXPECT_GT(report.student_val_accuracy, 0.9);
  // The hint reaches the convolutions it is attached after.
  EXPECT_FALSE(hinted.tensor("0.weight").equal(plain.tensor("0.weight")));

  Model other = fresh("lenet5-small");
  o.hint_student = "5";
  ASSERT_THROWS_WITH(distill::distill_model(other, teacher, o, data, Dataset{}), ConfigError,
                     "hint_student: student 'lenet5-small' has no activation '5'");
}

TEST_F(DistillTest, ReportRecordsOptionsAndMetrics) {
  Model student = fresh("mlp-small");
  auto o = quick(2, 0.7, 3.0);
  const auto report =
      distill::distill_model(student, testing::trained_teacher("lenet5"), o,
                             testing::distill_train_data(), testing::distill_val_data());
  const auto doc = nlohmann::json::parse(report.to_json());
  EXPECT_EQ(doc["stage"], "distill");
  EXPECT_EQ(doc["options"]["temperature"], 3.0);
  EXPECT_EQ(doc["options"]["alpha"], 0.7);
  EXPECT_EQ(doc["options"]["epochs"], 2);
  EXPECT_EQ(doc["epochs"].size(), 2u);
  EXPECT_EQ(doc["teacher"]["arch"], "lenet5");
  EXPECT_EQ(doc["student"]["parameters"], 25450);
  const auto& m = doc["metrics"];
  EXPECT_DOUBLE_EQ(m["teacher_val_accuracy"].get<double>(), report.teacher_val_accuracy);
  EXPECT_GT(report.teacher_val_accuracy, 0.95);
  EXPECT_DOUBLE_EQ(m["student_val_accuracy"].get<double>(),
                   accuracy(student, testing::distill_val_data()));
  EXPECT_LT(report.student_val_accuracy_before, 0.5);  // untrained
  EXPECT_EQ(m["teacher_logits_cached"], true);
}

}  // namespace
}  // namespace mcompress
