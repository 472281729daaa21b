#pragma once
// How sparsity grows over a pruning run: iterative rounds, or Zhu & Gupta's gradual
// polynomial schedule applied during fine-tuning.

#include <cstdint>
#include <vector>

namespace mcompress::prune {

/// The sparsity reached after each of `rounds` iterative rounds, the last one being `target`.
/// round_fraction == 0: every round keeps the same fraction (1 − target)^(1/rounds) of the
///   weights it starts with, so round r reaches 1 − (1 − target)^(r/rounds).
/// round_fraction p > 0: every round removes p of the remaining weights (Frankle & Carbin's
///   lottery tickets use 0.2), round r reaches 1 − (1 − p)^r, and the last round goes to
///   `target` (ConfigError if an earlier round would already pass it: use fewer rounds).
std::vector<double> iterative_sparsities(double target, int64_t rounds, double round_fraction = 0);

/// The fewest rounds at `round_fraction` of the remaining weights per round that reach
/// `target`: ceil(log(1 − target) / log(1 − round_fraction)), at least 1.
int64_t rounds_for_fraction(double target, double round_fraction);

/// Zhu & Gupta (2017): s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³ for t0 ≤ t ≤ t0 + nΔt,
/// applied every Δt optimizer steps. Here t0 + nΔt is end_step: masks are updated at
/// t = t0, t0 + Δt, t0 + 2Δt, ... and at end_step itself, where s_t = s_f exactly.
/// Example: GradualSchedule g{0.0, 0.9, 0, 1000, 100};  g.sparsity_at(500) == 0.7875
struct GradualSchedule {
  double initial_sparsity = 0;  // s_i
  double final_sparsity = 0.5;  // s_f
  int64_t begin_step = 0;       // t0 (optimizer steps done; 0 = before the first step)
  int64_t end_step = 1000;      // t0 + nΔt
  int64_t frequency = 100;      // Δt

  /// s_t, with t clamped to [begin_step, end_step].
  double sparsity_at(int64_t step) const;
  /// Whether the masks are updated once `step` optimizer steps are done.
  bool prunes_at(int64_t step) const;
  /// The last step <= `step` at which prunes_at holds; -1 if none yet.
  int64_t last_update(int64_t step) const;
};

}  // namespace mcompress::prune
