#include "mcompress/quant/observer.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "mcompress/core/distributed.h"
#include "mcompress/core/enum_names.h"
#include "mcompress/core/error.h"

namespace mcompress::quant {
namespace {

constexpr int64_t kQMin = 0;
constexpr int64_t kQMax = 255;
/// PyTorch's observers floor the scale at float32 epsilon (torch.finfo(torch.float32).eps).
constexpr double kMinScale = static_cast<double>(std::numeric_limits<float>::epsilon());

ActivationQParams qparams_from_range(double lo, double hi, ObserverKind kind) {
  ActivationQParams q = affine_qparams(lo, hi);
  q.observer = to_string(kind);
  return q;
}

int64_t floor_div(int64_t a, int64_t b) {  // b > 0
  int64_t q = a / b;
  if ((a % b != 0) && (a < 0)) --q;
  return q;
}

int64_t ceil_div(int64_t a, int64_t b) {  // a >= 0, b > 0
  return (a + b - 1) / b;
}

/// A histogram of the non-zero values seen so far on a grid that always has 0 as a bin edge:
/// bin b covers [(b − neg) · width, (b − neg + 1) · width), so bins [0, neg) hold negative
/// values and bins [neg, bins) positive ones. Exact zeros are counted apart (`zeros`): zero
/// is always exactly representable, so they never inform a clipping choice (this also stands
/// in for TensorRT/pytorch-quantization's `hist[0] = hist[1]` fix for the ReLU spike at 0).
///
/// When a batch falls outside the grid, the grid grows: the new width is an integer multiple
/// k of the old one and 0 stays an edge, so every old bin falls inside exactly one new bin
/// and re-binning just adds counts (the loss is only the coarser resolution, as in
/// PyTorch's HistogramObserver).
class Histogram {
 public:
  explicit Histogram(int64_t bins) : bins_(bins) {}

  /// Adds a batch (fp32, CPU, contiguous, finite) whose min/max are bmin/bmax.
  void add(const at::Tensor& x, double bmin, double bmax) {
    const int64_t zeros_in_batch = (x == 0).sum().item<int64_t>();
    zeros_ += static_cast<double>(zeros_in_batch);
    if (zeros_in_batch == x.numel()) return;  // nothing but zeros
    const double lo = std::min(bmin, 0.0);
    const double hi = std::max(bmax, 0.0);
    if (counts_.empty()) {
      init_grid(lo, hi);
    } else if (lo < grid_lo() || hi > grid_hi()) {
      grow_grid(lo, hi);
    }
    // Bucketise in double precision (the width may be tiny), count with bincount.
    at::Tensor idx = at::floor(x.reshape({-1}).to(at::kDouble) * (1.0 / width_))
                         .add_(static_cast<double>(neg_))
                         .clamp_(0.0, static_cast<double>(bins_ - 1))
                         .to(at::kLong);
    at::Tensor batch_counts = at::bincount(idx, {}, bins_).contiguous();
    const int64_t* c = batch_counts.data_ptr<int64_t>();
    for (int64_t b = 0; b < bins_; ++b)
      counts_[static_cast<size_t>(b)] += static_cast<double>(c[b]);
    // The zeros went to bin `neg` (floor(0) + neg, clamped); take them back out.
    counts_[static_cast<size_t>(std::min(neg_, bins_ - 1))] -= static_cast<double>(zeros_in_batch);
  }

  bool has_nonzero() const {
    return std::any_of(counts_.begin(), counts_.end(), [](double c) { return c > 0; });
  }
  /// The grid for [lo, hi] (lo <= 0 <= hi, lo < hi) before any data arrives.
  void preset(double lo, double hi) { init_grid(lo, hi); }
  /// Raw state, for adding the histograms of ranks that share one grid.
  std::vector<double>& counts() { return counts_; }
  void set_zeros(double zeros) { zeros_ = zeros; }
  int64_t bins() const { return bins_; }
  int64_t neg() const { return neg_; }
  double width() const { return width_; }
  double zeros() const { return zeros_; }
  double count(int64_t b) const { return counts_[static_cast<size_t>(b)]; }
  double lower(int64_t b) const { return static_cast<double>(b - neg_) * width_; }
  double grid_lo() const { return lower(0); }
  double grid_hi() const { return lower(bins_); }

