// The parts of core/distributed.h that need no second process: sharding of a global batch,
// the options from flags and environment, and a world of 1 that does nothing. The collectives
// across processes are tested through the CLI (tests/apps/distributed_test.cpp).

#include "mcompress/core/distributed.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <string>

namespace {

using mcompress::ConfigError;
using mcompress::DistributedOptions;
using mcompress::shard_of;

TEST(ShardTest, RanksCoverTheBatchInDisjointContiguousPartsOfNearlyEqualSize) {
  for (const int64_t global : {0, 1, 2, 7, 64, 127, 128}) {
    for (const int world : {1, 2, 3, 5}) {
      int64_t next = 0, smallest = global, largest = 0;
      for (int rank = 0; rank < world; ++rank) {
        const auto s = shard_of(global, rank, world);
        EXPECT_EQ(s.begin, next) << global << " rows, rank " << rank << " of " << world;
        next = s.end;
        smallest = std::min(smallest, s.size());
        largest = std::max(largest, s.size());
      }
      EXPECT_EQ(next, global);
      EXPECT_LE(largest - smallest, 1);
    }
  }
  // The first global % world ranks take the extra row.
  EXPECT_EQ(shard_of(7, 0, 2).size(), 4);
  EXPECT_EQ(shard_of(7, 1, 2).size(), 3);
}

TEST(DistributedOptionsTest, MasterAddressesParseAndBadOnesAreConfigErrors) {
  DistributedOptions o;
  o.set_master("node-3.cluster:29511");
  EXPECT_EQ(o.master_addr, "node-3.cluster");
  EXPECT_EQ(o.master_port, 29511);
  o.set_master("[::1]:1234");
  EXPECT_EQ(o.master_addr, "::1");
  EXPECT_EQ(o.master_port, 1234);
  for (const std::string bad : {"host", ":29500", "host:", "host:29x", "host:1234567"}) {
    EXPECT_THROW(o.set_master(bad), ConfigError) << bad;
  }
  o = DistributedOptions();
  o.world_size = 2;
  o.rank = 2;
  EXPECT_THROW(o.validate(), ConfigError);
  o.rank = 1;
  o.master_port = 70000;
  EXPECT_THROW(o.validate(), ConfigError);
  o.master_port = 29500;
  o.timeout = std::chrono::milliseconds(0);
  EXPECT_THROW(o.validate(), ConfigError);
}

TEST(DistributedOptionsTest, TheTorchrunEnvironmentFillsTheOptions) {
  ::setenv("WORLD_SIZE", "4", 1);
  ::setenv("RANK", "3", 1);
  ::setenv("MASTER_ADDR", "10.0.0.7", 1);
  ::setenv("MASTER_PORT", "23456", 1);
  const auto o = DistributedOptions::from_environment();
  EXPECT_EQ(o.world_size, 4);
  EXPECT_EQ(o.rank, 3);
  EXPECT_EQ(o.master_addr, "10.0.0.7");
  EXPECT_EQ(o.master_port, 23456);
  ::setenv("RANK", "-1", 1);
  EXPECT_THROW(DistributedOptions::from_environment(), ConfigError);
  for (const char* name : {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"}) ::unsetenv(name);
  EXPECT_EQ(DistributedOptions::from_environment().world_size, 1);
}

TEST(DistributedWorldOfOneTest, HasNoGroupAndLeavesTensorsAlone) {
  mcompress::Distributed one;
  EXPECT_FALSE(one.active());
  EXPECT_TRUE(one.is_root());
  auto t = torch::tensor({1.5f, -2.0f});
  auto mask = torch::tensor({true, false});
  one.all_reduce_sum({t}, "test");
  one.all_reduce_max({t}, "test");
  one.broadcast({mask}, "test");
  one.barrier("test");
  EXPECT_TRUE(t.equal(torch::tensor({1.5f, -2.0f})));
  EXPECT_TRUE(mask.equal(torch::tensor({true, false})));
  EXPECT_EQ(one.bytes_reduced(), 0);
  // The process-wide default is a world of 1 until the CLI joins a group.
  EXPECT_FALSE(mcompress::distributed().active());
}

}  // namespace
