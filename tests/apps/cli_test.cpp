// End-to-end tests of the mcompress binary: exit codes, the one-line error format, and a
// tiny train → eval → inspect round trip on generated IDX data.

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <array>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "cli_runner.h"
#include "test_support.h"

namespace {

using mcompress::testing::run_cli;
using Result = mcompress::testing::CliResult;

void write_be32(std::ofstream& out, uint32_t v) {
  const unsigned char b[4] = {static_cast<unsigned char>(v >> 24),
                              static_cast<unsigned char>(v >> 16),
                              static_cast<unsigned char>(v >> 8), static_cast<unsigned char>(v)};
  out.write(reinterpret_cast<const char*>(b), 4);
}

// Ten classes of 28x28 images, each class a bright horizontal band at its own height, so
// even a one-epoch model learns them.
void write_idx_split(const std::string& dir, const std::string& prefix, int n, unsigned seed) {
  std::mt19937 rng(seed);
  std::ofstream images(dir + "/" + prefix + "-images-idx3-ubyte", std::ios::binary);
  std::ofstream labels(dir + "/" + prefix + "-labels-idx1-ubyte", std::ios::binary);
  write_be32(images, 0x803);
  write_be32(images, static_cast<uint32_t>(n));
  write_be32(images, 28);
  write_be32(images, 28);
  write_be32(labels, 0x801);
  write_be32(labels, static_cast<uint32_t>(n));
  for (int i = 0; i < n; ++i) {
    const int label = i % 10;
    for (int r = 0; r < 28; ++r) {
      for (int c = 0; c < 28; ++c) {
        const bool band = r / 3 == label;
        images.put(static_cast<char>(band ? 200 + rng() % 56 : rng() % 40));
      }
    }
    labels.put(static_cast<char>(label));
  }
}

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    write_idx_split(dir_.path().string(), "train", 300, 1);
    write_idx_split(dir_.path().string(), "t10k", 100, 2);
  }
  std::string data() const { return "--data " + dir_.path().string(); }
  mcompress::testing::TempDir dir_;
};

void expect_one_error_line(const Result& r, int code, const std::string& substr) {
  EXPECT_EQ(r.code, code) << r.out;
  EXPECT_NE(r.out.find("mcompress: error: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(substr), std::string::npos) << r.out;
  // exactly one line of error output
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1) << r.out;
}

TEST(CliBasicsTest, HelpAndVersion) {
  auto r = run_cli("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("train"), std::string::npos);
  r = run_cli("version");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("LibTorch"), std::string::npos);
  r = run_cli("train --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--epochs"), std::string::npos);
}

TEST(CliBasicsTest, ZooListsModelsWithParameterCounts) {
  const auto r = run_cli("zoo");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("mlp"), std::string::npos);
  EXPECT_NE(r.out.find("266610"), std::string::npos);  // LeNet-300-100
  EXPECT_NE(r.out.find("resnet8"), std::string::npos);
}

// docs/format.md §5.4 holds the op table as `mcompress ops --markdown` prints it from the code.
TEST(CliBasicsTest, OpsListsTheOpTableAsFormatMdHasIt) {
  const auto r = run_cli("ops --markdown");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("| Conv | 1 | kernel_shape: ints (required);"), std::string::npos) << r.out;
  const std::string doc = mcompress::testing::read_bytes(std::string(MCOMPRESS_TEST_DATA_DIR) +
                                                         "/../../docs/format.md");
  const std::string begin = "<!-- ops:begin -->\n", end = "<!-- ops:end -->";
  const auto from = doc.find(begin), to = doc.find(end);
  ASSERT_TRUE(from != std::string::npos && to != std::string::npos);
  EXPECT_EQ(doc.substr(from + begin.size(), to - from - begin.size()), r.out)
      << "docs/format.md's op table differs from `mcompress ops --markdown`: paste its output "
         "between the ops markers";
}

TEST(CliErrorTest, UsageErrorsExitTwo) {
  expect_one_error_line(run_cli("frobnicate"), 2, "unknown command 'frobnicate'");
  expect_one_error_line(run_cli("train --arch nope --out /tmp/x.h5"), 2,
                        "unknown zoo model 'nope'");
  expect_one_error_line(run_cli("train --arch mlp --epochs 0 --out /tmp/x.h5"), 2,
                        "epochs must be >= 1");
  expect_one_error_line(run_cli("train --arch mlp"), 2, "--out");
  expect_one_error_line(run_cli("eval --bogus 3 x.h5"), 2, "bogus");
}

TEST_F(CliTest, BadInputsExitOneWithTheCulprit) {
  expect_one_error_line(run_cli("eval " + dir_.file("missing.h5")), 1, "missing.h5");
  mcompress::testing::write_bytes(dir_.file("text.h5"), "not a model\n");
  expect_one_error_line(run_cli("inspect " + dir_.file("text.h5")), 1, "text.h5");
  expect_one_error_line(
      run_cli("train --arch mlp-small " + data() + " --out " + dir_.file("no/such/dir/m.h5")), 1,
      "does not exist");
  expect_one_error_line(run_cli("train --arch mlp-small --data " + dir_.file("nowhere") +
                                " --out " + dir_.file("m.h5")),
                        1, "nowhere");
}

