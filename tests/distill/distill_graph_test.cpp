// Distillation with graph models: a graph teacher (resnet18) into a sequential student, a graph
// student (mobilenetv2) trained on the teacher's logits, and the hint a graph student cannot
// take yet.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include "mcompress/core/error.h"
#include "mcompress/core/zoo.h"
#include "mcompress/core/zoo_graphs.h"
#include "mcompress/distill/distill.h"
#include "test_support.h"

namespace mcompress::distill {
namespace {

DistillOptions one_quiet_epoch() {
  DistillOptions o;
  o.train.epochs = 1;
  o.train.batch_size = 16;
  o.train.progress = false;
  return o;
}

TEST(DistillGraphTest, AGraphTeacherTeachesASequentialStudent) {
  const Model teacher = Model::initialize(zoo_graph("resnet18"), 1);
  Model student = Model::initialize(zoo_spec("mlp-small"), 2);
  const at::Tensor before = student.tensor("1.weight").clone();
  const Dataset data = testing::block_images(32, 4);
  const auto report = distill_model(student, teacher, one_quiet_epoch(), data, data);
  EXPECT_EQ(report.teacher_arch, "resnet18");
  EXPECT_EQ(report.teacher_parameters, teacher.parameter_count());
  EXPECT_EQ(report.train.epochs.size(), 1U);
  EXPECT_FALSE(torch::equal(before, student.tensor("1.weight")));
}

TEST(DistillGraphTest, AGraphStudentLearnsFromTheTeachersLogits) {
  const Model teacher = Model::initialize(zoo_spec("lenet5"), 1);
  Model student = Model::initialize(zoo_graph("mobilenetv2"), 2);
  const at::Tensor before = student.tensor("classifier.1.weight").clone();
  const Dataset data = testing::block_images(32, 5);
  const auto report = distill_model(student, teacher, one_quiet_epoch(), data, Dataset{});
  EXPECT_EQ(report.student_arch, "mobilenetv2");
  EXPECT_FALSE(torch::equal(before, student.tensor("classifier.1.weight")));
}

// A hint reaches a graph student through GraphNetwork's activation taps: the same seed with
// the hint's weight beta at 1 trains other tensors than at 10 (the same random draws, so only
// the hint's gradient differs), and an unknown key is refused with the keys there are.
TEST(DistillGraphTest, AHintIntoAGraphStudentShapesItsTraining) {
  const Model teacher = Model::initialize(zoo_spec("lenet5"), 1);
  const Dataset data = testing::block_images(16, 1);
  DistillOptions o = one_quiet_epoch();
  o.hint_teacher = "4";
  o.hint_student = "features.1.conv.2";
  auto distilled = [&](double beta) {
    Model student = Model::initialize(zoo_graph("mobilenetv2"), 2);
    DistillOptions with = o;
    with.beta = beta;
    const auto report = distill_model(student, teacher, with, data, Dataset{});
    EXPECT_FALSE(report.hint_adapter.empty());
    return student.tensor("features.0.0.weight").clone();
  };
  EXPECT_FALSE(torch::equal(distilled(1.0), distilled(10.0)));

  Model student = Model::initialize(zoo_graph("mobilenetv2"), 2);
  o.hint_student = "features.1.conv.1";  // a Conv fused with its batchnorm: not a value of its own
  o.beta = 1;
  ASSERT_THROWS_WITH(distill_model(student, teacher, o, data, Dataset{}), ConfigError,
                     "hint_student: student 'mobilenetv2' has no activation 'features.1.conv.1'; "
                     "accepted: input, features.0.1, features.1.conv.0.1, features.1.conv.2, ");
}

}  // namespace
}  // namespace mcompress::distill
