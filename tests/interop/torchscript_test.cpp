#include "mcompress/interop/torchscript.h"

#include <gtest/gtest.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <set>

#include "mcompress/core/error.h"
#include "mcompress/core/zoo.h"
#include "reference_network.h"
#include "test_support.h"

namespace mcompress {
namespace {

using testing::TempDir;

const std::string kFixtures = std::string(MCOMPRESS_TEST_DATA_DIR) + "/interop/";

// A zoo model with random weights and non-trivial batch-norm statistics (initialisation leaves
// them at 0 and 1, which would hide a mix-up of mean and variance).
Model random_model(const std::string& zoo_name, uint64_t seed) {
  Model model = Model::initialize(zoo_spec(zoo_name), seed);
  torch::manual_seed(seed);
  for (const auto& info : model.tensor_infos()) {
    auto& t = model.tensor(info.name);
    if (info.role == TensorRole::kRunningMean) t.copy_(torch::randn_like(t) * 0.1);
    if (info.role == TensorRole::kRunningVar) t.copy_(torch::rand_like(t) + 0.5);
    if (info.role == TensorRole::kBias) t.copy_(torch::randn_like(t) * 0.1);
  }
  return model;
}

torch::Tensor network_output(const Model& model, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  testing::ReferenceNetwork net(model.spec());
  net->load(model);
  net->eval();
  return net->forward(x);
}

torch::Tensor raw_input(const ArchSpec& spec, int64_t n, uint64_t seed) {
  std::vector<int64_t> shape = spec.input_shape;
  shape.insert(shape.begin(), n);
  torch::manual_seed(seed);
  return torch::rand(shape);
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

class ZooRoundTrip : public ::testing::TestWithParam<std::string> {};

// export -> torch::jit::load and export -> import both compute what our network computes.
// Tolerance: 1e-5 relative to max(1, max |logit|) for the TorchScript module (the same fp32 ops
// in another order); the imported model must be bit-identical (same spec, same tensors).
TEST_P(ZooRoundTrip, ExportImportGivesTheSameOutputs) {
  TempDir dir;
  const Model model = random_model(GetParam(), 7);
  const std::string path = dir.file("model.pt");
  interop::export_torchscript(model, path);

  const torch::Tensor x = raw_input(model.spec(), 4, 3);
  const torch::Tensor expected = network_output(model, x);
  torch::jit::Module module = torch::jit::load(path);
  module.eval();
  torch::Tensor scripted;
  {
    torch::NoGradGuard no_grad;
    scripted = module.forward({x}).toTensor();
  }
  ASSERT_EQ(scripted.sizes(), expected.sizes());
  EXPECT_LE(max_abs(scripted - expected), 1e-5 * std::max(1.0, max_abs(expected)));

  interop::TorchScriptImportOptions options;
  options.name = model.spec().name;
  interop::TorchScriptImportReport report;
  const Model imported = interop::import_torchscript(path, options, &report);
  EXPECT_TRUE(report.normalisation_in_module);
  EXPECT_EQ(imported.spec().to_json_text(), model.spec().to_json_text());
  ASSERT_EQ(imported.tensors().size(), model.tensors().size());
  for (const auto& [name, t] : model.tensors()) {
    EXPECT_TRUE(torch::equal(imported.tensor(name), t)) << name;
  }
  EXPECT_TRUE(torch::equal(network_output(imported, x), expected));
  EXPECT_LE(report.max_abs_difference, 1e-5 * std::max(1.0, report.max_abs_output));
}

std::vector<std::string> zoo_names() {
  std::vector<std::string> names;
  for (const auto& e : zoo_entries()) names.push_back(e.name);
  return names;
}

INSTANTIATE_TEST_SUITE_P(AllZoo, ZooRoundTrip, ::testing::ValuesIn(zoo_names()),
                         [](const auto& info) {
                           std::string name = info.param;
                           for (char& c : name)
                             if (c == '-') c = '_';
                           return name;
                         });

// What the zoo does not cover: a flat input, per-channel normalisation, grouped and bias-free
// convolutions, padded average pooling, max pooling with stride 1, batchnorm1d, a bias-free
// linear layer. Same tolerances as the zoo round trip.
TEST(TorchScriptExport, EveryLayerVariantRoundTrips) {
  const char* specs[] = {
      R"({"name":"flat","input_shape":[6],"num_classes":3,"mean":[0.5],"std":[2.0],"layers":[
        {"type":"linear","out_features":8},{"type":"batchnorm1d","eps":0.001},{"type":"relu"},
        {"type":"dropout","p":0.3},{"type":"linear","out_features":3,"bias":false}]})",
      R"({"name":"rgb","input_shape":[3,12,12],"num_classes":4,"mean":[0.1,0.2,0.3],
        "std":[0.5,0.6,0.7],"layers":[
        {"type":"conv2d","out_channels":6,"kernel_size":3,"padding":1,"groups":3,"bias":false},
        {"type":"avgpool2d","kernel_size":3,"stride":2,"padding":1},
        {"type":"maxpool2d","kernel_size":2,"stride":1},
        {"type":"conv2d","out_channels":8,"kernel_size":3,"stride":2},
        {"type":"adaptive_avgpool2d","output_size":2},{"type":"flatten"},
        {"type":"linear","out_features":4}]})",
  };
  for (const char* text : specs) {
    TempDir dir;
    Model model = Model::initialize(ArchSpec::from_json_text(text), 5);
    for (const auto& info : model.tensor_infos()) {
      if (info.role == TensorRole::kRunningVar) model.tensor(info.name).uniform_(0.5, 1.5);
      if (info.role == TensorRole::kRunningMean) model.tensor(info.name).normal_(0, 0.1);
    }
    SCOPED_TRACE(model.spec().name);
    interop::export_torchscript(model, dir.file("m.pt"));
    const torch::Tensor x = raw_input(model.spec(), 3, 4);
    const torch::Tensor expected = network_output(model, x);
    torch::jit::Module module = torch::jit::load(dir.file("m.pt"));
    module.eval();
    torch::NoGradGuard no_grad;
    const torch::Tensor scripted = module.forward({x}).toTensor();
    ASSERT_EQ(scripted.sizes(), expected.sizes());
    EXPECT_LE(max_abs(scripted - expected), 1e-5 * std::max(1.0, max_abs(expected)));
    interop::TorchScriptImportOptions options;
    options.name = model.spec().name;
    const Model imported = interop::import_torchscript(dir.file("m.pt"), options);
    EXPECT_EQ(imported.spec().to_json_text(), model.spec().to_json_text());
    EXPECT_TRUE(torch::equal(network_output(imported, x), expected));
  }
}

