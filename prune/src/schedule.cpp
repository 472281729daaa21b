#include "mcompress/prune/schedule.h"

#include <algorithm>
#include <cmath>

#include "mcompress/core/error.h"

namespace mcompress::prune {

std::vector<double> iterative_sparsities(double target, int64_t rounds, double round_fraction) {
  MCOMPRESS_CHECK(target >= 0 && target < 1, ConfigError, "target must be in [0, 1), got ", target);
  MCOMPRESS_CHECK(rounds >= 1, ConfigError, "rounds must be >= 1, got ", rounds);
  MCOMPRESS_CHECK(round_fraction >= 0 && round_fraction < 1, ConfigError,
                  "round_fraction must be in [0, 1) (0 = the same fraction every round), got ",
                  round_fraction);
  std::vector<double> out;
  for (int64_t r = 1; r < rounds; ++r) {
    const double s =
        round_fraction > 0
            ? 1 - std::pow(1 - round_fraction, static_cast<double>(r))
            : 1 - std::pow(1 - target, static_cast<double>(r) / static_cast<double>(rounds));
    MCOMPRESS_CHECK(s < target, ConfigError, "rounds: ", rounds, " rounds of round_fraction ",
                    round_fraction, " pass the target ", target, " already at round ", r,
                    "; use at most ", rounds_for_fraction(target, round_fraction), " rounds");
    out.push_back(s);
  }
  out.push_back(target);
  return out;
}

int64_t rounds_for_fraction(double target, double round_fraction) {
  MCOMPRESS_CHECK(round_fraction > 0 && round_fraction < 1, ConfigError,
                  "round_fraction must be in (0, 1), got ", round_fraction);
  MCOMPRESS_CHECK(target >= 0 && target < 1, ConfigError, "target must be in [0, 1), got ", target);
  if (target == 0) return 1;
  // The small slack keeps 1 − 0.8^r == 1 − (1 − target) from rounding up to one more round.
  const double r = std::log(1 - target) / std::log(1 - round_fraction);
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(r - 1e-9)));
}

double GradualSchedule::sparsity_at(int64_t step) const {
  const int64_t t = std::clamp(step, begin_step, end_step);
  const double progress = end_step > begin_step ? static_cast<double>(t - begin_step) /
                                                      static_cast<double>(end_step - begin_step)
                                                : 1.0;
  return final_sparsity + (initial_sparsity - final_sparsity) * std::pow(1 - progress, 3);
}

bool GradualSchedule::prunes_at(int64_t step) const {
  if (step < begin_step || step > end_step) return false;
  return step == end_step || (step - begin_step) % frequency == 0;
}

int64_t GradualSchedule::last_update(int64_t step) const {
  if (step < begin_step) return -1;
  if (step >= end_step) return end_step;
  return begin_step + (step - begin_step) / frequency * frequency;
}

}  // namespace mcompress::prune