TEST_F(CliTest, TrainEvalInspectRoundTrip) {
  const std::string model = dir_.file("m.h5");
  auto r = run_cli("train --arch mlp-small " + data() +
                   " --epochs 2 --batch-size 32 --lr 0.003 --threads 1 --quiet --out " + model);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("saved"), std::string::npos);

  r = run_cli("eval " + model + " " + data() + " --threads 1 --latency-batch 1 --plan");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("median_ms"), std::string::npos);
  EXPECT_NE(r.out.find("Gemm+Relu"), std::string::npos);
  // The bands are trivially separable: a trained model must get well past chance (10%).
  EXPECT_NE(r.out.find("100.00"), std::string::npos) << r.out;

  r = run_cli("inspect " + model);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("1.weight"), std::string::npos);
  EXPECT_NE(r.out.find("fp32"), std::string::npos);
  EXPECT_NE(r.out.find("25450"), std::string::npos);  // 784*32 + 32 + 32*10 + 10 parameters

  // The output exists: refusing to overwrite it without --force, and keeping it intact.
  const auto before = mcompress::testing::read_bytes(model);
  r = run_cli("train --arch mlp-small " + data() + " --epochs 1 --quiet --out " + model);
  expect_one_error_line(r, 1, "--force");
  EXPECT_EQ(mcompress::testing::read_bytes(model), before);
}