 private:
  void init_grid(double lo, double hi) {
    // Smallest width with 0 on an edge that covers [lo, hi]: (hi − lo) / bins works when lo
    // or hi is 0 (or lands on an edge), (hi − lo) / (bins − 1) always does.
    for (int64_t slack = 0;; ++slack) {
      const double w = (hi - lo) / static_cast<double>(std::max<int64_t>(bins_ - slack, 1));
      const int64_t neg = std::min<int64_t>(static_cast<int64_t>(std::ceil(-lo / w)), bins_);
      if (static_cast<double>(neg) * w >= -lo && static_cast<double>(bins_ - neg) * w >= hi) {
        width_ = w;
        neg_ = neg;
        break;
      }
      if (slack > bins_ / 2) {  // cannot happen for finite inputs; keep the loop finite
        width_ = (hi - lo) / static_cast<double>(bins_ / 2);
        neg_ = std::min<int64_t>(static_cast<int64_t>(std::ceil(-lo / width_)), bins_);
        break;
      }
    }
    counts_.assign(static_cast<size_t>(bins_), 0.0);
  }

  void grow_grid(double lo, double hi) {
    // Extent needed on each side, in old bins.
    const double need_neg = std::max(static_cast<double>(neg_), std::ceil(-lo / width_));
    const double need_pos = std::max(static_cast<double>(bins_ - neg_), std::ceil(hi / width_));
    if (need_neg + need_pos > 0x1p50) {
      // The old range is negligible next to the new one (> 2^50 old bins): all of it lands in
      // the two bins next to 0.
      const double new_lo = std::min(lo, grid_lo());
      const double new_hi = std::max(hi, grid_hi());
      std::vector<double> old = std::move(counts_);
      const int64_t old_neg = neg_;
      counts_.clear();
      init_grid(new_lo, new_hi);
      for (int64_t b = 0; b < static_cast<int64_t>(old.size()); ++b) {
        const int64_t nb = b < old_neg ? std::max<int64_t>(neg_ - 1, 0) : std::min(neg_, bins_ - 1);
        counts_[static_cast<size_t>(nb)] += old[static_cast<size_t>(b)];
      }
      return;
    }
    const auto nneg = static_cast<int64_t>(need_neg);
    const auto npos = static_cast<int64_t>(need_pos);
    int64_t k = std::max<int64_t>(1, ceil_div(nneg + npos, bins_));
    while (ceil_div(nneg, k) + ceil_div(npos, k) > bins_) ++k;
    const int64_t new_neg = ceil_div(nneg, k);
    std::vector<double> grown(static_cast<size_t>(bins_), 0.0);
    for (int64_t b = 0; b < bins_; ++b) {
      // Old bin b starts (b − neg) old widths from 0; new bins are k old widths wide.
      const int64_t nb = floor_div(b - neg_, k) + new_neg;
      grown[static_cast<size_t>(nb)] += counts_[static_cast<size_t>(b)];
    }
    counts_ = std::move(grown);
    neg_ = new_neg;
    width_ *= static_cast<double>(k);
  }

