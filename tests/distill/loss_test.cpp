// The distillation losses against hand-computed values and their limits (α = 0 / 1, T → ∞),
// and the FitNets hint adapter.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/distill/loss.h"
#include "test_support.h"

namespace mcompress {
namespace {

// Double precision: the formulas below are evaluated in double, so 1e-12 leaves room only for
// the order of summation.
constexpr double kTolDouble = 1e-12;
// Float32 computation against double references.
constexpr double kTolFloat = 1e-5;

// Two examples, three classes, small enough to check by hand.
const std::vector<std::vector<double>> kStudent = {{1.0, 2.0, 0.5}, {0.0, -1.0, 3.0}};
const std::vector<std::vector<double>> kTeacher = {{2.0, 0.0, 1.0}, {0.5, 0.5, 2.0}};
const std::vector<int64_t> kLabels = {1, 2};

at::Tensor to_tensor(const std::vector<std::vector<double>>& rows, at::ScalarType type) {
  std::vector<double> flat;
  for (const auto& r : rows) flat.insert(flat.end(), r.begin(), r.end());
  return torch::tensor(flat, torch::kDouble)
      .reshape({static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())})
      .to(type);
}

std::vector<double> softmax(const std::vector<double>& z, double temperature) {
  double sum = 0;
  std::vector<double> p;
  for (double v : z) sum += std::exp(v / temperature);
  for (double v : z) p.push_back(std::exp(v / temperature) / sum);
  return p;
}

// T²·(1/N)·Σ_n Σ_i p_t,i·log(p_t,i / p_s,i), written out.
double soft_by_hand(const std::vector<std::vector<double>>& s,
                    const std::vector<std::vector<double>>& t, double temperature) {
  double total = 0;
  for (size_t n = 0; n < s.size(); ++n) {
    const auto ps = softmax(s[n], temperature), pt = softmax(t[n], temperature);
    for (size_t i = 0; i < ps.size(); ++i) total += pt[i] * std::log(pt[i] / ps[i]);
  }
  return temperature * temperature * total / static_cast<double>(s.size());
}

// (1/N)·Σ_n −log softmax(z_s)[y_n].
double ce_by_hand(const std::vector<std::vector<double>>& s, const std::vector<int64_t>& y) {
  double total = 0;
  for (size_t n = 0; n < s.size(); ++n)
    total -= std::log(softmax(s[n], 1.0)[static_cast<size_t>(y[n])]);
  return total / static_cast<double>(s.size());
}

// The T → ∞ limit: (1/N)·Σ_n ‖c(z_s) − c(z_t)‖² / (2C), c = minus the row mean.
double logit_matching(const std::vector<std::vector<double>>& s,
                      const std::vector<std::vector<double>>& t) {
  double total = 0;
  for (size_t n = 0; n < s.size(); ++n) {
    double ms = 0, mt = 0;
    for (size_t i = 0; i < s[n].size(); ++i) {
      ms += s[n][i];
      mt += t[n][i];
    }
    const double c = static_cast<double>(s[n].size());
    ms /= c;
    mt /= c;
    for (size_t i = 0; i < s[n].size(); ++i) {
      const double d = (s[n][i] - ms) - (t[n][i] - mt);
      total += d * d / (2 * c);
    }
  }
  return total / static_cast<double>(s.size());
}

using Shape = std::vector<int64_t>;

at::Tensor labels() { return torch::tensor(kLabels, torch::kLong); }

TEST(DistillLossTest, SoftTargetLossMatchesTheFormula) {
  const double want = soft_by_hand(kStudent, kTeacher, 2.0);
  EXPECT_NEAR(want, 0.6446098551424526, kTolDouble);  // the same formula, evaluated in Python
  const auto got = distill::soft_target_loss(to_tensor(kStudent, torch::kDouble),
                                             to_tensor(kTeacher, torch::kDouble), 2.0);
  EXPECT_NEAR(got.item<double>(), want, kTolDouble);
  const auto got_f = distill::soft_target_loss(to_tensor(kStudent, torch::kFloat),
                                               to_tensor(kTeacher, torch::kFloat), 2.0);
  EXPECT_NEAR(got_f.item<double>(), want, kTolFloat);
}

TEST(DistillLossTest, KdLossWeighsBothTerms) {
  const double ce = ce_by_hand(kStudent, kLabels);
  EXPECT_NEAR(ce, 0.26512634393268697, kTolDouble);
  const double want = 0.7 * soft_by_hand(kStudent, kTeacher, 2.0) + 0.3 * ce;
  EXPECT_NEAR(want, 0.5307648017795229, kTolDouble);
  const auto got = distill::kd_loss(to_tensor(kStudent, torch::kDouble),
                                    to_tensor(kTeacher, torch::kDouble), labels(), 2.0, 0.7);
  EXPECT_NEAR(got.item<double>(), want, kTolDouble);
}

TEST(DistillLossTest, AlphaZeroIsPlainCrossEntropy) {
  // Exactly the loss of plain training, value and gradient, whatever the teacher says.
  auto a = to_tensor(kStudent, torch::kFloat).requires_grad_(true);
  auto b = to_tensor(kStudent, torch::kFloat).requires_grad_(true);
  const auto kd = distill::kd_loss(a, to_tensor(kTeacher, torch::kFloat), labels(), 4.0, 0.0);
  const auto ce = torch::cross_entropy_loss(b, labels());
  EXPECT_TRUE(kd.equal(ce));
  kd.backward();
  ce.backward();
  EXPECT_TRUE(a.grad().equal(b.grad()));
  EXPECT_NEAR(kd.item<double>(), ce_by_hand(kStudent, kLabels), kTolFloat);
}

TEST(DistillLossTest, AlphaOneIsPureSoftTargets) {
  const auto s = to_tensor(kStudent, torch::kDouble), t = to_tensor(kTeacher, torch::kDouble);
  const auto with_labels = distill::kd_loss(s, t, labels(), 3.0, 1.0);
  const auto other_labels = distill::kd_loss(s, t, torch::tensor({0, 0}, torch::kLong), 3.0, 1.0);
  EXPECT_TRUE(with_labels.equal(other_labels));  // labels play no part
  EXPECT_NEAR(with_labels.item<double>(), soft_by_hand(kStudent, kTeacher, 3.0), kTolDouble);
  // Zero exactly when the student says what the teacher says (up to a shift of the logits).
  const auto same = distill::kd_loss(t + 5.0, t, labels(), 3.0, 1.0);
  EXPECT_NEAR(same.item<double>(), 0.0, kTolDouble);
  EXPECT_GT(with_labels.item<double>(), 0.1);
}

TEST(DistillLossTest, LargeTemperatureTendsToLogitMatching) {
  // T²·KL → ‖c(z_s) − c(z_t)‖²/(2C) with a relative error of order 1/T; its gradient tends to
  // (c(z_s) − c(z_t))/(C·N). Measured in Python for these logits: relative errors 4.9e-3,
  // 8.8e-4, 9.2e-5 and gradient errors 1.7e-2, 1.8e-3, 1.8e-4 at T = 10, 100, 1000; the
  // bound 1/T holds for both.
  const double limit = logit_matching(kStudent, kTeacher);
  double previous_error = 1e9;
  for (double temperature : {10.0, 100.0, 1000.0}) {
    auto s = to_tensor(kStudent, torch::kDouble).requires_grad_(true);
    const auto t = to_tensor(kTeacher, torch::kDouble);
    const auto loss = distill::soft_target_loss(s, t, temperature);
    const double error = std::abs(loss.item<double>() - limit) / limit;
    EXPECT_LT(error, 1.0 / temperature) << "T " << temperature;
    EXPECT_LT(error, previous_error) << "T " << temperature;
    previous_error = error;
    loss.backward();
    const auto c = [](const at::Tensor& z) { return z - z.mean(1, true); };
    const auto want_grad = (c(s.detach()) - c(t)) / (3.0 * 2.0);
    EXPECT_LT((s.grad() - want_grad).abs().max().item<double>(), 1.0 / temperature)
        << "T " << temperature;
  }
  // In float32, where the KL itself underflows towards rounding noise, T²·KL stays finite.
  for (double temperature : {1e3, 1e6}) {
    const auto loss = distill::soft_target_loss(to_tensor(kStudent, torch::kFloat),
                                                to_tensor(kTeacher, torch::kFloat), temperature);
    EXPECT_TRUE(std::isfinite(loss.item<double>())) << "T " << temperature;
  }
}

TEST(DistillLossTest, TeacherLogitsGetNoGradient) {
  auto s = to_tensor(kStudent, torch::kFloat).requires_grad_(true);
  auto t = to_tensor(kTeacher, torch::kFloat).requires_grad_(true);
  distill::kd_loss(s, t, labels(), 4.0, 0.5).backward();
  ASSERT_TRUE(s.grad().defined());
  EXPECT_GT(s.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(t.grad().defined());
}

TEST(DistillLossTest, BadArgumentsAreClearErrors) {
  const auto s = to_tensor(kStudent, torch::kFloat);
  ASSERT_THROWS_WITH(distill::soft_target_loss(s, torch::zeros({2, 4}), 2.0), ModelError,
                     "teacher logits [2, 4]");
  ASSERT_THROWS_WITH(distill::soft_target_loss(s, s, 0.0), ConfigError, "temperature must be > 0");
  ASSERT_THROWS_WITH(distill::kd_loss(s, s, labels(), 2.0, 1.5), ConfigError, "alpha");
  ASSERT_THROWS_WITH(distill::kd_loss(s, torch::zeros({2, 4}), labels(), 2.0, 0.0), ModelError,
                     "student logits [2, 3]");
}

TEST(HintAdapterTest, MapsStudentShapesOntoTheTeacher) {
  torch::manual_seed(0);
  {  // conv maps: 1x1 conv 8 → 64 channels, then pooled from 10x10 down to 7x7
    distill::HintAdapter a(Shape{8, 10, 10}, Shape{64, 7, 7});
    EXPECT_STREQ(a->kind(), "conv1x1");
    EXPECT_EQ(a->forward(torch::rand({2, 8, 10, 10})).sizes(), (at::IntArrayRef{2, 64, 7, 7}));
    EXPECT_EQ(a->parameters().size(), 2u);
  }
  {  // same spatial size: no pooling
    distill::HintAdapter a(Shape{8, 10, 10}, Shape{16, 10, 10});
    EXPECT_EQ(a->forward(torch::rand({3, 8, 10, 10})).sizes(), (at::IntArrayRef{3, 16, 10, 10}));
  }
  {  // a vector onto a feature map: flattened, linear
    distill::HintAdapter a(Shape{32}, Shape{4, 3, 3});
    EXPECT_STREQ(a->kind(), "linear");
    const auto y = a->forward(torch::rand({2, 32}));
    EXPECT_EQ(y.sizes(), (at::IntArrayRef{2, 36}));
    EXPECT_NO_THROW(distill::hint_loss(y, torch::rand({2, 4, 3, 3})));
  }
  ASSERT_THROWS_WITH(distill::HintAdapter(Shape{8, 5, 5}, Shape{64, 7, 7}), ConfigError,
                     "spatially smaller than the teacher activation [64, 7, 7]");
  ASSERT_THROWS_WITH(distill::hint_loss(torch::rand({2, 36}), torch::rand({2, 4, 3, 4})),
                     ModelError, "do not match teacher features [2, 4, 3, 4]");
}

TEST(HintAdapterTest, HintLossTrainsAdapterAndStudentNotTeacher) {
  // Teacher features that a 1x1 conv of the student's can reproduce exactly: the hint loss
  // must be driven to ~0 by the adapter, and never push a gradient into the teacher.
  torch::manual_seed(1);
  const auto student_in = torch::randn({16, 4, 6, 6});
  const auto mix = torch::randn({8, 4, 1, 1});
  auto teacher = torch::conv2d(student_in, mix).requires_grad_(true);
  auto student = student_in.clone().requires_grad_(true);
  distill::HintAdapter a(Shape{4, 6, 6}, Shape{8, 6, 6});
  torch::optim::Adam opt(a->parameters(), torch::optim::AdamOptions(0.05));
  const double first = distill::hint_loss(a->forward(student), teacher).item<double>();
  double last = first;
  for (int step = 0; step < 300; ++step) {
    opt.zero_grad();
    const auto loss = distill::hint_loss(a->forward(student), teacher);
    loss.backward();
    opt.step();
    last = loss.item<double>();
  }
  EXPECT_LT(last, 1e-3 * first) << "first " << first << " last " << last;
  ASSERT_TRUE(student.grad().defined());
  EXPECT_GT(student.grad().abs().sum().item<double>(), 0.0);
  EXPECT_FALSE(teacher.grad().defined());
}

}  // namespace
}  // namespace mcompress
