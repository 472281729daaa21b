// Issue 9, data-parallel training through the real CLI on loopback: two ranks end with the
// weights one process reaches with the same global batch and seed, only rank 0 writes, and a
// rank that dies, hangs or never comes makes the others fail with one error line within the
// timeout instead of hanging.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "cli_runner.h"
#include "mcompress/core/model_file.h"
#include "test_support.h"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono;
using mcompress::testing::read_bytes;
using mcompress::testing::spawn_cli;

// Largest |a - b| over all tensors of two models: 2 ranks and 1 process add the same
// gradients in a different order, so float rounding is the only expected difference.
constexpr double kMaxWeightDifference = 1e-5;
// Relative difference of an entropy-calibrated scale between one process (grid grown batch
// by batch) and two ranks (one grid over the global range).
constexpr double kEntropyScaleTolerance = 0.05;

// A port nobody listens on now (the kernel's choice for a socket bound to port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The exit code of `pid`, waiting at most `limit`; -1 for a signal, -2 (after killing it)
// when it is still running at the limit: the hang the feature must never have.
int wait_exit(pid_t pid, milliseconds limit) {
  const auto deadline = steady_clock::now() + limit;
  int status = 0;
  while (true) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (done < 0 && errno != EINTR) return -1;
    if (steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -2;
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

// Waits until `log` contains `text` (true) or `limit` passes (false).
bool wait_for_text(const std::string& log, const std::string& text, milliseconds limit) {
  const auto deadline = steady_clock::now() + limit;
  while (steady_clock::now() < deadline) {
    if (fs::exists(log) && read_bytes(log).find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(milliseconds(20));
  }
  return false;
}

class DistributedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_ = dir_.file("data");
    fs::create_directories(data_);
    mcompress::testing::write_idx_folder(data_, mcompress::testing::block_images(600, 1),
                                         mcompress::testing::block_images(100, 2));
  }

  // A train command line; one intra-op thread per rank, so two ranks fit two cores.
  std::vector<std::string> train_args(const std::string& out, int epochs) const {
    return {"train",
            "--arch",
            "mlp-small",
            "--data",
            data_,
            "--epochs",
            std::to_string(epochs),
            "--batch-size",
            "64",
            "--lr",
            "0.01",
            "--seed",
            "5",
            "--threads",
            "1",
            "--quiet",
            "--out",
            out};
  }
  // train_args without --quiet: rank 0 then prints its "training ..." header once the group
  // stands (--quiet prints nothing before the result, so that a failed run prints one line).
  std::vector<std::string> announced_train_args(const std::string& out, int epochs) const {
    std::vector<std::string> args = train_args(out, epochs);
    args.erase(std::remove(args.begin(), args.end(), "--quiet"), args.end());
    return args;
  }
  static std::vector<std::string> rank_args(std::vector<std::string> args, int rank, int port,
                                            int timeout_s) {
    for (const std::string& a :
         {std::string("--world-size"), std::string("2"), std::string("--rank"),
          std::to_string(rank), std::string("--master"), "127.0.0.1:" + std::to_string(port),
          std::string("--dist-timeout"), std::to_string(timeout_s)}) {
      args.push_back(a);
    }
    return args;
  }

  mcompress::testing::TempDir dir_;
  std::string data_;
};

std::string joined(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += " " + a;
  return s;
}

TEST_F(DistributedTest, TwoRanksReachTheWeightsOfOneProcessWithTheSameGlobalBatch) {
  // 540 training rows in global batches of 64: 9 steps an epoch, the last one 28 rows (14 a
  // rank); 2 epochs = 18 optimizer steps (Adam), with validation and restore-best on.
  const std::string one = dir_.file("one.h5"), two = dir_.file("two.h5");
  const auto single = mcompress::testing::run_cli(joined(train_args(one, 2)));
  ASSERT_EQ(single.code, 0) << single.out;

  const int port = free_port();
  const std::string log0 = dir_.file("rank0.log"), log1 = dir_.file("rank1.log");
  const pid_t r0 = spawn_cli(rank_args(train_args(two, 2), 0, port, 20), log0);
  const pid_t r1 = spawn_cli(rank_args(train_args(two, 2), 1, port, 20), log1);
  ASSERT_GT(r0, 0);
  ASSERT_GT(r1, 0);
  const int code0 = wait_exit(r0, seconds(60)), code1 = wait_exit(r1, seconds(60));
  ASSERT_EQ(code0, 0) << read_bytes(log0);
  ASSERT_EQ(code1, 0) << read_bytes(log1);
  EXPECT_NE(read_bytes(log0).find("bytes all-reduced per step"), std::string::npos)
      << read_bytes(log0);
  // Rank 1 reports nothing and writes nothing: rank 0's file is the only new one.
  EXPECT_EQ(read_bytes(log1).find("saved"), std::string::npos) << read_bytes(log1);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir_.path())) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 4);  // one.h5, two.h5, two logs

  const auto a = mcompress::load_model(one), b = mcompress::load_model(two);
  const auto init = mcompress::Model::initialize(a.spec(), 5);
  double worst = 0, moved = 0;
  std::string worst_name;
  for (const auto& [name, tensor] : a.tensors()) {
    const double d = (tensor - b.tensor(name)).abs().max().template item<double>();
    if (d > worst) worst = d, worst_name = name;
    moved = std::max(moved, (tensor - init.tensor(name)).abs().max().template item<double>());
  }
  EXPECT_LE(worst, kMaxWeightDifference) << "worst tensor " << worst_name;
  // Not trivially equal: training moved the weights well away from their initial values.
  EXPECT_GT(moved, 100 * kMaxWeightDifference);
}