  int64_t bins_;
  int64_t neg_ = 0;
  double width_ = 0.0;
  double zeros_ = 0.0;
  std::vector<double> counts_;  // empty until the first non-zero value
};

/// The q-quantile (q in [0, 1]) of the observed values: exact zeros as a point mass at 0,
/// values spread uniformly within each bin.
double histogram_quantile(const Histogram& h, double q) {
  double total = h.zeros();
  if (h.has_nonzero()) {
    for (int64_t b = 0; b < h.bins(); ++b) total += h.count(b);
  }
  const double target = q * total;
  double cum = 0.0;
  auto in_bin = [&](int64_t b, double* value) {
    const double c = h.count(b);
    if (c > 0 && cum + c >= target) {
      const double frac = std::clamp((target - cum) / c, 0.0, 1.0);
      *value = h.lower(b) + frac * h.width();
      return true;
    }
    cum += c;
    return false;
  };
  double value = 0.0;
  if (h.has_nonzero()) {
    for (int64_t b = 0; b < h.neg(); ++b) {
      if (in_bin(b, &value)) return value;
    }
  }
  if (h.zeros() > 0 && cum + h.zeros() >= target) return 0.0;
  cum += h.zeros();
  if (h.has_nonzero()) {
    for (int64_t b = h.neg(); b < h.bins(); ++b) {
      if (in_bin(b, &value)) return value;
    }
    return h.grid_hi();
  }
  return 0.0;
}

/// TensorRT's entropy calibration on a one-sided histogram `a` of |x| (bin j covers
/// [j·w, (j+1)·w)):
/// for each candidate threshold of i bins, i = 128 … n,
///   P = a[0:i] with the outliers sum(a[i:]) added to P[i−1], normalised;
///   Q = a[0:i] merged into `levels` quantization levels (bin j → level ⌊j·levels/i⌋), each
///       level's mass spread evenly over its non-empty bins, normalised
///       (TensorRT builds Q from the bins without the outliers, as here);
/// and the threshold minimising KL(P‖Q) wins (ties: the larger threshold). Returns i.
int64_t entropy_threshold_bins(const std::vector<double>& a, int64_t levels) {
  const auto n = static_cast<int64_t>(a.size());
  constexpr int64_t kStartBin = 128;
  const int64_t start = std::min(kStartBin, n);
  double total = 0.0;
  for (double v : a) total += v;
  std::vector<double> suffix(static_cast<size_t>(n + 1), 0.0);
  for (int64_t j = n - 1; j >= 0; --j)
    suffix[static_cast<size_t>(j)] = suffix[static_cast<size_t>(j + 1)] + a[static_cast<size_t>(j)];

  std::vector<double> level_sum(static_cast<size_t>(levels));
  std::vector<int64_t> level_nonempty(static_cast<size_t>(levels));
  double best_kl = std::numeric_limits<double>::infinity();
  int64_t best_i = n;
  for (int64_t i = start; i <= n; ++i) {
    const double outliers = suffix[static_cast<size_t>(i)];
    const double q_total = total - outliers;
    if (q_total <= 0) continue;
    std::fill(level_sum.begin(), level_sum.end(), 0.0);
    std::fill(level_nonempty.begin(), level_nonempty.end(), 0);
    for (int64_t j = 0; j < i; ++j) {
      const double v = a[static_cast<size_t>(j)];
      if (v > 0) {
        const auto level = static_cast<size_t>(j * levels / i);
        level_sum[level] += v;
        ++level_nonempty[level];
      }
    }
    double kl = 0.0;
    for (int64_t j = 0; j < i; ++j) {
      double p = a[static_cast<size_t>(j)];
      if (j == i - 1) p += outliers;
      if (p <= 0) continue;
      p /= total;
      const double v = a[static_cast<size_t>(j)];
      if (v <= 0) {  // P has mass where Q has none (outliers piled into an empty bin)
        kl = std::numeric_limits<double>::infinity();
        break;
      }
      const auto level = static_cast<size_t>(j * levels / i);
      const double q = level_sum[level] / static_cast<double>(level_nonempty[level]) / q_total;
      kl += p * std::log(p / q);
    }
    if (kl <= best_kl) {
      best_kl = kl;
      best_i = i;
    }
  }
  return best_i;
}

/// ∫ from 0 to u·s of (distance from t to the nearest multiple of s)² dt, divided by s³.
double grid_error_primitive(double u) {
  const double whole = std::floor(u);
  const double f = u - whole;
  const double part =
      f <= 0.5 ? f * f * f / 3.0 : 1.0 / 12.0 - (1.0 - f) * (1.0 - f) * (1.0 - f) / 3.0;
  return whole / 12.0 + part;
}

struct Bin {
  double lo, hi, count;
};

/// Expected total squared error of fake-quantizing the histogram's non-zero values with the
/// qparams that `qparams_from_range(lo, hi)` gives, values uniform within each bin: values
/// inside the representable range [−zp·s, (255 − zp)·s] cost their squared distance to the
/// nearest grid point k·s, values outside cost their squared distance to the nearest end.
double expected_sq_error(const std::vector<Bin>& bins, double lo, double hi) {
  const ActivationQParams q = qparams_from_range(lo, hi, ObserverKind::kMse);
  const double s = q.scale;
  const double a = -static_cast<double>(q.zero_point) * s;
  const double b = static_cast<double>(kQMax - q.zero_point) * s;
  double err = 0.0;
  for (const Bin& bin : bins) {
    double integral = 0.0;
    if (bin.lo < a) {  // clipped below
      const double r = std::min(bin.hi, a);
      integral += ((a - bin.lo) * (a - bin.lo) * (a - bin.lo) - (a - r) * (a - r) * (a - r)) / 3.0;
    }
    if (bin.hi > b) {  // clipped above
      const double l = std::max(bin.lo, b);
      integral += ((bin.hi - b) * (bin.hi - b) * (bin.hi - b) - (l - b) * (l - b) * (l - b)) / 3.0;
    }
    const double l = std::max(bin.lo, a);
    const double r = std::min(bin.hi, b);
    if (r > l) integral += s * s * s * (grid_error_primitive(r / s) - grid_error_primitive(l / s));
    err += bin.count / (bin.hi - bin.lo) * integral;
  }
  return err;
}

/// Minimises f(x) over x in (0, x_max]: a geometric sweep x_max · 0.98^k down to
/// x_max · 1e-5 (~570 candidates, 2% apart, x_max itself first), then 64 linear steps
/// between the neighbours of the best. Ties keep the larger x.
template <typename F>
double minimise_extent(double x_max, F f) {
  constexpr double kRatio = 0.98;
  constexpr double kFloor = 1e-5;
  std::vector<double> xs;
  for (double x = x_max; x >= x_max * kFloor; x *= kRatio) xs.push_back(x);
  size_t best = 0;
  double best_err = std::numeric_limits<double>::infinity();
  for (size_t k = 0; k < xs.size(); ++k) {
    const double e = f(xs[k]);
    if (e < best_err) {
      best_err = e;
      best = k;
    }
  }
  const double upper = best == 0 ? xs[0] : xs[best - 1];
  const double lower = best + 1 < xs.size() ? xs[best + 1] : xs[best] * kRatio;
  double best_x = xs[best];
  constexpr int kSteps = 64;
  for (int t = 0; t <= kSteps; ++t) {
    const double x = upper - (upper - lower) * t / kSteps;
    const double e = f(x);
    if (e < best_err) {
      best_err = e;
      best_x = x;
    }
  }
  return best_x;
}

}  // namespace

ActivationQParams affine_qparams(double lo, double hi) {
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  double scale = (hi - lo) / static_cast<double>(kQMax - kQMin);
  if (!std::isfinite(scale) || scale < kMinScale) scale = kMinScale;
  const double zp = std::nearbyint(static_cast<double>(kQMin) - lo / scale);
  ActivationQParams q;
  q.scale = scale;
  q.zero_point =
      static_cast<int64_t>(std::clamp(zp, static_cast<double>(kQMin), static_cast<double>(kQMax)));
  return q;
}

constexpr std::array<EnumName<ObserverKind>, 5> kObserverNames = {
    {{ObserverKind::kMinMax, "minmax"},
     {ObserverKind::kMovingAverageMinMax, "moving-average-minmax"},
     {ObserverKind::kPercentile, "percentile"},
     {ObserverKind::kEntropy, "entropy"},
     {ObserverKind::kMse, "mse"}}};

std::string to_string(ObserverKind kind) { return enum_to_string(kObserverNames, kind); }
ObserverKind parse_observer(const std::string& name) {
  return parse_enum<ConfigError>(kObserverNames, name, "observer");
}

void ObserverOptions::validate() const {
  MCOMPRESS_CHECK(percentile > 0 && percentile <= 100, ConfigError,
                  "observer option percentile must be in (0, 100], got ", percentile);
  MCOMPRESS_CHECK(averaging_constant > 0 && averaging_constant <= 1, ConfigError,
                  "observer option averaging_constant must be in (0, 1], got ", averaging_constant);
  MCOMPRESS_CHECK(bins >= 256, ConfigError, "observer option bins must be >= 256, got ", bins);
}

struct Observer::Impl {
  explicit Impl(const ObserverOptions& o) : options(o), hist(o.bins) {}

