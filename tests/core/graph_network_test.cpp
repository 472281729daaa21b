#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cctype>
#include <chrono>
#include <iostream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "graph_support.h"
#include "mcompress/core/error.h"
#include "mcompress/core/graph.h"
#include "mcompress/core/graph_network.h"
#include "mcompress/core/model.h"
#include "mcompress/core/zoo.h"
#include "mcompress/core/zoo_graphs.h"
#include "reference_network.h"
#include "test_support.h"

namespace mcompress {
namespace {

using json = nlohmann::json;
using testing::kBatch;
using torch::Tensor;

// max |got - want| <= tol * max(max |want|, 1e-12): relative to the reference's scale.
::testing::AssertionResult close(const Tensor& got, const Tensor& want, double tol) {
  if (!got.defined() || !want.defined()) {
    return ::testing::AssertionFailure() << "undefined tensor";
  }
  if (got.sizes() != want.sizes()) {
    return ::testing::AssertionFailure() << "shape " << got.sizes() << " vs " << want.sizes();
  }
  if (got.numel() == 0) return ::testing::AssertionSuccess();
  const double diff = (got.detach() - want.detach()).abs().max().item<double>();
  const double scale = std::max(want.detach().abs().max().item<double>(), 1e-12);
  if (diff <= tol * scale) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "max difference " << diff << " > " << tol << " * " << scale;
}

// The reference network's tensors by the model's names (its parameters are "layers.<name>").
std::map<std::string, Tensor> network_params(const testing::ReferenceNetwork& net) {
  std::map<std::string, Tensor> out;
  for (const auto& item : net->named_parameters()) out[item.key().substr(7)] = item.value();
  return out;
}

std::map<std::string, Tensor> graph_params(const GraphNetwork& net) {
  std::map<std::string, Tensor> out;
  for (const auto& item : net->named_parameters()) out[item.key()] = item.value();
  return out;
}

template <typename Map>
std::set<std::string> keys(const Map& m) {
  std::set<std::string> out;
  for (const auto& [k, v] : m) out.insert(k);
  return out;
}

// ---- the sequential zoo: GraphNetwork equals torch::nn's modules ------------------------------

class SequentialZooTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SequentialZooTest, GraphNetworkEqualsTorchModules) {
  const ArchSpec spec = zoo_spec(GetParam());
  Model model = Model::initialize(spec, 11);
  testing::ReferenceNetwork net(spec);
  net->load(model);
  GraphNetwork graph_net(Graph::from_sequential(spec));
  graph_net->load(model);
  ASSERT_EQ(keys(graph_net->state()), keys(net->state()));
  ASSERT_EQ(keys(graph_params(graph_net)), keys(network_params(net)));

  // (a) inference, batch 1 and 3.
  net->eval();
  graph_net->eval();
  for (int64_t batch : {1, 3}) {
    torch::manual_seed(100 + batch);
    const Tensor x = torch::rand({batch, 1, 28, 28});
    torch::NoGradGuard no_grad;
    EXPECT_TRUE(close(graph_net->forward(x), net->forward(x), 1e-6)) << "batch " << batch;
  }