// A recipe through scripts/launch-local.sh on 2 ranks (start-model training, then iterative
// pruning: masks decided on rank 0, fine-tuning shared) ends where one process ends; rank 0
// alone measures and writes. The runner's latency measurements make this the slow one (~10 s).
TEST_F(DistributedTest, ARecipeOnTwoRanksEndsWhereOneProcessEnds) {
  const fs::path launcher =
      fs::path(MCOMPRESS_TEST_DATA_DIR).parent_path().parent_path() / "scripts/launch-local.sh";
  auto recipe = [&](const std::string& out) {
    const std::string path = dir_.file(out + ".yaml");
    mcompress::testing::write_bytes(
        path,
        "model: {arch: mlp-small, train: {epochs: 1, lr: 0.01}}\n"
        "data: {path: " +
            data_ +
            ", calib_batches: 3}\n"
            "seed: 4\n"
            "stages:\n"
            "  - prune: {target: 0.6, schedule: iterative, rounds: 2, finetune_epochs: 1}\n"
            "output: " +
            dir_.file(out + ".h5") + "\n");
    return path;
  };
  const auto one = mcompress::testing::run_cli("compress " + recipe("one") + " --threads 1");
  ASSERT_EQ(one.code, 0) << one.out;
  const std::string command = launcher.string() + " 2 --threads 1 -- " + MCOMPRESS_CLI +
                              " compress " + recipe("two") + " 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string out;
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
  ASSERT_EQ(WEXITSTATUS(::pclose(pipe)), 0) << out;

  // The pruned, fine-tuned model before quantization: same masks, same weights.
  const auto a = mcompress::load_model(dir_.file("one.h5.ckpt/01-prune.h5"));
  const auto b = mcompress::load_model(dir_.file("two.h5.ckpt/01-prune.h5"));
  ASSERT_EQ(a.masks.size(), b.masks.size());
  for (const auto& [name, mask] : a.masks) EXPECT_TRUE(mask.equal(b.masks.at(name))) << name;
  for (const auto& [name, tensor] : a.tensors()) {
    EXPECT_LE((tensor - b.tensor(name)).abs().max().template item<double>(), kMaxWeightDifference)
        << name;
  }
  EXPECT_TRUE(fs::exists(dir_.file("two.report.md")));
}

