// Unstructured pruning of graph models: every compressible weight of the op table (Conv and
// Gemm), each schedule, masks kept through fine-tuning and the file; structured pruning refuses
// graph models by name until it follows channel groups through a graph.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/zoo_graphs.h"
#include "mcompress/prune/magnitude.h"
#include "mcompress/prune/prune.h"
#include "test_support.h"

namespace mcompress::prune {
namespace {

std::vector<std::string> conv_and_gemm_weights(const Graph& graph) {
  std::vector<std::string> out;
  for (const GraphParam& p : graph.parameters()) {
    for (const Node& n : graph.nodes) {
      if (n.name == p.node && (n.op == "Conv" || n.op == "Gemm") && p.spec.role == "weight") {
        out.push_back(p.name);
      }
    }
  }
  return out;
}

TEST(PruneGraphTest, PrunableTensorsAreTheConvAndGemmWeightsInGraphOrder) {
  const Model m = Model::initialize(zoo_graph("mobilenetv2"), 0);
  const auto prunable = prunable_tensors(m);
  EXPECT_EQ(prunable, conv_and_gemm_weights(m.graph()));
  EXPECT_EQ(prunable.front(), "features.0.0.weight");
  EXPECT_EQ(prunable.back(), "classifier.1.weight");
}

TEST(PruneGraphTest, OneShotLayerScopeMasksEveryWeightToItsTarget) {
  Model m = Model::initialize(zoo_graph("mobilenetv2"), 1);
  PruneOptions o;
  o.target = 0.6;
  o.finetune_epochs = 0;
  const auto report = prune_model(m, o, Dataset{}, Dataset{});
  ASSERT_EQ(report.tensors.size(), prunable_tensors(m).size());
  for (const auto& t : report.tensors) {
    ASSERT_EQ(m.masks.count(t.name), 1U) << t.name;
    // round(0.6 · n) removed per tensor: within one entry of the target.
    EXPECT_NEAR(1.0 - t.density(), 0.6, 1.0 / static_cast<double>(t.total) + 1e-9) << t.name;
    EXPECT_EQ(m.tensor(t.name).ne(0).sum().item<int64_t>(), t.kept) << t.name;
  }
  EXPECT_EQ(report.parameters_before, m.parameter_count());
  EXPECT_LT(report.nonzero_after, report.nonzero_before);
}

TEST(PruneGraphTest, GradualPruningFineTunesAResnetAndTheMasksSurviveTheFile) {
  Model m = Model::initialize(zoo_graph("resnet18"), 2);
  const Dataset data = testing::block_images(48, 3);
  PruneOptions o;
  o.scope = PruneScope::kGlobal;
  o.target = 0.8;
  o.schedule = PruneSchedule::kGradual;
  o.finetune_epochs = 1;
  o.finetune.batch_size = 16;
  o.gradual.frequency = 1;
  const auto report = prune_model(m, o, data, Dataset{});
  EXPECT_NEAR(report.sparsity(), 0.8, 1e-3);
  testing::TempDir dir;
  save_model(m, dir.file("pruned.h5"));
  const Model loaded = load_model(dir.file("pruned.h5"));
  ASSERT_EQ(loaded.masks.size(), m.masks.size());
  for (const auto& [name, mask] : m.masks) {
    EXPECT_TRUE(torch::equal(loaded.masks.at(name), mask)) << name;
    // What the masks remove is exactly zero after fine-tuning.
    EXPECT_EQ(loaded.tensor(name).masked_select(mask.logical_not()).abs().sum().item<double>(), 0.0)
        << name;
  }
}

TEST(PruneGraphTest, StructuredPruningRefusesAGraphModelByName) {
  const Model m = Model::initialize(zoo_graph("resnet18"), 0);
  PruneOptions o;
  o.method = PruneMethod::kStructured;
  ASSERT_THROWS_WITH(o.validate(m), ConfigError,
                     "method structured: 'resnet18' is a graph model, and structured pruning "
                     "follows layer chains only so far; use method magnitude");
}

}  // namespace
}  // namespace mcompress::prune