  // (b) training forward and every gradient; (c) one SGD step: weights and running statistics.
  net->train();
  graph_net->train();
  torch::manual_seed(5);
  const Tensor x = torch::rand({4, 1, 28, 28});
  const Tensor labels = torch::randint(0, 10, {4}, torch::kLong);
  torch::optim::SGD net_opt(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  torch::optim::SGD graph_opt(graph_net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  torch::manual_seed(9);  // the same dropout masks in both
  const Tensor want = net->forward(x);
  torch::manual_seed(9);
  const Tensor got = graph_net->forward(x);
  EXPECT_TRUE(close(got, want, 1e-5));
  net_opt.zero_grad();
  graph_opt.zero_grad();
  torch::nn::functional::cross_entropy(want, labels).backward();
  torch::nn::functional::cross_entropy(got, labels).backward();
  const auto net_params = network_params(net);
  for (const auto& [name, p] : graph_params(graph_net)) {
    EXPECT_TRUE(close(p.grad(), net_params.at(name).grad(), 1e-5)) << name;
  }
  net_opt.step();
  graph_opt.step();
  const auto net_state = net->state();
  for (const auto& [name, t] : graph_net->state()) {
    EXPECT_TRUE(close(t, net_state.at(name), 1e-5)) << name;
  }

  // store() writes back the same names.
  Model stored = model.clone();
  graph_net->store(stored);
  for (const auto& [name, t] : net_state) EXPECT_TRUE(close(stored.tensor(name), t, 1e-5)) << name;
}

// Model::initialize draws a sequential model's tensors through GraphNetwork; they are bitwise
// the ones torch::nn's modules of the same layers draw from the same seed.
TEST_P(SequentialZooTest, InitialTensorsAreTorchModulesDraws) {
  const ArchSpec spec = zoo_spec(GetParam());
  const Model model = Model::initialize(spec, 17);
  torch::manual_seed(17);
  testing::ReferenceNetwork net(spec);
  const auto state = net->state();
  ASSERT_EQ(keys(state).size(), model.tensor_infos().size());
  for (const auto& info : model.tensor_infos()) {
    EXPECT_TRUE(torch::equal(model.tensor(info.name), state.at(info.name))) << info.name;
  }
}

std::vector<std::string> zoo_names() {
  std::vector<std::string> out;
  for (const auto& e : zoo_entries()) out.push_back(e.name);
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryZooModel, SequentialZooTest, ::testing::ValuesIn(zoo_names()),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST(GraphNetworkTest, LoadRejectsUnknownMissingAndMisshapenTensors) {
  GraphNetwork net(Graph::from_sequential(zoo_spec("mlp-small")));
  auto tensors = net->state();
  for (auto& [name, t] : tensors) t = t.detach().clone();
  tensors["9.weight"] = torch::zeros({1});
  ASSERT_THROWS_WITH(net->load(tensors), ModelError, "no tensor '9.weight'");
  tensors.erase("9.weight");
  tensors.erase("1.bias");
  ASSERT_THROWS_WITH(net->load(tensors), ModelError, "tensor '1.bias' is missing");
  tensors["1.bias"] = torch::zeros({3});
  ASSERT_THROWS_WITH(net->load(tensors), ModelError, "tensor '1.bias': got shape [3]");
}

TEST(GraphNetworkTest, MasksStayZeroAfterAStep) {
  const ArchSpec spec = zoo_spec("mlp-small");
  Model model = Model::initialize(spec, 3);
  model.set_mask("1.weight", torch::rand({32, 784}) > 0.5);
  GraphNetwork net(Graph::from_sequential(spec));
  net->load(model);
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.5));
  torch::nn::functional::cross_entropy(net->forward(torch::rand({2, 1, 28, 28})),
                                       torch::tensor({1, 2}, torch::kLong))
      .backward();
  opt.step();
  net->apply_masks();
  const Tensor w = net->state().at("1.weight");
  EXPECT_EQ(w.masked_select(model.masks.at("1.weight").logical_not()).abs().sum().item<float>(),
            0.0f);
}

// ---- single ops against plain LibTorch calls -------------------------------------------------

// A graph of the given inputs and nodes whose last node's output is flattened into the
// output, of `size` values per batch element (the classification task's class count).
Graph op_graph(const std::vector<ValueInfo>& inputs, const std::vector<Node>& nodes, int64_t size) {
  Graph g;
  g.inputs = inputs;
  g.nodes = nodes;
  g.nodes.push_back(Node{"out", "Flatten", {nodes.back().outputs[0]}, {"out"}, {{"axis", 1}}, {}});
  g.outputs = {"out"};
  g.task.num_classes = size;
  return g;
}

ValueInfo input(const std::string& name, SymShape shape) {
  return ValueInfo{name, DType::kFloat32, std::move(shape)};
}

// Runs the graph in eval mode; returns its output reshaped to `like`.
Tensor run_op(GraphNetwork& net, const std::vector<Tensor>& inputs, const Tensor& like) {
  net->eval();
  torch::NoGradGuard no_grad;
  return net->run(inputs)[0].reshape(like.sizes());
}

TEST(GraphNetworkOpTest, EveryOpOfTheSchemaHasAKernel) {
  std::vector<std::string> schema_ops;
  for (const auto& s : op_schemas()) schema_ops.push_back(s.op);
  EXPECT_EQ(graph_network_ops(), schema_ops);
}

TEST(GraphNetworkOpTest, DepthwiseConvStride2AsymmetricPads) {
  const Node conv{"dw",
                  "Conv",
                  {"x"},
                  {"dw"},
                  {{"out_channels", 4},
                   {"kernel_shape", {3, 3}},
                   {"strides", {2, 2}},
                   {"pads", {0, 1, 2, 1}},
                   {"group", 4}},
                  {}};
  GraphNetwork net(op_graph({input("x", {kBatch, 4, 9, 8})}, {conv}, 80));
  torch::manual_seed(1);
  const Tensor x = torch::randn({2, 4, 9, 8});
  const auto state = net->state();
  // pads [h_begin, w_begin, h_end, w_end] = [0, 1, 2, 1]; constant_pad_nd lists w first.
  const Tensor want = torch::conv2d(torch::constant_pad_nd(x, {1, 1, 0, 2}), state.at("dw.weight"),
                                    state.at("dw.bias"), std::vector<int64_t>{2, 2},
                                    std::vector<int64_t>{0, 0}, std::vector<int64_t>{1, 1}, 4);
  EXPECT_EQ(want.sizes(), (std::vector<int64_t>{2, 4, 5, 4}));
  EXPECT_TRUE(close(run_op(net, {x}, want), want, 1e-6));
}

TEST(GraphNetworkOpTest, DilatedConvWithoutBias) {
  const Node conv{"c",
                  "Conv",
                  {"x"},
                  {"c"},
                  {{"out_channels", 5},
                   {"kernel_shape", {3, 2}},
                   {"pads", {2, 1, 2, 1}},
                   {"dilations", {2, 1}},
                   {"bias", 0}},
                  {}};
  GraphNetwork net(op_graph({input("x", {kBatch, 3, 7, 6})}, {conv}, 245));
  const Tensor x = torch::randn({2, 3, 7, 6});
  const Tensor want = torch::conv2d(x, net->state().at("c.weight"), {}, std::vector<int64_t>{1, 1},
                                    std::vector<int64_t>{2, 1}, std::vector<int64_t>{2, 1}, 1);
  EXPECT_EQ(net->state().count("c.bias"), 0u);
  EXPECT_TRUE(close(run_op(net, {x}, want), want, 1e-6));
}

TEST(GraphNetworkOpTest, ConcatAxis1) {
  const Node cat{"cat", "Concat", {"a", "b"}, {"cat"}, {{"axis", 1}}, {}};
  GraphNetwork net(
      op_graph({input("a", {kBatch, 3, 4, 4}), input("b", {kBatch, 5, 4, 4})}, {cat}, 128));
  const Tensor a = torch::randn({2, 3, 4, 4}), b = torch::randn({2, 5, 4, 4});
  const Tensor want = torch::cat({a, b}, 1);
  EXPECT_TRUE(close(run_op(net, {a, b}, want), want, 0));
}

TEST(GraphNetworkOpTest, AddAndMulBroadcast) {
  const Node add{"add", "Add", {"a", "b"}, {"add"}, json::object(), {}};
  const Node mul{"mul", "Mul", {"add", "b"}, {"mul"}, json::object(), {}};
  GraphNetwork net(
      op_graph({input("a", {kBatch, 3, 4, 5}), input("b", {1, 3, 1, 5})}, {add, mul}, 60));
  const Tensor a = torch::randn({2, 3, 4, 5}), b = torch::randn({1, 3, 1, 5});
  const Tensor want = (a + b) * b;
  EXPECT_TRUE(close(run_op(net, {a, b}, want), want, 0));
}

TEST(GraphNetworkOpTest, ClipAsRelu6AndHardSwish) {
  const Node clip{"r6", "Clip", {"x"}, {"r6"}, {{"min", 0.0}, {"max", 6.0}}, {}};
  const Node hs{"hs", "HardSwish", {"x"}, {"hs"}, json::object(), {}};
  const Node cat{"cat", "Concat", {"r6", "hs"}, {"cat"}, {{"axis", 1}}, {}};
  GraphNetwork net(op_graph({input("x", {kBatch, 2, 3, 3})}, {clip, hs, cat}, 36));
  const Tensor x = torch::randn({2, 2, 3, 3}) * 5;
  const Tensor want =
      torch::cat({torch::nn::functional::hardtanh(
                      x, torch::nn::functional::HardtanhFuncOptions().min_val(0).max_val(6)),
                  x * torch::clamp(x + 3, 0, 6) / 6},
                 1);
  EXPECT_TRUE(close(run_op(net, {x}, want), want, 1e-6));
}

TEST(GraphNetworkOpTest, PoolsWithPadding) {
  const json window = {{"kernel_shape", {3, 3}}, {"strides", {2, 2}}, {"pads", {1, 1, 1, 1}}};
  json exclude = window, include = window;
  include["count_include_pad"] = 1;
  json asym = {{"kernel_shape", {2, 2}}, {"strides", {2, 2}}, {"pads", {0, 0, 1, 1}}};
  const std::vector<Node> nodes = {
      {"avg0", "AveragePool", {"x"}, {"avg0"}, exclude, {}},
      {"avg1", "AveragePool", {"x"}, {"avg1"}, include, {}},
      {"max", "MaxPool", {"x"}, {"max"}, window, {}},
      {"max_asym", "MaxPool", {"x"}, {"max_asym"}, asym, {}},
      {"avg_asym", "AveragePool", {"x"}, {"avg_asym"}, asym, {}},
      {"cat",
       "Concat",
       {"avg0", "avg1", "max", "max_asym", "avg_asym"},
       {"cat"},
       {{"axis", 1}},
       {}},
  };
  GraphNetwork net(op_graph({input("x", {kBatch, 2, 7, 7})}, nodes, 160));
  const Tensor x = torch::randn({2, 2, 7, 7}) - 2;  // mostly negative: padding must not win
  const Tensor padded = torch::constant_pad_nd(x, {0, 1, 0, 1}, -1e30);
  const Tensor ones = torch::constant_pad_nd(torch::ones({1, 1, 7, 7}), {0, 1, 0, 1}, 0);
  const Tensor zero_padded = torch::constant_pad_nd(x, {0, 1, 0, 1}, 0);
  const Tensor want = torch::cat(
      {torch::avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, false, false),
       torch::avg_pool2d(x, {3, 3}, {2, 2}, {1, 1}, false, true),
       torch::max_pool2d(x, {3, 3}, {2, 2}, {1, 1}), torch::max_pool2d(padded, {2, 2}, {2, 2}),
       torch::avg_pool2d(zero_padded, {2, 2}, {2, 2}) / torch::avg_pool2d(ones, {2, 2}, {2, 2})},
      1);
  EXPECT_TRUE(close(run_op(net, {x}, want), want, 1e-6));
}

TEST(GraphNetworkOpTest, BatchNormTrainingUsesBatchStatsAndPyTorchMomentum) {
  const Node bn{"bn", "BatchNormalization", {"x"}, {"bn"}, {{"momentum", 0.7}}, {}};
  GraphNetwork net(op_graph({input("x", {kBatch, 3, 4, 4})}, {bn}, 48));
  torch::nn::BatchNorm2d ref(torch::nn::BatchNormOptions(3).momentum(0.3));
  const Tensor x = torch::randn({5, 3, 4, 4}) * 2 + 1;
  net->train();
  ref->train();
  const Tensor want = ref->forward(x);
  const Tensor got = net->run({x})[0].reshape(want.sizes());
  EXPECT_TRUE(close(got, want, 1e-6));
  EXPECT_TRUE(close(net->state().at("bn.running_mean"), ref->running_mean, 1e-6));
  EXPECT_TRUE(close(net->state().at("bn.running_var"), ref->running_var, 1e-6));
  ref->eval();
  const Tensor want_eval = ref->forward(x);
  EXPECT_TRUE(close(run_op(net, {x}, want_eval), want_eval, 1e-6));
  // Running statistics are buffers, not parameters.
  EXPECT_EQ(keys(graph_params(net)), (std::set<std::string>{"bn.bias", "bn.weight"}));
}

TEST(GraphNetworkOpTest, GemmMatMulReshapeActivations) {
  const std::vector<Node> nodes = {
      {"flat", "Flatten", {"x"}, {"flat"}, {{"axis", 1}}, {}},
      {"fc", "Gemm", {"flat"}, {"fc"}, {{"out_features", 6}}, {}},
      {"r", "Reshape", {"fc"}, {"r"}, {{"shape", {0, 2, 3}}}, {}},
      {"mm", "MatMul", {"r", "m"}, {"mm"}, json::object(), {}},
      {"sig", "Sigmoid", {"mm"}, {"sig"}, json::object(), {}},
      {"tanh", "Tanh", {"mm"}, {"tanh"}, json::object(), {}},
      {"silu", "SiLU", {"mm"}, {"silu"}, json::object(), {}},
      {"hsig", "HardSigmoid", {"mm"}, {"hsig"}, json::object(), {}},
      {"id", "Identity", {"hsig"}, {"id"}, json::object(), {}},
      {"drop", "Dropout", {"id"}, {"drop"}, {{"ratio", 0.5}}, {}},
      {"cat", "Concat", {"sig", "tanh", "silu", "drop"}, {"cat"}, {{"axis", -1}}, {}},
  };
  GraphNetwork net(op_graph({input("x", {kBatch, 2, 2, 2}), input("m", {3, 4})}, nodes, 32));
  const Tensor x = torch::randn({2, 2, 2, 2}), m = torch::randn({3, 4});
  const auto state = net->state();
  const Tensor mm =
      torch::matmul(torch::linear(x.reshape({2, 8}), state.at("fc.weight"), state.at("fc.bias"))
                        .reshape({2, 2, 3}),
                    m);
  const Tensor want = torch::cat(
      {torch::sigmoid(mm), torch::tanh(mm), torch::silu(mm), torch::clamp(mm * 0.2 + 0.5, 0, 1)},
      -1);
  EXPECT_TRUE(close(run_op(net, {x, m}, want), want, 1e-6));
}

TEST(GraphNetworkOpTest, NestedParameterNamesAndRenames) {
  Graph g = Graph::from_sequential(zoo_spec("resnet8"));
  for (Node& n : g.nodes) {
    if (n.name == "0") n.params = {{"weight", "stem.conv.weight"}};
  }
  GraphNetwork net(g);
  const auto names = keys(graph_params(net));
  EXPECT_TRUE(names.count("stem.conv.weight"));
  EXPECT_TRUE(names.count("5.conv1.weight"));
  EXPECT_TRUE(names.count("5.shortcut.0.weight"));
  EXPECT_FALSE(names.count("0.weight"));
  g.nodes[0].params = {{"weight", "stem..weight"}};
  ASSERT_THROWS_WITH(GraphNetwork{g}, ModelError, "node '0'");
}

// ---- the graph zoo --------------------------------------------------------------------------

TEST(GraphZooTest, TorchvisionTensorNames) {
  ASSERT_THROWS_WITH(zoo_graph("vgg"), ConfigError, "resnet18, mobilenetv2");
  const auto resnet = keys(GraphNetwork(zoo_graph("resnet18"))->state());
  for (const char* name :
       {"conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
        "layer4.1.bn2.running_var", "fc.weight", "fc.bias"}) {
    EXPECT_TRUE(resnet.count(name)) << name;
  }
  EXPECT_FALSE(resnet.count("layer1.0.downsample.0.weight"));
  const auto mobilenet = keys(GraphNetwork(zoo_graph("mobilenetv2"))->state());
  for (const char* name :
       {"features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.2.running_mean",
        "features.2.conv.3.weight", "features.18.1.weight", "classifier.1.weight"}) {
    EXPECT_TRUE(mobilenet.count(name)) << name;
  }
}

TEST(GraphZooTest, TrainsOneStep) {
  for (const auto& entry : zoo_graph_entries()) {
    GraphNetwork net(zoo_graph(entry.name));
    net->train();
    torch::manual_seed(2);
    const Tensor out = net->forward(torch::rand({2, 1, 28, 28}));
    ASSERT_EQ(out.sizes(), (std::vector<int64_t>{2, 10})) << entry.name;
    torch::nn::functional::cross_entropy(out, torch::tensor({3, 4}, torch::kLong)).backward();
    for (const auto& item : net->named_parameters()) {
      EXPECT_TRUE(item.value().grad().defined()) << entry.name << " " << item.key();
    }
  }
}

const std::string kPython = "/usr/bin/python3";
const std::string kScript =
    std::string(MCOMPRESS_TEST_DATA_DIR) + "/../core/python/torchvision_reference.py";

bool have_torchvision(std::string* why) {
  const auto probe = testing::run_shell(kPython + " -c 'import torch, torchvision'");
  *why = probe.out;
  return probe.code == 0;
}

// The tensors torchvision_reference.py wrote, by name.
std::map<std::string, Tensor> read_reference(const std::string& dir) {
  const json index = json::parse(testing::read_bytes(dir + "/ref.json"));
  const std::string bytes = testing::read_bytes(dir + "/ref.bin");
  const Tensor all = torch::from_blob(const_cast<char*>(bytes.data()),
                                      {static_cast<int64_t>(bytes.size() / 4)}, torch::kFloat32)
                         .clone();
  std::map<std::string, Tensor> out;
  for (const json& t : index["tensors"]) {
    const auto shape = t["shape"].get<std::vector<int64_t>>();
    int64_t numel = 1;
    for (int64_t d : shape) numel *= d;
    out[t["name"].get<std::string>()] =
        all.narrow(0, t["offset"].get<int64_t>(), numel).reshape(shape).clone();
  }
  return out;
}

class TorchvisionTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TorchvisionTest, SameTensorNamesAndLogits) {
  std::string why;
  if (!have_torchvision(&why)) {
    GTEST_SKIP() << kPython << " cannot import torch and torchvision (install "
                 << "python3-torchvision): " << why;
  }
  testing::TempDir dir;
  const auto r = testing::run_shell(kPython + " " + kScript + " reference " + GetParam() + " " +
                                    dir.path().string());
  ASSERT_EQ(r.code, 0) << r.out;
  auto tensors = read_reference(dir.path().string());
  const Tensor x = tensors.at("input:x"), want = tensors.at("output:logits");
  tensors.erase("input:x");
  tensors.erase("output:logits");
  GraphNetwork net(zoo_graph(GetParam()));
  ASSERT_EQ(keys(net->state()), keys(tensors));
  net->load(tensors);
  net->eval();
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(close(net->forward(x), want, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(GraphZoo, TorchvisionTest, ::testing::Values("resnet18", "mobilenetv2"));

// One SGD epoch of resnet18 on 1024 random 28x28 images at batch 64, GraphNetwork and PyTorch
// on the same thread count; prints the times. Run with --gtest_also_run_disabled_tests.
TEST(GraphZooBenchmark, DISABLED_Resnet18EpochTime) {
  std::string why;
  if (!have_torchvision(&why)) GTEST_SKIP() << why;
  const int64_t images = 1024, batch = 64;
  const int threads = torch::get_num_threads();
  torch::manual_seed(0);
  GraphNetwork net(zoo_graph("resnet18"));
  net->train();
  const Tensor x = torch::rand({images, 1, 28, 28});
  const Tensor y = torch::randint(0, 10, {images}, torch::kLong);
  torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  const auto start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < images; i += batch) {
    opt.zero_grad();
    torch::nn::functional::cross_entropy(net->forward(x.narrow(0, i, batch)), y.narrow(0, i, batch))
        .backward();
    opt.step();
  }
  const double ours =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const auto r = testing::run_shell(kPython + " " + kScript + " epoch resnet18 --threads " +
                                    std::to_string(threads));
  ASSERT_EQ(r.code, 0) << r.out;
  std::cout << "resnet18 epoch (" << images << " images, batch " << batch << ", " << threads
            << " threads): GraphNetwork " << ours << " s, PyTorch " << r.out;
}

}  // namespace
}  // namespace mcompress
