// Graph models as Model data: a Model with only a Graph (resnet18, mobilenetv2, a document),
// its file (format v4), its training through GraphNetwork, and the lowering the runtime plans
// them with.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

#include "graph_support.h"
#include "mcompress/core/error.h"
#include "mcompress/core/graph.h"
#include "mcompress/core/lowering.h"
#include "mcompress/core/model.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/train.h"
#include "mcompress/core/zoo.h"
#include "mcompress/core/zoo_graphs.h"
#include "test_support.h"

namespace mcompress {
namespace {

using json = nlohmann::json;
using testing::kBatch;

// A small residual network for 1x28x28 images and 10 classes: conv-bn-relu, conv-bn, an Add
// with the first block's output, relu, a 2x2 max pool, linear (the classes of block_images are
// positions, which a global pool would average away).
Graph small_residual_graph() {
  Graph g;
  g.name = "small-residual";
  g.inputs.push_back({"image", DType::kFloat32, {kBatch, 1, 28, 28}});
  g.preprocess.kind = Preprocess::Kind::kNormalize;
  g.preprocess.mean = {0.5};
  g.preprocess.std = {0.25};
  g.task.num_classes = 10;
  const json conv = {{"out_channels", 8},
                     {"kernel_shape", {3, 3}},
                     {"strides", {2, 2}},
                     {"pads", {1, 1, 1, 1}},
                     {"bias", 0}};
  json conv2 = conv;
  conv2["strides"] = {1, 1};
  const json bn = {{"epsilon", 1e-5}, {"momentum", 0.9}};
  g.nodes = {
      {"conv1", "Conv", {"image"}, {"c1"}, conv, {}},
      {"bn1", "BatchNormalization", {"c1"}, {"b1"}, bn, {}},
      {"relu1", "Relu", {"b1"}, {"r1"}, json::object(), {}},
      {"conv2", "Conv", {"r1"}, {"c2"}, conv2, {}},
      {"bn2", "BatchNormalization", {"c2"}, {"b2"}, bn, {}},
      {"add", "Add", {"b2", "r1"}, {"sum"}, json::object(), {}},
      {"relu2", "Relu", {"sum"}, {"r2"}, json::object(), {}},
      {"pool", "MaxPool", {"r2"}, {"p"}, {{"kernel_shape", {2, 2}}, {"strides", {2, 2}}}, {}},
      {"flatten", "Flatten", {"p"}, {"f"}, {{"axis", 1}}, {}},
      {"fc", "Gemm", {"f"}, {"logits"}, {{"out_features", 10}, {"bias", 1}}, {}}};
  g.outputs = {"logits"};
  return g;
}

std::vector<std::string> names(const std::vector<TensorInfo>& infos) {
  std::vector<std::string> out;
  for (const auto& i : infos) out.push_back(i.name);
  return out;
}

TEST(GraphModelTest, Resnet18IsAGraphModelWithItsGraphsTensors) {
  const Graph graph = zoo_graph("resnet18");
  const Model m = Model::initialize(graph, 3);
  EXPECT_FALSE(m.is_sequential());
  EXPECT_EQ(m.name(), "resnet18");
  EXPECT_EQ(m.graph(), graph);
  std::vector<std::string> expected;
  for (const GraphParam& p : graph.parameters()) expected.push_back(p.name);
  EXPECT_EQ(names(m.tensor_infos()), expected);
  EXPECT_EQ(m.tensor("layer1.0.conv1.weight").sizes(), (std::vector<int64_t>{64, 64, 3, 3}));
  try {
    (void)m.spec();
    ADD_FAILURE() << "spec() of a graph model did not throw";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("'resnet18' is a graph model"), std::string::npos)
        << e.what();
  }
}

TEST(GraphModelTest, SequentialModelsKeepTheirSpecAndHaveTheirGraph) {
  const Model m = Model::initialize(zoo_spec("resnet8"), 0);
  ASSERT_TRUE(m.is_sequential());
  EXPECT_EQ(m.name(), "resnet8");
  EXPECT_EQ(m.graph(), Graph::from_sequential(m.spec()));
  EXPECT_EQ(names(m.tensor_infos()), names(m.spec().tensors()));
}

TEST(GraphModelTest, SameSeedSameTensors) {
  const Model a = Model::initialize(zoo_graph("mobilenetv2"), 5);
  const Model b = Model::initialize(zoo_graph("mobilenetv2"), 5);
  for (const auto& [name, t] : a.tensors()) EXPECT_TRUE(torch::equal(t, b.tensor(name))) << name;
}

TEST(GraphModelTest, FromTensorsNamesAMissingOrMisshapenTensor) {
  const Graph graph = small_residual_graph();
  auto tensors = Model::initialize(graph, 1).tensors();
  auto missing = tensors;
  missing.erase("bn2.running_var");
  EXPECT_THROW(
      {
        try {
          Model::from_tensors(graph, missing);
        } catch (const ModelError& e) {
          EXPECT_NE(std::string(e.what()).find("bn2.running_var"), std::string::npos);
          throw;
        }
      },
      ModelError);
  tensors["fc.weight"] = torch::zeros({10, 7});
  EXPECT_THROW(Model::from_tensors(graph, tensors), ModelError);
}

TEST(GraphModelFileTest, AGraphModelIsWrittenAsV4AndReadBackBitForBit) {
  testing::TempDir dir;
  const std::string path = dir.file("m.h5");
  Model m = Model::initialize(zoo_graph("mobilenetv2"), 2);
  m.history.push_back(R"({"stage":"train"})");
  save_model(m, path);
  const ModelFileSummary summary = inspect_model_file(path);
  EXPECT_EQ(summary.format_version, kGraphFormatVersion);
  EXPECT_EQ(summary.container, "packed");
  EXPECT_EQ(json::parse(summary.arch_json).at("format"), kGraphFormat);
  const Model back = load_model(path);
  EXPECT_FALSE(back.is_sequential());
  EXPECT_EQ(back.graph(), m.graph());
  EXPECT_EQ(back.history, m.history);
  ASSERT_EQ(names(back.tensor_infos()), names(m.tensor_infos()));
  for (const auto& [name, t] : m.tensors()) EXPECT_TRUE(torch::equal(t, back.tensor(name))) << name;
}

TEST(GraphModelFileTest, SequentialModelsAreStillWrittenAsV3) {
  testing::TempDir dir;
  save_model(Model::initialize(zoo_spec("mlp"), 0), dir.file("m.h5"));
  EXPECT_EQ(inspect_model_file(dir.file("m.h5")).format_version, kPackedFormatVersion);
}

TEST(GraphModelFileTest, TheGroupsContainerRefusesAGraphModel) {
  testing::TempDir dir;
  SaveOptions o;
  o.container = ModelContainer::kGroups;
  try {
    save_model(Model::initialize(small_residual_graph(), 0), dir.file("m.h5"), o);
    ADD_FAILURE() << "no error";
  } catch (const ModelError& e) {
    EXPECT_NE(std::string(e.what()).find("only the packed container"), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir.file("m.h5")));
}

TEST(GraphTrainTest, TrainModelLearnsAResidualGraph) {
  const Dataset train = testing::block_images(512, 1);
  const Dataset val = testing::block_images(256, 2);
  Model m = Model::initialize(small_residual_graph(), 0);
  const at::Tensor before = m.tensor("conv1.weight").clone();
  TrainOptions o;
  o.epochs = 2;
  o.batch_size = 32;
  o.optimizer = OptimizerKind::kAdam;
  o.lr = 3e-3;
  o.progress = false;
  const TrainResult r = train_model(m, train, val, o);
  ASSERT_EQ(r.epochs.size(), 2u);
  EXPECT_GT(r.epochs.back().val_accuracy, 0.9);  // ten separable classes; chance is 0.1
  EXPECT_FALSE(torch::equal(before, m.tensor("conv1.weight")));
}

TEST(GraphTrainTest, FrozenBatchnormKeepsItsRunningStatistics) {
  const Dataset train = testing::block_images(128, 1);
  Model m = Model::initialize(small_residual_graph(), 0);
  const at::Tensor mean = m.tensor("bn1.running_mean").clone();
  TrainOptions o;
  o.epochs = 1;
  o.batch_size = 32;
  o.freeze_batchnorm = true;
  o.progress = false;
  train_model(m, train, Dataset{}, o);
  EXPECT_TRUE(torch::equal(mean, m.tensor("bn1.running_mean")));
  o.freeze_batchnorm = false;
  train_model(m, train, Dataset{}, o);
  EXPECT_FALSE(torch::equal(mean, m.tensor("bn1.running_mean")));
}

// ---- the lowering --------------------------------------------------------------------------

std::vector<std::string> ops(const std::vector<LoweredStep>& steps) {
  std::vector<std::string> out;
  for (const auto& s : steps) out.push_back(s.op);
  return out;
}

TEST(LoweringTest, FusesConvBatchnormReluButNotAcrossAnAddWhichTakesItsOwnRelu) {
  const Graph g = small_residual_graph();
  const auto steps = lower(g);
  EXPECT_EQ(ops(steps),
            (std::vector<std::string>{"Conv+BatchNormalization+Relu", "Conv+BatchNormalization",
                                      "Add+Relu", "MaxPool", "Flatten", "Gemm"}));
  EXPECT_EQ(steps[0].output, "r1");
  EXPECT_EQ(steps[1].output, "b2");
  EXPECT_EQ(steps[2].output, "r2");
  EXPECT_EQ(steps[0].find(g, "BatchNormalization"), 1);
  EXPECT_EQ(steps[2].find(g, "BatchNormalization"), -1);
}

TEST(LoweringTest, AValueReadTwiceOrAskedForIsNotFusedAway) {
  Graph g = small_residual_graph();
  g.outputs = {"logits", "b1"};  // the batchnorm's output is wanted: relu1 cannot absorb it
  auto steps = lower(g);
  EXPECT_EQ(steps[0].op, "Conv+BatchNormalization");
  EXPECT_EQ(steps[1].op, "Relu");
}

TEST(LoweringTest, Resnet18FusesEveryConvWithItsBatchnorm) {
  const Graph g = zoo_graph("resnet18");
  int64_t convs = 0, fused = 0;
  for (const auto& s : lower(g)) {
    if (g.nodes[s.nodes[0]].op != "Conv") continue;
    ++convs;
    fused += s.find(g, "BatchNormalization") >= 0;
  }
  EXPECT_EQ(convs, 20);  // 1 stem + 16 in blocks + 3 downsample projections
  EXPECT_EQ(fused, convs);
}

TEST(LoweringTest, SequentialModelsLowerToTheirLayerGroups) {
  const Graph g = Graph::from_sequential(zoo_spec("lenet5"));
  for (const auto& s : lower(g)) {
    if (s.op.rfind("Conv", 0) == 0) {
      EXPECT_NE(s.op.find("Relu"), std::string::npos) << s.op;
    }
  }
}

}  // namespace
}  // namespace mcompress