  ObserverOptions options;
  bool seen = false;
  double min = 0.0;  // exact running min/max of everything observed
  double max = 0.0;
  double avg_min = 0.0;  // moving-average-minmax state
  double avg_max = 0.0;
  Histogram hist;

  bool uses_histogram() const {
    return options.kind == ObserverKind::kPercentile || options.kind == ObserverKind::kEntropy ||
           options.kind == ObserverKind::kMse;
  }

  /// percentile: hi = the p-th percentile of the observed values, lo = the (100 − p)-th
  /// (for ReLU outputs that is 0), both read off the histogram with linear interpolation
  /// inside a bin and never beyond the observed min/max. p = 100 is plain min/max.
  std::pair<double, double> percentile_range() const {
    const double p = options.percentile / 100.0;
    if (p >= 1.0) return {min, max};
    const double hi = std::clamp(histogram_quantile(hist, p), min, max);
    const double lo = std::clamp(histogram_quantile(hist, 1.0 - p), min, max);
    return {std::min(lo, hi), std::max(lo, hi)};
  }

  /// entropy: TensorRT's KL-divergence threshold search (entropy_threshold_bins), run on each
  /// side of 0 separately ("search over both ends"), exact zeros left out: the positive side
  /// on the histogram of x > 0, the negative side on that of −x for x < 0. Each side is
  /// modelled with its share of the 256 uint8 codes as the min/max range would split them:
  /// 256 · max / (max − min) levels for the positive side, the rest for the negative one
  /// (at least 1). So one-sided data (all ≥ 0 as after ReLU, or all ≤ 0) gets all 256 levels
  /// and symmetric data 128 per side, as TensorRT's symmetric int8 search; asymmetric data
  /// (SiLU/GELU outputs) is not distorted by folding its small negative lobe into |x|.
  /// A side with fewer than 128 bins keeps its whole extent. Range [−T₋, T₊], never beyond
  /// the observed min/max.
  std::pair<double, double> entropy_range() const {
    if (!hist.has_nonzero()) return {0.0, 0.0};
    const int64_t neg = hist.neg();
    const int64_t pos = hist.bins() - neg;
    const double extent = std::max(max, 0.0) - std::min(min, 0.0);
    auto levels_for = [&](double side_extent) {
      const auto l = static_cast<int64_t>(std::nearbyint(256.0 * side_extent / extent));
      return std::clamp<int64_t>(l, 1, 256);
    };
    double hi = 0.0;
    double lo = 0.0;
    if (max > 0) {
      std::vector<double> a(static_cast<size_t>(pos));
      for (int64_t j = 0; j < pos; ++j) a[static_cast<size_t>(j)] = hist.count(neg + j);
      const int64_t i = entropy_threshold_bins(a, levels_for(max));
      hi = std::min(static_cast<double>(i) * hist.width(), max);
    }
    if (min < 0) {
      std::vector<double> a(static_cast<size_t>(neg));
      for (int64_t j = 0; j < neg; ++j) a[static_cast<size_t>(j)] = hist.count(neg - 1 - j);
      const int64_t i = entropy_threshold_bins(a, levels_for(-min));
      lo = std::max(-static_cast<double>(i) * hist.width(), min);
    }
    return {lo, hi};
  }