// int8-static calibration on 2 ranks: each rank observes every other calibration batch and
// the observers are reduced. minmax gives exactly one process's qparams; entropy bins on one
// grid fixed by the global range instead of a grid grown batch by batch, so its ranges may
// move by a few bins.
TEST_F(DistributedTest, CalibrationOnTwoRanksReducesTheObservers) {
  const std::string start = dir_.file("start.h5");
  ASSERT_EQ(mcompress::testing::run_cli(joined(train_args(start, 1))).code, 0);
  for (const std::string observer : {"minmax", "entropy"}) {
    SCOPED_TRACE(observer);
    auto args = [&](const std::string& out) {
      return std::vector<std::string>{
          "quantize", start,    "--mode", "int8-static", "--observer", observer, "--calib-batches",
          "3",        "--data", data_,    "--threads",   "1",          "--out",  out};
    };
    const std::string one = dir_.file(observer + "1.h5"), two = dir_.file(observer + "2.h5");
    const auto r = mcompress::testing::run_cli(joined(args(one)));
    ASSERT_EQ(r.code, 0) << r.out;
    const int port = free_port();
    const std::string log0 = dir_.file("c0.log"), log1 = dir_.file("c1.log");
    const pid_t r0 = spawn_cli(rank_args(args(two), 0, port, 20), log0);
    const pid_t r1 = spawn_cli(rank_args(args(two), 1, port, 20), log1);
    ASSERT_EQ(wait_exit(r0, seconds(60)), 0) << read_bytes(log0);
    ASSERT_EQ(wait_exit(r1, seconds(60)), 0) << read_bytes(log1);
    const auto a = mcompress::load_model(one).quant.activations;
    const auto b = mcompress::load_model(two).quant.activations;
    ASSERT_EQ(a.size(), b.size());
    ASSERT_FALSE(a.empty());
    for (const auto& [key, q] : a) {
      const auto& got = b.at(key);
      if (observer == "minmax") {
        EXPECT_EQ(got.scale, q.scale) << key;
        EXPECT_EQ(got.zero_point, q.zero_point) << key;
      } else {
        EXPECT_NEAR(got.scale, q.scale, kEntropyScaleTolerance * q.scale) << key;
      }
    }
  }
}

// Kills one rank (SIGKILL) mid-epoch, first rank 1 and then rank 0 (which also hosts the
// store); the other must exit 1 with one "mcompress: error: rank ..." line well within its
// 5 s timeout (a closed connection is noticed at once), writing nothing.
TEST_F(DistributedTest, AKilledRankMakesTheOtherFailWithinTheTimeout) {
  for (const int victim : {1, 0}) {
    SCOPED_TRACE("killed rank " + std::to_string(victim));
    const std::string out = dir_.file("killed" + std::to_string(victim) + ".h5");
    const int port = free_port();
    const std::string log0 = dir_.file("k0.log"), log1 = dir_.file("k1.log");
    const pid_t pids[2] = {spawn_cli(rank_args(announced_train_args(out, 200), 0, port, 5), log0),
                           spawn_cli(rank_args(announced_train_args(out, 200), 1, port, 5), log1)};
    ASSERT_GT(pids[0], 0);
    ASSERT_GT(pids[1], 0);
    // Rank 0 prints "training ..." once the group stands; then let a few steps run.
    ASSERT_TRUE(wait_for_text(log0, "training mlp-small", seconds(30))) << read_bytes(log0);
    std::this_thread::sleep_for(milliseconds(500));
    ::kill(pids[victim], SIGKILL);
    const int survivor = 1 - victim;
    const auto t0 = steady_clock::now();
    const int code = wait_exit(pids[survivor], seconds(15));
    const double took = duration<double>(steady_clock::now() - t0).count();
    wait_exit(pids[victim], seconds(5));
    const std::string log = read_bytes(survivor == 0 ? log0 : log1);
    EXPECT_EQ(code, 1) << log;
    EXPECT_LT(took, 10.0) << log;
    EXPECT_NE(log.find("mcompress: error: rank " + std::to_string(survivor) + " of 2: "),
              std::string::npos)
        << log;
    EXPECT_FALSE(fs::exists(out));
  }
}

