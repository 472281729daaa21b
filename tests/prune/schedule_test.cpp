// Schedules: iterative round targets (constant keep ratio, or a fixed fraction per round) and
// Zhu & Gupta's gradual polynomial schedule at known steps.

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/prune/schedule.h"
#include "test_support.h"

namespace mcompress::prune {
namespace {

constexpr double kExact = 1e-12;

TEST(IterativeScheduleTest, ConstantKeepRatioReachesTheTargetInTheLastRound) {
  // Keeping (1 - 0.875)^(1/3) = 1/2 each round: 0.5, 0.75, 0.875.
  const auto s = iterative_sparsities(0.875, 3);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_NEAR(s[0], 0.5, kExact);
  EXPECT_NEAR(s[1], 0.75, kExact);
  EXPECT_EQ(s[2], 0.875);
  const auto one = iterative_sparsities(0.95, 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0], 0.95);
}

TEST(IterativeScheduleTest, FixedFractionPerRoundAsInTheLotteryTicketWork) {
  // 20% of the remaining weights per round: 0.2, 0.36, 0.488, ...; 14 rounds reach 95%.
  EXPECT_EQ(rounds_for_fraction(0.95, 0.2), 14);
  EXPECT_EQ(rounds_for_fraction(0.36, 0.2), 2);  // exactly two rounds, not three
  EXPECT_EQ(rounds_for_fraction(0.1, 0.2), 1);
  const auto s = iterative_sparsities(0.95, 14, 0.2);
  ASSERT_EQ(s.size(), 14u);
  EXPECT_NEAR(s[0], 0.2, kExact);
  EXPECT_NEAR(s[1], 0.36, kExact);
  EXPECT_NEAR(s[2], 0.488, kExact);
  EXPECT_NEAR(s[12], 1 - std::pow(0.8, 13), kExact);
  EXPECT_EQ(s[13], 0.95);
}

TEST(IterativeScheduleTest, TooManyRoundsForTheFractionIsAConfigError) {
  ASSERT_THROWS_WITH(iterative_sparsities(0.95, 15, 0.2), ConfigError, "use at most 14 rounds");
  ASSERT_THROWS_WITH(iterative_sparsities(0.95, 0), ConfigError, "rounds must be >= 1");
  ASSERT_THROWS_WITH(iterative_sparsities(1.0, 3), ConfigError, "target must be in [0, 1)");
  ASSERT_THROWS_WITH(iterative_sparsities(0.5, 3, 1.0), ConfigError, "round_fraction");
}

TEST(GradualScheduleTest, ZhuGuptaFormulaAtKnownSteps) {
  GradualSchedule g;
  g.initial_sparsity = 0;
  g.final_sparsity = 0.9;
  g.begin_step = 0;
  g.end_step = 1000;
  g.frequency = 100;
  // s_t = 0.9 + (0 - 0.9)(1 - t/1000)^3
  EXPECT_NEAR(g.sparsity_at(0), 0.0, kExact);
  EXPECT_NEAR(g.sparsity_at(100), 0.9 - 0.9 * 0.729, kExact);
  EXPECT_NEAR(g.sparsity_at(500), 0.7875, kExact);
  EXPECT_NEAR(g.sparsity_at(900), 0.9 - 0.9 * 0.001, kExact);
  EXPECT_EQ(g.sparsity_at(1000), 0.9);
  EXPECT_EQ(g.sparsity_at(5000), 0.9);  // held after the end
}

TEST(GradualScheduleTest, InitialSparsityAndLateBegin) {
  GradualSchedule g;
  g.initial_sparsity = 0.5;
  g.final_sparsity = 0.9;
  g.begin_step = 200;
  g.end_step = 600;
  g.frequency = 100;
  EXPECT_EQ(g.sparsity_at(0), 0.5);  // before t0: s_i
  EXPECT_EQ(g.sparsity_at(200), 0.5);
  EXPECT_NEAR(g.sparsity_at(400), 0.9 - 0.4 * 0.125, kExact);
  EXPECT_EQ(g.sparsity_at(600), 0.9);
}

TEST(GradualScheduleTest, MasksUpdateEveryFrequencyStepsAndAtTheEnd) {
  GradualSchedule g;
  g.begin_step = 10;
  g.end_step = 45;
  g.frequency = 10;
  std::vector<int64_t> steps;
  for (int64_t t = 0; t <= 60; ++t) {
    if (g.prunes_at(t)) steps.push_back(t);
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{10, 20, 30, 40, 45}));
  EXPECT_EQ(g.last_update(9), -1);
  EXPECT_EQ(g.last_update(10), 10);
  EXPECT_EQ(g.last_update(29), 20);
  EXPECT_EQ(g.last_update(44), 40);
  EXPECT_EQ(g.last_update(45), 45);
  EXPECT_EQ(g.last_update(100), 45);
}

}  // namespace
}  // namespace mcompress::prune
