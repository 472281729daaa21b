#include "mcompress/quant/observer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <tuple>
#include <vector>

#include "mcompress/core/error.h"
#include "test_support.h"

namespace mcompress::quant {
namespace {

const std::vector<ObserverKind> kAllKinds = {
    ObserverKind::kMinMax, ObserverKind::kMovingAverageMinMax, ObserverKind::kPercentile,
    ObserverKind::kEntropy, ObserverKind::kMse};

ObserverOptions options_for(ObserverKind kind) {
  ObserverOptions o;
  o.kind = kind;
  return o;
}

ActivationQParams observe_all(ObserverKind kind, const std::vector<at::Tensor>& batches) {
  Observer obs(options_for(kind));
  for (const auto& b : batches) obs.observe(b);
  return obs.qparams();
}

/// The representable range [lo, hi] of qparams.
std::pair<double, double> range_of(const ActivationQParams& q) {
  return {-static_cast<double>(q.zero_point) * q.scale,
          static_cast<double>(255 - q.zero_point) * q.scale};
}

/// Mean squared error of fake-quantizing x (quint8) with q, in double precision.
double fake_quant_mse(const at::Tensor& x, const ActivationQParams& q) {
  at::Tensor xd = x.to(at::kDouble);
  at::Tensor code = (at::round(xd / q.scale) + static_cast<double>(q.zero_point)).clamp(0, 255);
  at::Tensor back = (code - static_cast<double>(q.zero_point)) * q.scale;
  return (back - xd).pow(2).mean().item<double>();
}

void expect_sane(const ActivationQParams& q) {
  EXPECT_TRUE(std::isfinite(q.scale));
  EXPECT_GT(q.scale, 0.0);
  EXPECT_GE(q.zero_point, 0);
  EXPECT_LE(q.zero_point, 255);
}

// ---------------------------------------------------------------------------------------------
// Tier 1: hand-computed.

TEST(ObserverTest, MinMaxHandComputed) {
  ActivationQParams q = observe_all(ObserverKind::kMinMax, {at::tensor({-1.f, 0.f, 3.f})});
  EXPECT_DOUBLE_EQ(q.scale, 4.0 / 255.0);
  EXPECT_EQ(q.zero_point, 64);  // round(1 / (4/255)) = round(63.75)
  EXPECT_EQ(q.observer, "minmax");
}

TEST(ObserverTest, RangeAlwaysContainsZero) {
  // Positive-only data: lo becomes 0.
  ActivationQParams pos = observe_all(ObserverKind::kMinMax, {at::tensor({2.f, 3.f})});
  EXPECT_DOUBLE_EQ(pos.scale, 3.0 / 255.0);
  EXPECT_EQ(pos.zero_point, 0);
  // Negative-only data: hi becomes 0.
  ActivationQParams neg = observe_all(ObserverKind::kMinMax, {at::tensor({-2.f, -5.f})});
  EXPECT_DOUBLE_EQ(neg.scale, 5.0 / 255.0);
  EXPECT_EQ(neg.zero_point, 255);
}

TEST(ObserverTest, AllZeroInputGetsTinyPositiveScale) {
  for (ObserverKind kind : kAllKinds) {
    SCOPED_TRACE(to_string(kind));
    ActivationQParams q = observe_all(kind, {at::zeros({3, 4}), at::zeros({7})});
    expect_sane(q);
    EXPECT_EQ(q.zero_point, 0);
    EXPECT_LE(q.scale, 1e-6);
    EXPECT_EQ(q.observer, to_string(kind));
  }
}

TEST(ObserverTest, ConstantInputRangeIsZeroToValue) {
  for (ObserverKind kind : kAllKinds) {
    SCOPED_TRACE(to_string(kind));
    ActivationQParams q = observe_all(kind, {at::full({1000}, 5.0f)});
    expect_sane(q);
    EXPECT_EQ(q.zero_point, 0);
    if (kind == ObserverKind::kMinMax || kind == ObserverKind::kMovingAverageMinMax) {
      EXPECT_DOUBLE_EQ(q.scale, 5.0 / 255.0);
    } else {
      EXPECT_NEAR(q.scale * 255.0, 5.0, 0.05);
    }
    ActivationQParams n = observe_all(kind, {at::full({1000}, -5.0f)});
    EXPECT_EQ(n.zero_point, 255);
    EXPECT_NEAR(n.scale * 255.0, 5.0, 0.05);
  }
}

TEST(ObserverTest, MinMaxIsGlobalOverBatches) {
  ActivationQParams q = observe_all(
      ObserverKind::kMinMax, {at::tensor({0.5f, 1.f}), at::tensor({-2.f}), at::tensor({4.f})});
  EXPECT_DOUBLE_EQ(q.scale, 6.0 / 255.0);
  EXPECT_EQ(q.zero_point, 85);  // round(2 / (6/255)) = 85
}

TEST(ObserverTest, MovingAverageHandComputed) {
  ObserverOptions o = options_for(ObserverKind::kMovingAverageMinMax);
  o.averaging_constant = 0.5;
  Observer obs(o);
  obs.observe(at::tensor({0.f, 1.f}));
  obs.observe(at::tensor({-1.f, 3.f}));
  // min = 0 + 0.5·(−1 − 0) = −0.5, max = 1 + 0.5·(3 − 1) = 2.
  ActivationQParams q = obs.qparams();
  EXPECT_DOUBLE_EQ(q.scale, 2.5 / 255.0);
  EXPECT_EQ(q.zero_point, 51);  // 0.5 / (2.5/255) = 51
  EXPECT_EQ(q.observer, "moving-average-minmax");
}

TEST(ObserverTest, EmptyTensorIsIgnored) {
  Observer obs(options_for(ObserverKind::kPercentile));
  obs.observe(at::empty({0, 3}));
  ASSERT_THROWS_WITH(obs.qparams(), ModelError, "observer has seen no data");
  obs.observe(at::tensor({-1.f, 0.f, 3.f}));
  obs.observe(at::empty({0}));
  expect_sane(obs.qparams());
}

// ---------------------------------------------------------------------------------------------
// Tier 2: against LibTorch.

TEST(ObserverTest, MinMaxMatchesLibTorchChooseQParams) {
  at::manual_seed(11);
  for (int trial = 0; trial < 20; ++trial) {
    at::Tensor x = at::randn({257}) * (0.1 + trial) + (trial % 5 - 2) * 0.7;
    ActivationQParams q = observe_all(ObserverKind::kMinMax, {x});
    auto [scale, zp] = at::_choose_qparams_per_tensor(x, /*reduce_range=*/false);
    EXPECT_NEAR(q.scale, scale, 1e-6 * scale) << "trial " << trial;
    EXPECT_EQ(q.zero_point, zp) << "trial " << trial;
    // torch.ao MinMaxObserver's formula in float32: zp = 0 − round(min_neg / scale).
    const float min_neg = std::min(x.min().item<float>(), 0.0f);
    const float max_pos = std::max(x.max().item<float>(), 0.0f);
    const float fscale =
        std::max((max_pos - min_neg) / 255.0f, std::numeric_limits<float>::epsilon());
    const auto fzp =
        static_cast<int64_t>(std::clamp(-std::nearbyint(min_neg / fscale), 0.f, 255.f));
    EXPECT_NEAR(q.scale, fscale, 1e-6 * fscale);
    EXPECT_EQ(q.zero_point, fzp);
  }
}

// ---------------------------------------------------------------------------------------------
// Behaviour on known distributions.

TEST(ObserverTest, UniformZeroOne) {
  at::manual_seed(1);
  at::Tensor x = at::rand({100000});
  ActivationQParams q = observe_all(ObserverKind::kMinMax, {x});
  EXPECT_NEAR(q.scale, 1.0 / 255.0, 1e-3 / 255.0);
  EXPECT_EQ(q.zero_point, 0);
  for (ObserverKind kind : kAllKinds) {
    SCOPED_TRACE(to_string(kind));
    ActivationQParams h = observe_all(kind, {x.slice(0, 0, 50000), x.slice(0, 50000)});
    expect_sane(h);
    EXPECT_EQ(h.zero_point, 0);
    // Uniform data has no outliers: every observer keeps (nearly) the whole range.
    EXPECT_GT(h.scale * 255.0, 0.95);
    EXPECT_LT(h.scale * 255.0, 1.0 + 1e-6);
  }
}

TEST(ObserverTest, MovingAverageConvergesToBatchRange) {
  at::manual_seed(2);
  ObserverOptions o = options_for(ObserverKind::kMovingAverageMinMax);
  o.averaging_constant = 0.01;
  Observer obs(o);
  obs.observe(at::rand({1000}));                                         // [0, 1]
  for (int i = 0; i < 1000; ++i) obs.observe(at::rand({1000}) * 5 - 2);  // [−2, 3]
  auto [lo, hi] = range_of(obs.qparams());
  EXPECT_NEAR(lo, -2.0, 0.05);
  EXPECT_NEAR(hi, 3.0, 0.05);
}

TEST(ObserverTest, PercentileOfUniform) {
  at::manual_seed(3);
  ObserverOptions o = options_for(ObserverKind::kPercentile);
  o.percentile = 90.0;
  Observer obs(o);
  obs.observe(at::rand({200000}) * 2 - 1);  // uniform [−1, 1]
  auto [lo, hi] = range_of(obs.qparams());
  // 90th percentile 0.8, 10th −0.8 (zero-point rounding moves the ends by < 1 step).
  EXPECT_NEAR(hi, 0.8, 0.01);
  EXPECT_NEAR(lo, -0.8, 0.01);

  ObserverOptions o100 = o;
  o100.percentile = 100.0;
  Observer all(o100);
  at::Tensor x = at::tensor({-1.f, 0.f, 3.f});
  all.observe(x);
  EXPECT_DOUBLE_EQ(all.qparams().scale, 4.0 / 255.0);
}

TEST(ObserverTest, PercentileAcrossGrowingBatches) {
  // Batch 1 uniform [0, 1], batch 2 uniform [0, 10]: the histogram is re-binned when batch 2
  // extends the range. Combined CDF F(x) = 0.5·min(x, 1) + 0.05·x, so the 99th percentile
  // is 9.8 (and lo is 0: no negative values).
  at::manual_seed(4);
  ObserverOptions o = options_for(ObserverKind::kPercentile);
  o.percentile = 99.0;
  Observer obs(o);
  obs.observe(at::rand({200000}));
  obs.observe(at::rand({200000}) * 10);
  auto [lo, hi] = range_of(obs.qparams());
  EXPECT_NEAR(hi, 9.8, 0.05);
  EXPECT_EQ(lo, 0.0);

  // Signed growth in both directions.
  Observer signed_obs(o);
  signed_obs.observe(at::rand({100000}) * 2 - 1);    // [−1, 1]
  signed_obs.observe(at::rand({100000}) * 40 - 20);  // [−20, 20]
  // For x ≥ 1, F(x) = 0.5 + 0.5·(x + 20)/40, so the 99th percentile solves
  // 0.5 + 0.5·(x + 20)/40 = 0.99 → x = 19.2; by symmetry the 1st is −19.2.
  auto [slo, shi] = range_of(signed_obs.qparams());
  EXPECT_NEAR(shi, 19.2, 0.2);
  EXPECT_NEAR(slo, -19.2, 0.2);
}

TEST(ObserverTest, OutliersBlowUpMinMaxButNotPercentile) {
  at::manual_seed(5);
  at::Tensor x = at::randn({100000});
  x.slice(0, 0, 5).fill_(1e4);  // 5 extreme outliers (0.005%)
  ActivationQParams mm = observe_all(ObserverKind::kMinMax, {x});
  EXPECT_GT(range_of(mm).second, 9000.0);
  ActivationQParams p = observe_all(ObserverKind::kPercentile, {x});
  expect_sane(p);
  auto [lo, hi] = range_of(p);
  EXPECT_LT(hi, 10.0);
  EXPECT_GT(hi, 2.0);
  EXPECT_GT(lo, -10.0);
  EXPECT_LT(lo, -2.0);
}

TEST(ObserverTest, EntropyIgnoresModerateOutliers) {
  // The entropy search cannot go below 128 histogram bins (range/16 with 2048 bins), so the
  // outliers here are 50, not 1e4: the threshold then can reach the bulk.
  at::manual_seed(6);
  at::Tensor x = at::randn({200000});
  x.slice(0, 0, 20).fill_(50.0);
  ActivationQParams mm = observe_all(ObserverKind::kMinMax, {x});
  EXPECT_GT(range_of(mm).second, 49.0);
  ActivationQParams e = observe_all(ObserverKind::kEntropy, {x});
  expect_sane(e);
  auto [lo, hi] = range_of(e);
  EXPECT_LT(hi, 10.0);
  EXPECT_GT(hi, 2.0);
  EXPECT_LT(lo, -2.0);
}

TEST(ObserverTest, EntropyOnReluGaussian) {
  at::manual_seed(7);
  std::vector<at::Tensor> batches;
  for (int i = 0; i < 4; ++i) batches.push_back(at::relu(at::randn({250000})));
  ActivationQParams q = observe_all(ObserverKind::kEntropy, batches);
  expect_sane(q);
  EXPECT_EQ(q.zero_point, 0);
  const double threshold = q.scale * 255.0;
  EXPECT_GT(threshold, 2.0);
  EXPECT_LT(threshold, 5.0);
  // Never beyond the observed max (≈ 4.5 here; KL(P‖Q) keeps the whole Gaussian tail).
  const double max = at::stack(batches).max().item<double>();
  EXPECT_LE(threshold, max * (1 + 1e-12));
}

TEST(ObserverTest, EntropyOnSignedGaussian) {
  at::manual_seed(8);
  at::Tensor x = at::randn({500000});
  ActivationQParams q = observe_all(ObserverKind::kEntropy, {x});
  expect_sane(q);
  auto [lo, hi] = range_of(q);
  EXPECT_GT(hi, 2.0);
  EXPECT_LT(hi, 5.0);
  EXPECT_LT(lo, -2.0);
  EXPECT_GT(lo, -5.0);
  EXPECT_NEAR(lo, -hi, 0.5);  // each side searched on its own, 128 levels each
}

TEST(ObserverTest, EntropyKeepsSmallNegativeLobe) {
  // SiLU outputs: a long positive tail and a small negative lobe down to −0.278. Each side is
  // searched on its own, so the lobe is not folded into |x| and stays in range.
  at::manual_seed(13);
  at::Tensor x = at::silu(at::randn({500000}) * 2);
  ActivationQParams e = observe_all(ObserverKind::kEntropy, {x});
  ActivationQParams mm = observe_all(ObserverKind::kMinMax, {x});
  auto [lo, hi] = range_of(e);
  EXPECT_NEAR(lo, x.min().item<double>(), 0.02);
  EXPECT_GT(hi, 5.0);
  EXPECT_LT(fake_quant_mse(x, e), 1.5 * fake_quant_mse(x, mm));
}

TEST(ObserverTest, MseBeatsMinMaxOnOutlierData) {
  // One outlier at 30 among 10^6 N(0, 1) values: clipping it costs (30 − c)² / 10^6 while
  // the finer step saves on every other value.
  at::manual_seed(9);
  at::Tensor x = at::randn({1000000});
  x.index_put_({0}, 30.0f);
  ActivationQParams mm = observe_all(ObserverKind::kMinMax, {x});
  ActivationQParams mse =
      observe_all(ObserverKind::kMse, {x.slice(0, 0, 500000), x.slice(0, 500000)});
  expect_sane(mse);
  const double err_mm = fake_quant_mse(x, mm);
  const double err_mse = fake_quant_mse(x, mse);
  EXPECT_LT(err_mse, 0.8 * err_mm) << "minmax " << err_mm << " mse " << err_mse;
  EXPECT_LT(range_of(mse).second, 25.0);
  // And it does at least as well as the percentile and entropy choices.
  EXPECT_LE(err_mse, 1.01 * fake_quant_mse(x, observe_all(ObserverKind::kPercentile, {x})));
  EXPECT_LE(err_mse, 1.01 * fake_quant_mse(x, observe_all(ObserverKind::kEntropy, {x})));
}

TEST(ObserverTest, MseOnHeavyTailsAndCleanData) {
  at::manual_seed(10);
  // Laplace-like heavy tails (exponential with random sign): clipping helps.
  at::Tensor u = at::rand({400000}).clamp_min(1e-12);
  at::Tensor sign = at::where(at::rand({400000}) < 0.5, -1.0, 1.0).to(at::kFloat);
  at::Tensor lap = -at::log(u) * sign;
  ActivationQParams mm = observe_all(ObserverKind::kMinMax, {lap});
  ActivationQParams mse = observe_all(ObserverKind::kMse, {lap});
  EXPECT_LT(fake_quant_mse(lap, mse), fake_quant_mse(lap, mm));
  // Uniform data: nothing to clip, so no worse than min/max (within the histogram's precision).
  at::Tensor uni = at::rand({100000}) * 4 - 1;
  EXPECT_LE(fake_quant_mse(uni, observe_all(ObserverKind::kMse, {uni})),
            1.02 * fake_quant_mse(uni, observe_all(ObserverKind::kMinMax, {uni})));
}

TEST(ObserverTest, HistogramObserversAreDeterministic) {
  at::manual_seed(12);
  std::vector<at::Tensor> batches = {at::randn({5000}), at::randn({5000}) * 3 + 1,
                                     at::relu(at::randn({5000})) * 10};
  for (ObserverKind kind :
       {ObserverKind::kPercentile, ObserverKind::kEntropy, ObserverKind::kMse}) {
    ActivationQParams a = observe_all(kind, batches);
    ActivationQParams b = observe_all(kind, batches);
    EXPECT_EQ(a.scale, b.scale) << to_string(kind);
    EXPECT_EQ(a.zero_point, b.zero_point) << to_string(kind);
    expect_sane(a);
  }
}

TEST(ObserverTest, ExtremeMagnitudesStaySane) {
  for (ObserverKind kind : kAllKinds) {
    SCOPED_TRACE(to_string(kind));
    // Tiny values first, then huge ones (the histogram grows by ~10^70).
    ActivationQParams q = observe_all(
        kind, {at::tensor({1e-38f, -2e-38f, 3e-39f}), at::tensor({1e30f, -3e32f, 0.f})});
    expect_sane(q);
    ActivationQParams t = observe_all(kind, {at::tensor({1e-44f, 2e-45f})});  // subnormals
    expect_sane(t);
  }
}

TEST(ObserverTest, AcceptsOtherShapesAndDtypes) {
  Observer obs(options_for(ObserverKind::kEntropy));
  obs.observe(at::randn({2, 3, 4, 5}).to(at::kDouble));
  obs.observe(at::randn({7, 1}).transpose(0, 1));
  expect_sane(obs.qparams());
}

TEST(ObserverTest, MoveKeepsState) {
  Observer a(options_for(ObserverKind::kMinMax));
  a.observe(at::tensor({-1.f, 3.f}));
  Observer b(std::move(a));
  EXPECT_DOUBLE_EQ(b.qparams().scale, 4.0 / 255.0);
  Observer c(options_for(ObserverKind::kMse));
  c = std::move(b);
  EXPECT_EQ(c.options().kind, ObserverKind::kMinMax);
  EXPECT_EQ(c.qparams().zero_point, 64);
}

// ---------------------------------------------------------------------------------------------
// Errors.

TEST(ObserverTest, NamesRoundTrip) {
  for (ObserverKind kind : kAllKinds) EXPECT_EQ(parse_observer(to_string(kind)), kind);
  EXPECT_EQ(parse_observer("moving-average-minmax"), ObserverKind::kMovingAverageMinMax);
}

TEST(ObserverTest, UnknownObserverName) {
  ASSERT_THROWS_WITH(parse_observer("kl"), ConfigError,
                     "unknown observer 'kl'; accepted: minmax, moving-average-minmax, "
                     "percentile, entropy, mse");
}

TEST(ObserverTest, ValidateNamesOptionAndValue) {
  ObserverOptions o;
  o.percentile = 0;
  ASSERT_THROWS_WITH(o.validate(), ConfigError, "percentile must be in (0, 100], got 0");
  o.percentile = 100.5;
  ASSERT_THROWS_WITH(o.validate(), ConfigError, "got 100.5");
  o.percentile = std::nan("");
  ASSERT_THROWS_WITH(o.validate(), ConfigError, "percentile");
  o.percentile = 100;
  EXPECT_NO_THROW(o.validate());

  o.averaging_constant = 0;
  ASSERT_THROWS_WITH(o.validate(), ConfigError, "averaging_constant must be in (0, 1], got 0");
  o.averaging_constant = 1.5;
  ASSERT_THROWS_WITH(o.validate(), ConfigError, "got 1.5");
  o.averaging_constant = 1;
  EXPECT_NO_THROW(o.validate());

  o.bins = 255;
  ASSERT_THROWS_WITH(o.validate(), ConfigError, "bins must be >= 256, got 255");
  o.bins = 256;
  EXPECT_NO_THROW(o.validate());

  ObserverOptions bad;
  bad.bins = 10;
  ASSERT_THROWS_WITH(Observer{bad}, ConfigError, "bins");
}

TEST(ObserverTest, NaNIsModelError) {
  for (ObserverKind kind : kAllKinds) {
    Observer obs(options_for(kind));
    ASSERT_THROWS_WITH(obs.observe(at::tensor({1.f, std::nanf(""), 2.f})), ModelError, "NaN");
  }
  Observer obs(options_for(ObserverKind::kMinMax));
  ASSERT_THROWS_WITH(obs.observe(at::tensor({1.f, std::numeric_limits<float>::infinity()})),
                     ModelError, "infinite");
}

TEST(ObserverTest, QParamsBeforeObserve) {
  for (ObserverKind kind : kAllKinds) {
    Observer obs(options_for(kind));
    ASSERT_THROWS_WITH(obs.qparams(), ModelError, "observer has seen no data");
  }
}

}  // namespace
}  // namespace mcompress::quant
