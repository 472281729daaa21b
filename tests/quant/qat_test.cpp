// Quantization-aware training: the network's forward hooks and the QAT stage.

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/train.h"
#include "mcompress/core/trainable_network.h"
#include "mcompress/core/zoo.h"
#include "mcompress/quant/qat.h"
#include "mcompress/runtime/executor.h"
#include "reference_network.h"
#include "test_support.h"

namespace mcompress {
namespace {

// Ten separable classes: class c lights rows [4 + 2c, 6 + 2c) of a 28x28 image.
Dataset band_data(int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  Dataset d;
  d.x = torch::rand({n, 1, 28, 28}, gen) * 0.2;
  d.y = torch::arange(n, torch::kLong).remainder(10);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = d.y[i].item<int64_t>();
    d.x[i][0].slice(0, 4 + 2 * c, 6 + 2 * c) += 0.8;
  }
  d.source = "bands";
  return d;
}

// Batchnorm statistics that are not the identity, so folding in the runtime is exercised.
Model model_with_random_stats(const std::string& zoo_name, uint64_t seed) {
  Model model = Model::initialize(zoo_spec(zoo_name), seed);
  torch::manual_seed(seed + 1);
  for (const auto& info : model.tensor_infos()) {
    auto& t = model.tensor(info.name);
    if (info.role == TensorRole::kRunningMean) t.copy_(torch::randn_like(t) * 0.1);
    if (info.role == TensorRole::kRunningVar) t.copy_(torch::rand_like(t) + 0.5);
  }
  return model;
}

// conv/linear weights, in the model's tensor order.
std::vector<std::string> int8_weight_names(const Model& model) {
  std::vector<std::string> out;
  for (const auto& info : model.tensor_infos()) {
    const auto type = model.spec().layers[static_cast<size_t>(info.layer)].type;
    const bool conv_or_linear = type == LayerType::kLinear || type == LayerType::kConv2d ||
                                (type == LayerType::kResidual && info.shape.size() == 4);
    if (info.role == TensorRole::kWeight && conv_or_linear) out.push_back(info.name);
  }
  return out;
}

std::vector<std::string> runtime_keys(const Model& model, const at::Tensor& x) {
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kFp32;
  runtime::Executor exec(model, eo);
  std::vector<std::string> keys;
  exec.run_observed(x, [&](const std::string& key, const at::Tensor&) { keys.push_back(key); });
  return keys;
}

TrainOptions quick(int64_t epochs, double lr) {
  TrainOptions o;
  o.epochs = epochs;
  o.batch_size = 32;
  o.lr = lr;
  o.progress = false;
  return o;
}

class QatTest : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

class QatZooTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

std::string param_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (auto& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return name;
}

TEST_P(QatZooTest, ForwardWithoutHooksIsBitwiseTheTorchModules) {
  // The network QAT trains (GraphNetwork, whose Conv/Gemm kernels take a hooked weight) against
  // torch::nn's modules of the same layers: bitwise the same outputs, gradients and running
  // statistics, in training mode too (batch statistics, dropout with the same seed).
  Model model = model_with_random_stats(GetParam(), 9);
  torch::manual_seed(13);
  const auto x = torch::rand({4, 1, 28, 28});
  for (bool training : {true, false}) {
    const auto a = make_network(model);
    testing::ReferenceNetwork b(model.spec());
    b->load(model);
    a->train(training);
    b->train(training);
    torch::manual_seed(17);
    const auto ya = a->forward(x);
    torch::manual_seed(17);
    const auto yb = b->forward(x);
    ASSERT_TRUE(ya.equal(yb)) << "training " << training;
    ya.square().sum().backward();
    yb.square().sum().backward();
    const auto sa = a->state(), sb = b->state();
    for (const auto& [name, t] : sa) {
      EXPECT_TRUE(t.equal(sb.at(name))) << name;  // running statistics too
      if (t.grad().defined()) {
        EXPECT_TRUE(t.grad().equal(sb.at(name).grad())) << name;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Zoo, QatZooTest,
                         ::testing::Values("mlp", "lenet5", "convnet", "resnet8", "mlp-small",
                                           "lenet5-small"),
                         param_name);

class QatHookKeysTest : public QatZooTest {};

TEST_P(QatHookKeysTest, HooksSeeEveryRuntimeKeyAndWeight) {
  Model model = model_with_random_stats(GetParam(), 7);
  const auto net = make_network(model);
  net->eval();
  torch::manual_seed(11);
  const auto x = torch::rand({3, 1, 28, 28});
  torch::NoGradGuard no_grad;
  const auto plain = net->forward(x);

  std::vector<std::string> keys, weights;
  ForwardHooks hooks;
  hooks.activation = [&](const std::string& key, const torch::Tensor& t) {
    keys.push_back(key);
    return t;
  };
  hooks.weight = [&](const std::string& name, const torch::Tensor& w) {
    weights.push_back(name);
    EXPECT_TRUE(model.tensor(name).equal(w)) << name;
    return w;
  };
  net->set_hooks(hooks);
  const auto hooked = net->forward(x);
  EXPECT_TRUE(hooked.equal(plain));  // identity hooks change nothing
  EXPECT_EQ(keys, runtime_keys(model, x));
  EXPECT_EQ(weights, int8_weight_names(model));

  // A hook's result is what the forward pass continues with.
  net->set_hooks({});
  ForwardHooks zero;
  zero.activation = [](const std::string& key, const torch::Tensor& t) {
    return key == "input" ? torch::zeros_like(t) : t;
  };
  net->set_hooks(zero);
  const auto from_zero = net->forward(x);
  EXPECT_TRUE(from_zero[0].equal(from_zero[1]));
  net->clear_hooks();
  EXPECT_TRUE(net->forward(x).equal(plain));
}

INSTANTIATE_TEST_SUITE_P(Zoo, QatHookKeysTest, ::testing::Values("lenet5", "convnet", "resnet8"),
                         param_name);

TEST_F(QatTest, FakeQuantizedWeightIsTheInt8Grid) {
  torch::manual_seed(1);
  auto w = torch::randn({8, 3, 3, 3});
  w[2].zero_();  // an all-zero channel
  for (auto g : {quant::Granularity::kPerChannel, quant::Granularity::kPerTensor}) {
    const auto fq = quant::fake_quantize_weight(w, g);
    const auto ref = quant::quantize_weight_int8(w, g).dequantize();
    EXPECT_TRUE(fq.allclose(ref, 1e-6, 1e-8)) << (fq - ref).abs().max().item<double>();
  }
  // Straight-through gradient: identity inside the range (every weight is, symmetric max).
  auto v = torch::randn({4, 5}).requires_grad_(true);
  quant::fake_quantize_weight(v, quant::Granularity::kPerChannel).mul(3).sum().backward();
  EXPECT_TRUE(v.grad().equal(torch::full({4, 5}, 3.0f)));
}

TEST_F(QatTest, GradientFlowsThroughFakeQuantization) {
  Model model = Model::initialize(zoo_spec("resnet8"), 2);
  const auto net = make_network(model);
  quant::QatFakeQuant fq(quant::Granularity::kPerChannel, 0.01);
  net->set_hooks(fq.hooks(*net));
  const auto data = band_data(16, 3);
  net->train();
  torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1));
  sgd.zero_grad();
  torch::cross_entropy_loss(net->forward(data.x), data.y).backward();
  const auto before = net->state();
  std::map<std::string, torch::Tensor> saved;
  for (const auto& [name, t] : before) saved[name] = t.detach().clone();
  for (const auto& name : int8_weight_names(model)) {
    const auto& grad = before.at(name).grad();
    ASSERT_TRUE(grad.defined()) << name;
    EXPECT_GT(grad.abs().sum().item<double>(), 0) << name;
  }
  sgd.step();
  for (const auto& name : int8_weight_names(model)) {
    EXPECT_FALSE(net->state().at(name).equal(saved.at(name))) << name << " did not change";
  }
  // Every runtime key got a range from the first batch; eval-mode passes leave them alone.
  const auto keys = runtime_keys(model, data.x);
  const auto ranges = fq.qparams();
  EXPECT_EQ(ranges.size(), std::set<std::string>(keys.begin(), keys.end()).size());
  for (const auto& key : keys) EXPECT_EQ(ranges.count(key), 1u) << key;
  net->eval();
  {
    torch::NoGradGuard no_grad;
    net->forward(data.x * 5);
  }
  for (const auto& [key, q] : fq.qparams()) EXPECT_EQ(q.scale, ranges.at(key).scale) << key;
}

TEST_F(QatTest, MovingAverageRangesAndQParams) {
  const auto net = make_network(Model::initialize(zoo_spec("mlp-small"), 0));
  quant::QatFakeQuant fq(quant::Granularity::kPerChannel, 0.5);
  ForwardHooks h = fq.hooks(*net);
  net->train();
  const auto a = torch::tensor({-1.0f, 3.0f});
  const auto out = h.activation("k", a);
  const auto& r = fq.ranges().at("k");
  EXPECT_DOUBLE_EQ(r.lo, -1.0);
  EXPECT_DOUBLE_EQ(r.hi, 3.0);
  EXPECT_DOUBLE_EQ(r.scale, 4.0 / 255);
  EXPECT_EQ(r.zero_point, 64);  // round(1 / (4/255)) = round(63.75)
  EXPECT_TRUE(out.allclose(a, 0, r.scale));
  h.activation("k", torch::tensor({1.0f, 5.0f}));  // lo: -1 + 0.5·(1 − −1) = 0; hi: 4
  EXPECT_DOUBLE_EQ(fq.ranges().at("k").lo, 0.0);
  EXPECT_DOUBLE_EQ(fq.ranges().at("k").hi, 4.0);
  EXPECT_EQ(fq.qparams().at("k").zero_point, 0);
  EXPECT_EQ(fq.qparams().at("k").observer, "qat-moving-average");
  fq.set_frozen(true);
  const auto clipped = h.activation("k", torch::tensor({9.0f}));  // clipped to the range
  EXPECT_DOUBLE_EQ(fq.ranges().at("k").hi, 4.0);
  EXPECT_NEAR(clipped.item<double>(), 4.0, 1e-6);
}

TEST_F(QatTest, QatModelReachesInt8Accuracy) {
  const auto data = band_data(400, 1);
  const auto val = band_data(200, 2);
  Model model = Model::initialize(zoo_spec("lenet5-small"), 0);
  train_model(model, data, val, quick(2, 3e-3));

  quant::QatOptions o;
  o.train.batch_size = 32;
  o.train.progress = false;
  o.calib_batches = 4;
  const auto report = quant::qat_model(model, o, data, val);
  EXPECT_EQ(report.mode, "qat");
  EXPECT_EQ(report.observer, "qat-moving-average");
  EXPECT_EQ(report.tensors.size(), int8_weight_names(model).size());
  for (const auto& w : report.warnings) {
    // Every key must get its range from QAT itself (the only other warning says the
    // calibrated start was kept, which this separable problem allows).
    EXPECT_EQ(w.find("without QAT ranges"), std::string::npos) << w;
  }
  EXPECT_EQ(model.quant.mode, "int8-static");
  for (const auto& name : int8_weight_names(model)) {
    ASSERT_EQ(model.quant.tensors.count(name), 1u) << name;
    const auto& q = model.quant.tensors.at(name);
    EXPECT_EQ(q.encoding, Encoding::kInt8);
    EXPECT_EQ(q.axis, 0);
    EXPECT_TRUE(model.tensor(name).equal(q.dequantize())) << name;
  }
  for (const auto& key : runtime_keys(model, val.x.slice(0, 0, 2))) {
    ASSERT_EQ(model.quant.activations.count(key), 1u) << key;
    EXPECT_EQ(model.quant.activations.at(key).observer, "qat-moving-average");
  }
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kInt8;
  runtime::Executor exec(model, eo);
  EXPECT_GT(exec.int8_layers(), 0);
  EXPECT_GE(runtime::evaluate(exec, val).accuracy, 0.9);
}

TEST_F(QatTest, QatModelConvertsResidualNetworkPerTensor) {
  const auto data = band_data(64, 4);
  Model model = Model::initialize(zoo_spec("resnet8"), 1);
  quant::QatOptions o;
  o.train = quick(1, 1e-3);
  o.granularity = quant::Granularity::kPerTensor;
  o.calib_batches = 1;
  o.calib_batch_size = 32;
  quant::qat_model(model, o, data, Dataset{});
  EXPECT_EQ(model.quant.mode, "int8-static");
  EXPECT_EQ(model.quant.tensors.at("3.conv1.weight").axis, -1);
  const auto keys = runtime_keys(model, data.x.slice(0, 0, 2));
  EXPECT_EQ(keys.size(), model.quant.activations.size());
  for (const auto& key : keys) EXPECT_EQ(model.quant.activations.count(key), 1u) << key;
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kInt8;
  runtime::Executor exec(model, eo);
  EXPECT_GT(exec.int8_layers(), 0);
  EXPECT_EQ(exec.run(data.x.slice(0, 0, 4)).sizes(), (std::vector<int64_t>{4, 10}));
}

TEST_F(QatTest, FrozenObserversKeepTheCalibratedRanges) {
  const auto data = band_data(64, 5);
  Model model = Model::initialize(zoo_spec("mlp-small"), 1);
  quant::QatOptions o;
  o.train = quick(1, 1e-3);
  o.freeze_observers_epoch = 0;
  o.calib_batches = 2;
  o.calib_batch_size = 32;
  const auto calibrated = quant::calibrate(model, data, o.observer, 2, 32);
  quant::qat_model(model, o, data, Dataset{});
  ASSERT_EQ(model.quant.activations.size(), calibrated.size());
  for (const auto& [key, q] : calibrated) {
    EXPECT_NEAR(model.quant.activations.at(key).scale, q.scale, 1e-9 * q.scale) << key;
    EXPECT_EQ(model.quant.activations.at(key).zero_point, q.zero_point) << key;
  }
}

TEST_F(QatTest, ValidateNamesTheOption) {
  quant::QatOptions ok;
  EXPECT_NO_THROW(ok.validate());
  EXPECT_EQ(ok.train.epochs, 2);
  EXPECT_DOUBLE_EQ(ok.train.lr, 1e-4);
  EXPECT_EQ(ok.granularity, quant::Granularity::kPerChannel);
  {
    auto o = ok;
    o.train.epochs = 0;
    ASSERT_THROWS_WITH(o.validate(), ConfigError, "epochs must be >= 1");
  }
  {
    auto o = ok;
    o.observer.averaging_constant = 0;
    ASSERT_THROWS_WITH(o.validate(), ConfigError, "averaging_constant");
  }
  {
    auto o = ok;
    o.freeze_observers_epoch = -2;
    ASSERT_THROWS_WITH(o.validate(), ConfigError, "freeze_observers_epoch must be >= 0");
  }
  {
    auto o = ok;
    o.calib_batches = 0;
    ASSERT_THROWS_WITH(o.validate(), ConfigError, "calib_batches must be >= 1");
  }
  Model model = Model::initialize(zoo_spec("mlp-small"), 1);
  model.quant.mode = "fp16";
  ASSERT_THROWS_WITH(quant::qat_model(model, ok, band_data(8, 1), Dataset{}), ConfigError,
                     "already quantized");
}

}  // namespace
}  // namespace mcompress