TEST_F(CliTest, ConvertSwitchesContainersAndKeepsTheModel) {
  const std::string model = dir_.file("m.h5"), groups = dir_.file("g.h5"),
                    packed = dir_.file("p.h5");
  auto r = run_cli("train --arch mlp-small " + data() +
                   " --epochs 1 --batch-size 32 --threads 1 --quiet --out " + model);
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_cli("convert " + model + " --container groups --out " + groups);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("(format v3, packed, "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(format v2, groups, "), std::string::npos) << r.out;
  r = run_cli("inspect " + groups);
  EXPECT_NE(r.out.find("format v2 (groups container)"), std::string::npos) << r.out;
  // Back to packed: the same bytes as the file train wrote (same model, no timestamps).
  r = run_cli("convert " + groups + " --out " + packed);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(mcompress::testing::read_bytes(packed), mcompress::testing::read_bytes(model));

  expect_one_error_line(run_cli("convert " + model + " --container zip --out " + dir_.file("z.h5")),
                        2, "--container must be packed or groups, got 'zip'");
  const auto before = mcompress::testing::read_bytes(packed);
  expect_one_error_line(run_cli("convert " + model + " --out " + packed), 1, "--force");
  EXPECT_EQ(mcompress::testing::read_bytes(packed), before);
}

TEST_F(CliTest, PruneIterativeGlobalThenStructured) {
  const std::string model = dir_.file("m.h5"), pruned = dir_.file("p.h5"), slim = dir_.file("s.h5");
  auto r = run_cli("train --arch mlp-small " + data() +
                   " --epochs 2 --batch-size 32 --lr 0.003 --threads 1 --quiet --out " + model);
  ASSERT_EQ(r.code, 0) << r.out;

  r = run_cli("prune " + model + " " + data() +
              " --scope global --target 0.9 --schedule iterative --rounds 2 --finetune-epochs 1"
              " --batch-size 32 --lr 0.001 --threads 1 --out " +
              pruned);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(
      r.out.find("pruning mlp-small (25450 parameters): magnitude, target 0.900, global scope, "
                 "iterative (2 rounds)"),
      std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("val_acc"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\nbefore "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\n     2  0.9000    0.9000"), std::string::npos) << r.out;  // round 2 row
  EXPECT_NE(r.out.find("1.weight  [32, 784]  global"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("sparsity 0.9000 of 25408 conv/linear weights"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("saved " + pruned), std::string::npos) << r.out;
  r = run_cli("eval " + pruned + " " + data() + " --threads 1 --latency-batch");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find("median_ms"), std::string::npos) << r.out;
  // As --help says, an empty value skips latency too.
  r = run_cli("eval " + pruned + " " + data() + " --threads 1 --latency-batch ''");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(r.out.find("median_ms"), std::string::npos) << r.out;
  expect_one_error_line(run_cli("eval " + pruned + " --latency-batch x"), 2,
                        "--latency-batch expects batch sizes >= 1 (or nothing), got 'x'");

  r = run_cli("prune " + model + " " + data() +
              " --structured --target 0.5 --finetune-epochs 0 --threads 1 --out " + slim);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("width_before"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("parameters 25450 -> 12730"), std::string::npos) << r.out;  // 784-16-10
  r = run_cli("inspect " + slim);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("[16, 784]"), std::string::npos) << r.out;
}

TEST_F(CliTest, PruneBadOptionsExitTwoNamingTheOption) {
  const std::string model = dir_.file("m.h5"), out = " --out " + dir_.file("p.h5");
  expect_one_error_line(run_cli("prune " + model + " --target 1.5" + out), 2,
                        "target must be in [0, 1), got 1.5");
  expect_one_error_line(run_cli("prune " + model + " --schedule cubic" + out), 2,
                        "--schedule must be one of one-shot, iterative, gradual, got 'cubic'");
  expect_one_error_line(run_cli("prune " + model + " --overrides 1.weight" + out), 2,
                        "--overrides expects NAME=VALUE, got '1.weight'");
  expect_one_error_line(run_cli("prune " + model + " --overrides 1.weight=x" + out), 2,
                        "--overrides '1.weight' must be a number, got 'x'");
  expect_one_error_line(run_cli("prune " + model + " --rewind ''" + out), 2,
                        "--rewind must be none, init or a model file");
  expect_one_error_line(run_cli("prune " + model + " --structured --scope global" + out), 2,
                        "scope must be layer for structured pruning");
  auto r = run_cli("train --arch mlp-small " + data() + " --epochs 1 --threads 1 --quiet --out " +
                   model);
  ASSERT_EQ(r.code, 0) << r.out;
  expect_one_error_line(run_cli("prune " + model + " " + data() + " --exclude nope" + out), 2,
                        "exclude: unknown tensor 'nope'");
  expect_one_error_line(run_cli("prune " + model + " " + data() + " --out " + model), 2,
                        "(the same file)");
}

TEST_F(CliTest, CompressRunsARecipeAndRejectsABadOne) {
  const std::string recipe = dir_.file("r.yaml");
  mcompress::testing::write_bytes(
      recipe,
      "model: {arch: lenet5-small, train: {epochs: 1, batch_size: 32}}\n"
      "data: {path: " +
          dir_.path().string() +
          ", calib_batches: 1}\n"
          "stages:\n  - quantize: {mode: int8-dynamic}\n"
          "output: " +
          dir_.file("c.h5") + "\n");
  auto r = run_cli("compress " + recipe + " --threads 1");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("stages[0].quantize"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("c.report.md"), std::string::npos) << r.out;
  r = run_cli("inspect " + dir_.file("c.h5"));
  EXPECT_EQ(r.code, 0) << r.out;

  expect_one_error_line(run_cli("compress " + recipe + " --set stages[0].quantize.mode=int4"), 2,
                        "stages[0].quantize.mode (--set): must be one of");
  mcompress::testing::write_bytes(recipe,
                                  "model: m.h5\nstages:\n  - prune: {target: 1.5}\noutput: o.h5\n");
  expect_one_error_line(run_cli("compress " + recipe), 2,
                        "stages[0].prune.target (line 3): must be in [0, 1), got 1.5");
  expect_one_error_line(run_cli("compress " + dir_.file("none.yaml")), 1, "none.yaml");
  r = run_cli("stages");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("quantize:"), std::string::npos) << r.out;
}

TEST_F(CliTest, DistillTinyRun) {
  const std::string teacher = dir_.file("teacher.h5"), student = dir_.file("student.h5");
  auto r = run_cli("train --arch lenet5 " + data() +
                   " --epochs 2 --batch-size 32 --lr 0.003 --threads 1 --quiet --out " + teacher);
  ASSERT_EQ(r.code, 0) << r.out;
  r = run_cli("distill --teacher " + teacher + " --student mlp-small " + data() +
              " --temperature 4 --alpha 0.9 --epochs 2 --batch-size 32 --lr 0.003 --threads 1"
              " --quiet --out " +
              student);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("lenet5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("teacher"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("student"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("saved " + student), std::string::npos) << r.out;

  r = run_cli("inspect --history " + student);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"stage\":\"distill\""), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"temperature\":4.0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("student_test_accuracy"), std::string::npos) << r.out;

  // A model file as the student: fine-tuned, with its accuracy before shown.
  r = run_cli("distill --teacher " + teacher + " --student " + student + " " + data() +
              " --epochs 1 --threads 1 --quiet --out " + dir_.file("again.h5"));
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("student before"), std::string::npos) << r.out;
}

TEST_F(CliTest, DistillBadInputExitsTwoNamingTheOption) {
  const std::string base =
      "distill --teacher " + dir_.file("t.h5") + " " + data() + " --out " + dir_.file("s.h5");
  expect_one_error_line(run_cli(base + " --student mlp-small --temperature 0"), 2,
                        "--temperature must be in [1e-06, 1000], got 0");
  expect_one_error_line(run_cli(base + " --student mlp-small --alpha 1.5"), 2,
                        "alpha must be in [0, 1], got 1.5");
  expect_one_error_line(run_cli(base + " --student mlp-small --epochs 0"), 2,
                        "--epochs must be in [1, 10000], got 0");
  expect_one_error_line(run_cli(base + " --student mlp-small --beta 1"), 2,
                        "beta must be 0 without a hint");
  expect_one_error_line(run_cli(base + " --student nope"), 2,
                        "--student 'nope' is neither a zoo model");
  expect_one_error_line(run_cli(base), 2, "student");
  expect_one_error_line(run_cli("distill --teacher " + dir_.file("t.h5") +
                                " --student mlp-small --out " + dir_.file("t.h5")),
                        2, "(the same file)");
}

}  // namespace