TEST(TorchScriptExport, StateDictKeysAreOurTensorNames) {
  TempDir dir;
  const Model model = random_model("resnet8", 1);
  interop::export_torchscript(model, dir.file("m.pt"));
  const torch::jit::Module module = torch::jit::load(dir.file("m.pt"));
  std::set<std::string> keys, names;
  for (const auto& p : module.named_parameters()) keys.insert(p.name);
  for (const auto& b : module.named_buffers()) keys.insert(b.name);
  for (const auto& info : model.tensor_infos()) names.insert(info.name);
  EXPECT_EQ(keys, names);
  EXPECT_TRUE(keys.count("4.shortcut.1.running_var"));
  EXPECT_EQ(ArchSpec::from_json_text(module.attr("arch").toStringRef()).to_json_text(),
            model.spec().to_json_text());
}

// Pruned entries are exported as zeros, quantized tensors as their dequantized values, and the
// quantization parameters travel in the `quantization` attribute.
TEST(TorchScriptExport, AppliesMasksAndRecordsQuantization) {
  TempDir dir;
  Model model = random_model("mlp-small", 2);
  const std::string name = "1.weight";
  const torch::Tensor mask = torch::rand(model.tensor(name).sizes()) > 0.5;
  model.tensor(name).masked_fill_(mask.logical_not(), 0.0f);
  model.masks[name] = mask;  // set without zeroing the other tensor below, as a stage would
  model.tensor("3.weight").fill_(0.25f);
  model.masks["3.weight"] = torch::zeros(model.tensor("3.weight").sizes(), torch::kBool);
  QuantizedTensor q;
  q.encoding = Encoding::kInt8;
  q.scale = torch::full({model.tensor(name).size(0)}, 0.01f);
  q.zero_point = torch::zeros({model.tensor(name).size(0)}, torch::kInt);
  q.values = (model.tensor(name) / 0.01f).round().to(torch::kChar);
  q.axis = 0;
  model.quant.mode = "int8-dynamic";
  model.quant.tensors[name] = q;
  model.quant.activations["input"] = {0.02, 3, "minmax"};

  interop::export_torchscript(model, dir.file("m.pt"));
  const torch::jit::Module module = torch::jit::load(dir.file("m.pt"));
  torch::Tensor w1, w3;
  for (const auto& p : module.named_parameters()) {
    if (p.name == name) w1 = p.value;
    if (p.name == "3.weight") w3 = p.value;
  }
  ASSERT_TRUE(w1.defined() && w3.defined());
  EXPECT_TRUE(torch::equal(w1, model.tensor(name)));
  EXPECT_EQ(w1.masked_select(mask.logical_not()).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(w3.abs().sum().item<float>(), 0.0f);  // fully masked: zeros, whatever the master

  const auto doc = nlohmann::json::parse(module.attr("quantization").toStringRef());
  EXPECT_EQ(doc["mode"], "int8-dynamic");
  EXPECT_EQ(doc["tensors"][name]["encoding"], "int8");
  EXPECT_EQ(doc["tensors"][name]["axis"], 0);
  EXPECT_EQ(doc["tensors"][name]["scale"].size(), static_cast<size_t>(q.scale.numel()));
  EXPECT_FLOAT_EQ(doc["tensors"][name]["scale"][0].get<float>(), 0.01f);
  EXPECT_EQ(doc["activations"]["input"]["zero_point"], 3);
}

TEST(TorchScriptExport, RefusesToOverwriteUnlessAsked) {
  TempDir dir;
  const Model model = random_model("mlp-small", 0);
  testing::write_bytes(dir.file("m.pt"), "keep me");
  ASSERT_THROWS_WITH(interop::export_torchscript(model, dir.file("m.pt")), IoError, "m.pt");
  EXPECT_EQ(testing::read_bytes(dir.file("m.pt")), "keep me");
  interop::TorchScriptExportOptions o;
  o.overwrite = true;
  interop::export_torchscript(model, dir.file("m.pt"), o);
  EXPECT_NO_THROW(torch::jit::load(dir.file("m.pt")));
  ASSERT_THROWS_WITH(interop::export_torchscript(model, dir.file("no/such/folder/m.pt")), IoError,
                     "does not exist");
}

TEST(TorchScriptImport, NamesAnUnsupportedModuleAndItsPath) {
  interop::TorchScriptImportOptions o;
  o.input_shape = std::vector<int64_t>{4};
  ASSERT_THROWS_WITH(interop::import_torchscript(kFixtures + "gelu.pt", o), ModelError,
                     "gelu.pt: unsupported module 'features.3' of type GELU");
}

TEST(TorchScriptImport, ExplainsWhatATracedModuleLacks) {
  interop::TorchScriptImportOptions o;
  o.input_shape = std::vector<int64_t>{1, 4, 4};
  ASSERT_THROWS_WITH(interop::import_torchscript(kFixtures + "traced.pt", o), ModelError,
                     "module '0' of type Conv2d has no 'padding_mode' setting (traced modules");
}

// A user module chaining its children, flattening with x.view: imported with an implicit
// flatten, and the forward check passes.
TEST(TorchScriptImport, ReadsAUserModuleThatChainsItsChildren) {
  interop::TorchScriptImportOptions o;
  o.input_shape = std::vector<int64_t>{1, 8, 8};
  o.mean = std::vector<double>{0.5};
  o.std = std::vector<double>{0.25};
  interop::TorchScriptImportReport report;
  const Model model = interop::import_torchscript(kFixtures + "chain_net.pt", o, &report);
  EXPECT_EQ(report.layer_sources,
            (std::vector<std::string>{"conv", "relu", "pool", "(implicit)", "fc"}));
  EXPECT_EQ(model.spec().num_classes, 3);
  EXPECT_EQ(model.spec().name, "chain_net");
  EXPECT_DOUBLE_EQ(model.spec().mean[0], 0.5);
  EXPECT_LE(report.max_abs_difference, 1e-4 * std::max(1.0, report.max_abs_output));
  EXPECT_TRUE(model.has_tensor("4.weight"));
}

TEST(TorchScriptImport, RejectsAForwardThatIsNotAChain) {
  interop::TorchScriptImportOptions o;
  o.input_shape = std::vector<int64_t>{4};
  ASSERT_THROWS_WITH(interop::import_torchscript(kFixtures + "not_a_chain.pt", o), ModelError,
                     "not_a_chain.pt: the module's forward is not the chain of its submodules");
}

TEST(TorchScriptImport, RejectsAnInputShapeTheLayersDoNotFit) {
  interop::TorchScriptImportOptions o;
  o.input_shape = std::vector<int64_t>{5};
  ASSERT_THROWS_WITH(interop::import_torchscript(kFixtures + "not_a_chain.pt", o), ModelError,
                     "in_features is 4 but the input has 5 (module 'a', input shape [5]; see "
                     "--input-shape)");
}

TEST(TorchScriptImport, TypedErrorsNameTheFile) {
  TempDir dir;
  ASSERT_THROWS_WITH(interop::import_torchscript(dir.file("missing.pt")), IoError,
                     "missing.pt: no such file");
  testing::write_bytes(dir.file("garbage.pt"), std::string(1000, 'x'));
  ASSERT_THROWS_WITH(interop::import_torchscript(dir.file("garbage.pt")), FormatError,
                     "garbage.pt: not a TorchScript file");
  ASSERT_THROWS_WITH(interop::import_torchscript(kFixtures + "state_dict.pt"), FormatError,
                     "state_dict.pt: not a TorchScript file");
  // A real export cut in half.
  interop::export_torchscript(random_model("mlp-small", 0), dir.file("whole.pt"));
  const std::string bytes = testing::read_bytes(dir.file("whole.pt"));
  testing::write_bytes(dir.file("half.pt"), bytes.substr(0, bytes.size() / 2));
  ASSERT_THROWS_WITH(interop::import_torchscript(dir.file("half.pt")), FormatError,
                     "half.pt: not a TorchScript file");
  ASSERT_THROWS_WITH(interop::import_torchscript(dir.path().string()), IoError,
                     "not a regular file");
}

TEST(TorchScriptImport, RefusesMeanAndStdForAModuleThatNormalisesItself) {
  TempDir dir;
  interop::export_torchscript(random_model("mlp-small", 0), dir.file("m.pt"));
  interop::TorchScriptImportOptions o;
  o.mean = std::vector<double>{0.5};
  o.std = std::vector<double>{0.5};
  ASSERT_THROWS_WITH(interop::import_torchscript(dir.file("m.pt"), o), ConfigError,
                     "normalises its input itself");
}

}  // namespace
}  // namespace mcompress