// Stops rank 1 (SIGSTOP: alive, its connections open, silent): rank 0 must give up at its 2 s
// timeout rather than wait for ever.
TEST_F(DistributedTest, AHungRankMakesTheOtherFailAtTheTimeout) {
  const std::string out = dir_.file("hung.h5");
  const int port = free_port();
  const std::string log0 = dir_.file("h0.log"), log1 = dir_.file("h1.log");
  const pid_t r0 = spawn_cli(rank_args(announced_train_args(out, 200), 0, port, 2), log0);
  const pid_t r1 = spawn_cli(rank_args(announced_train_args(out, 200), 1, port, 2), log1);
  ASSERT_TRUE(wait_for_text(log0, "training mlp-small", seconds(30))) << read_bytes(log0);
  std::this_thread::sleep_for(milliseconds(300));
  ::kill(r1, SIGSTOP);
  const auto t0 = steady_clock::now();
  const int code = wait_exit(r0, seconds(15));
  const double took = duration<double>(steady_clock::now() - t0).count();
  ::kill(r1, SIGKILL);
  wait_exit(r1, seconds(5));
  const std::string log = read_bytes(log0);
  EXPECT_EQ(code, 1) << log;
  EXPECT_LT(took, 8.0) << log;
  EXPECT_NE(log.find("mcompress: error: rank 0 of 2: "), std::string::npos) << log;
  EXPECT_NE(log.find("timeout 2 s"), std::string::npos) << log;
  EXPECT_FALSE(fs::exists(out));
}

// Rank 0 alone: it serves the rendezvous, nobody joins, and it fails at its 2 s timeout.
TEST_F(DistributedTest, ARankZeroWhosePeerNeverComesFailsAtTheTimeout) {
  const auto t0 = steady_clock::now();
  const auto r = mcompress::testing::run_cli(
      joined(rank_args(train_args(dir_.file("alone.h5"), 1), 0, free_port(), 2)));
  const double took = duration<double>(steady_clock::now() - t0).count();
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_LT(took, 10.0) << r.out;
  EXPECT_NE(r.out.find("mcompress: error: rank 0 of 2: connecting to the other ranks"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir_.file("alone.h5")));
}

// Rank 1 alone: nobody serves the rendezvous, so it fails at its 2 s timeout naming the master.
TEST_F(DistributedTest, ARankWhoseMasterNeverComesFailsAtTheTimeout) {
  const auto t0 = steady_clock::now();
  const auto r = mcompress::testing::run_cli(
      joined(rank_args(train_args(dir_.file("lone.h5"), 1), 1, free_port(), 2)));
  const double took = duration<double>(steady_clock::now() - t0).count();
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_LT(took, 10.0) << r.out;
  EXPECT_NE(r.out.find("mcompress: error: rank 1 of 2: reaching the master at 127.0.0.1:"),
            std::string::npos)
      << r.out;
  EXPECT_FALSE(fs::exists(dir_.file("lone.h5")));
}

TEST_F(DistributedTest, BadFlagsAndEnvironmentAreConfigErrors) {
  auto r = mcompress::testing::run_cli(joined(train_args(dir_.file("x.h5"), 1)) +
                                       " --world-size 2 --rank 2");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("rank must be in [0, 1]"), std::string::npos) << r.out;
  r = mcompress::testing::run_cli(joined(train_args(dir_.file("x.h5"), 1)) +
                                  " --master nohostport");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("must be HOST:PORT"), std::string::npos) << r.out;
  r = mcompress::testing::run_cli("train --help");
  EXPECT_NE(r.out.find("--world-size"), std::string::npos);
  ::setenv("WORLD_SIZE", "two", 1);
  r = mcompress::testing::run_cli(joined(train_args(dir_.file("x.h5"), 1)));
  ::unsetenv("WORLD_SIZE");
  EXPECT_EQ(r.code, 2) << r.out;
  EXPECT_NE(r.out.find("WORLD_SIZE='two' must be an integer"), std::string::npos) << r.out;
}

}  // namespace