  /// mse: the range [lo, hi] minimising the expected squared error (quantization noise plus
  /// clipping) of the observed values, computed exactly from the histogram assuming values
  /// are uniform within a bin (expected_sq_error). Each end is searched with
  /// minimise_extent (geometric sweep from the observed extreme down to 1e-5 of it, then a
  /// linear refinement); signed data alternates hi-given-lo and lo-given-hi (coordinate
  /// descent, up to 4 rounds). Exact zeros cost nothing and are left out.
  std::pair<double, double> mse_range() const {
    if (!hist.has_nonzero()) return {0.0, 0.0};
    std::vector<Bin> bins;
    for (int64_t b = 0; b < hist.bins(); ++b) {
      if (hist.count(b) > 0) bins.push_back({hist.lower(b), hist.lower(b + 1), hist.count(b)});
    }
    double lo = std::min(min, 0.0);
    double hi = std::max(max, 0.0);
    for (int round = 0; round < 4; ++round) {
      const double old_lo = lo;
      const double old_hi = hi;
      if (max > 0) {
        hi = minimise_extent(max, [&](double x) { return expected_sq_error(bins, lo, x); });
      }
      if (min < 0) {
        lo = -minimise_extent(-min, [&](double x) { return expected_sq_error(bins, -x, hi); });
      }
      if (!(min < 0 && max > 0) || (lo == old_lo && hi == old_hi)) break;
    }
    return {lo, hi};
  }
};

Observer::Observer(const ObserverOptions& options) {
  options.validate();
  impl_ = std::make_unique<Impl>(options);
}

Observer::Observer(const ObserverOptions& options, double lo, double hi) : Observer(options) {
  lo = std::min(lo, 0.0);
  hi = std::max(hi, 0.0);
  if (impl_->uses_histogram() && std::isfinite(lo) && std::isfinite(hi) && hi > lo) {
    impl_->hist.preset(lo, hi);
  }
}

void Observer::reduce_across_ranks() {
  Distributed& dist = distributed();
  if (!dist.active()) return;
  Impl& s = *impl_;
  const double inf = std::numeric_limits<double>::infinity();
  auto lo = at::tensor({s.seen ? s.min : inf}, at::kDouble);
  auto hi = at::tensor({s.seen ? s.max : -inf}, at::kDouble);
  dist.all_reduce_min({lo}, "calibration minima");
  dist.all_reduce_max({hi}, "calibration maxima");
  auto sums = at::tensor({s.seen ? 1.0 : 0.0, s.seen ? s.avg_min : 0.0, s.seen ? s.avg_max : 0.0},
                         at::kDouble);
  dist.all_reduce_sum({sums}, "calibration averages");
  const double ranks_seen = sums[0].item<double>();
  if (ranks_seen == 0) return;  // no rank saw this key
  if (s.uses_histogram()) {
    // One grid on every rank (the range constructor): the merged histogram is the sum.
    auto& counts = s.hist.counts();
    counts.resize(static_cast<size_t>(s.hist.bins()), 0.0);
    auto merged = at::tensor(at::ArrayRef<double>(counts), at::kDouble);
    auto zeros = at::tensor({s.hist.zeros()}, at::kDouble);
    dist.all_reduce_sum({merged, zeros}, "calibration histograms");
    std::copy(merged.data_ptr<double>(), merged.data_ptr<double>() + merged.numel(),
              counts.begin());
    s.hist.set_zeros(zeros.item<double>());
  }
  s.seen = true;
  s.min = lo.item<double>();
  s.max = hi.item<double>();
  s.avg_min = sums[1].item<double>() / ranks_seen;
  s.avg_max = sums[2].item<double>() / ranks_seen;
}

Observer::~Observer() = default;
Observer::Observer(Observer&&) noexcept = default;
Observer& Observer::operator=(Observer&&) noexcept = default;

const ObserverOptions& Observer::options() const { return impl_->options; }

std::pair<double, double> Observer::observed_range() const {
  return impl_->seen ? std::make_pair(impl_->min, impl_->max) : std::make_pair(0.0, 0.0);
}

void Observer::observe(const at::Tensor& x) {
  MCOMPRESS_CHECK(x.defined(), ModelError, "observer: the activation tensor is undefined");
  if (x.numel() == 0) return;
  at::Tensor v = x.detach().to(at::kCPU, at::kFloat).contiguous();
  if (!at::isfinite(v).all().item<bool>()) {
    const int64_t nans = at::isnan(v).sum().item<int64_t>();
    MCOMPRESS_CHECK(nans == 0, ModelError, "observer (", to_string(impl_->options.kind),
                    "): activation contains ", nans, " NaN value", nans == 1 ? "" : "s", " of ",
                    v.numel());
    const int64_t infs = at::isinf(v).sum().item<int64_t>();
    throw ModelError(detail::concat("observer (", to_string(impl_->options.kind),
                                    "): activation contains ", infs, " infinite value",
                                    infs == 1 ? "" : "s", " of ", v.numel()));
  }
  auto [tmin, tmax] = at::aminmax(v);
  const double bmin = tmin.item<double>();
  const double bmax = tmax.item<double>();

  Impl& s = *impl_;
  if (!s.seen) {
    s.min = bmin;
    s.max = bmax;
    s.avg_min = bmin;
    s.avg_max = bmax;
  } else {
    s.min = std::min(s.min, bmin);
    s.max = std::max(s.max, bmax);
    // torch.ao.quantization.MovingAverageMinMaxObserver: first batch sets min/max, then
    // min += c · (batch_min − min), max likewise.
    const double c = s.options.averaging_constant;
    s.avg_min += c * (bmin - s.avg_min);
    s.avg_max += c * (bmax - s.avg_max);
  }
  s.seen = true;
  if (s.uses_histogram()) s.hist.add(v, bmin, bmax);
}

ActivationQParams Observer::qparams() const {
  const Impl& s = *impl_;
  MCOMPRESS_CHECK(s.seen, ModelError, "observer has seen no data");
  std::pair<double, double> range;
  switch (s.options.kind) {
    case ObserverKind::kMinMax:
      range = {s.min, s.max};
      break;
    case ObserverKind::kMovingAverageMinMax:
      range = {s.avg_min, s.avg_max};
      break;
    case ObserverKind::kPercentile:
      range = s.percentile_range();
      break;
    case ObserverKind::kEntropy:
      range = s.entropy_range();
      break;
    case ObserverKind::kMse:
      range = s.mse_range();
      break;
  }
  return qparams_from_range(range.first, range.second, s.options.kind);
}

}  // namespace mcompress::quant
