// Weight sharing: k-means codebooks, the weight tying of fine-tuning, and the codebook mode on a
// trained model (masks kept, file round trip).

#include <torch/torch.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/train.h"
#include "mcompress/core/zoo.h"
#include "mcompress/quant/codebook.h"
#include "mcompress/quant/quantize.h"
#include "mcompress/runtime/executor.h"
#include "test_support.h"

namespace mcompress {
namespace {

using testing::block_images;
using testing::TempDir;

class CodebookTest : public ::testing::Test {
 protected:
  void SetUp() override { at::set_num_threads(1); }
};

std::set<float> distinct(const at::Tensor& t) {
  const at::Tensor flat = t.contiguous().reshape({-1});
  return {flat.data_ptr<float>(), flat.data_ptr<float>() + flat.numel()};
}

TEST_F(CodebookTest, KMeansFixedPointWithAtMostTwoToTheBitsValues) {
  torch::manual_seed(3);
  const at::Tensor w = torch::randn({64, 100});
  for (int64_t bits : {2, 3, 5}) {
    SCOPED_TRACE(bits);
    const QuantizedTensor q = quant::share_weights(w, bits);
    EXPECT_EQ(q.encoding, Encoding::kCodebook);
    EXPECT_EQ(q.bits, bits);
    EXPECT_EQ(q.values.scalar_type(), at::kByte);
    EXPECT_EQ(q.values.sizes(), w.sizes());
    ASSERT_LE(q.codebook.numel(), int64_t{1} << bits);
    EXPECT_GE(q.codebook.numel(), (int64_t{1} << bits) - 1);  // no zeros: every code learned
    EXPECT_LT(q.values.max().item<int64_t>(), q.codebook.numel());
    // Lloyd's fixed point: every weight has the nearest shared value, and every shared value
    // is its cluster's mean (to float rounding of a mean over ~1000 values).
    const at::Tensor codes = q.values.reshape({-1}).to(at::kLong);
    const at::Tensor flat = w.reshape({-1});
    const at::Tensor distance = (flat.unsqueeze(1) - q.codebook.unsqueeze(0)).abs();
    const at::Tensor own = distance.gather(1, codes.unsqueeze(1)).squeeze(1);
    EXPECT_TRUE(own.le(std::get<0>(distance.min(1))).all().item<bool>());
    for (int64_t k = 0; k < q.codebook.numel(); ++k) {
      const at::Tensor members = flat.masked_select(codes.eq(k));
      ASSERT_GT(members.numel(), 0) << "code " << k << " is unused";
      EXPECT_NEAR(members.mean().item<float>(), q.codebook[k].item<float>(), 1e-5) << k;
    }
    EXPECT_LE(distinct(q.dequantize()).size(), size_t{1} << bits);
  }
}

TEST_F(CodebookTest, LinearInitialisationKeepsTheExtremes) {
  // One large weight among small ones: k-means from linear initialisation keeps a shared
  // value for it (density-based initialisation would spend every code on the crowd).
  torch::manual_seed(4);
  at::Tensor w = torch::randn({1000}) * 0.01;
  w[17] = 5.0f;
  const QuantizedTensor q = quant::share_weights(w, 3);
  EXPECT_FLOAT_EQ(q.dequantize()[17].item<float>(), 5.0f);
}

TEST_F(CodebookTest, ZerosKeepCodeZeroAndNonZerosNeverBecomeZero) {
  torch::manual_seed(5);
  const at::Tensor mask = torch::rand({50, 40}).lt(0.1);
  const at::Tensor w = torch::randn({50, 40}) * mask;
  const QuantizedTensor q = quant::share_weights(w, 2);
  ASSERT_EQ(q.codebook.numel(), 4);  // 0.0 and three learned values
  EXPECT_EQ(q.codebook[0].item<float>(), 0.0f);
  EXPECT_TRUE(q.values.eq(0).equal(mask.logical_not()));
  EXPECT_TRUE(q.dequantize().ne(0).equal(mask));
  // One bit: 0.0 and a single learned value, the mean of the non-zeros (its k-means optimum).
  const at::Tensor positive = w.abs();
  const QuantizedTensor one = quant::share_weights(positive, 1);
  ASSERT_EQ(one.codebook.numel(), 2);
  EXPECT_EQ(one.codebook[0].item<float>(), 0.0f);
  EXPECT_NEAR(one.codebook[1].item<float>(), positive.masked_select(mask).mean().item<float>(),
              1e-6);
  EXPECT_TRUE(one.values.eq(1).equal(mask));
}

TEST_F(CodebookTest, FewDistinctValuesAreKeptExactlyAndResultsAreDeterministic) {
  const at::Tensor w = torch::tensor({0.5f, -1.25f, 0.5f, 3.0f, 0.0f, -1.25f, 7.5f});
  const QuantizedTensor q = quant::share_weights(w, 3);
  EXPECT_TRUE(q.dequantize().equal(w));
  torch::manual_seed(6);
  const at::Tensor r = torch::randn({300, 7});
  const QuantizedTensor a = quant::share_weights(r, 4), b = quant::share_weights(r, 4);
  EXPECT_TRUE(a.values.equal(b.values));
  EXPECT_TRUE(a.codebook.equal(b.codebook));
}

TEST_F(CodebookTest, TieWeightsMovesEachSharedValueToItsClusterMean) {
  torch::manual_seed(7);
  at::Tensor w = torch::randn({20, 30}) * torch::rand({20, 30}).lt(0.5);
  QuantizedTensor q = quant::share_weights(w, 3);
  at::Tensor tied = q.dequantize();
  // What an optimizer step does: every weight moves a little, pruned ones too.
  const at::Tensor step = torch::randn_like(tied) * 0.01;
  const at::Tensor moved = tied + step;
  at::Tensor weight = moved.clone();
  quant::tie_weights(weight, q);
  const at::Tensor codes = q.values.reshape({-1}).to(at::kLong);
  EXPECT_EQ(q.codebook[0].item<float>(), 0.0f);  // the pruned entries' value stays 0.0
  for (int64_t k = 1; k < q.codebook.numel(); ++k) {
    const at::Tensor members = moved.reshape({-1}).masked_select(codes.eq(k));
    EXPECT_NEAR(q.codebook[k].item<float>(), members.mean().item<float>(), 1e-6) << k;
  }
  EXPECT_TRUE(weight.equal(q.dequantize()));
}

TEST_F(CodebookTest, OptionsAreValidated) {
  quant::CodebookOptions o;
  o.bits = 1;
  ASSERT_THROWS_WITH(o.validate(), ConfigError, "codebook bits must be 2 to 8, got 1");
  o.bits = 9;
  ASSERT_THROWS_WITH(o.validate(), ConfigError, "got 9");
  o.bits = 4;
  o.train.epochs = 0;
  EXPECT_NO_THROW(o.validate());
  o.train.epochs = 1;
  o.train.lr = -1;
  EXPECT_THROW(o.validate(), ConfigError);
}

// A trained, pruned lenet5-small on separable images: the whole mode, then the file.
TEST_F(CodebookTest, CodebookModelKeepsMasksAccuracyAndRoundTripsThroughTheFile) {
  const Dataset train = block_images(512, 1), val = block_images(256, 2);
  Model model = testing::quickly_trained("lenet5-small", train, val);
  // Prune half of each conv/linear weight by magnitude, as the pruning stage would.
  std::vector<std::string> weights;
  for (const TensorInfo& info : model.tensor_infos()) {
    if (info.role != TensorRole::kWeight || info.shape.size() < 2) continue;
    weights.push_back(info.name);
    const at::Tensor magnitude = model.tensor(info.name).abs();
    model.set_mask(info.name, magnitude.gt(magnitude.median()));
  }
  const std::map<std::string, at::Tensor> masks = model.masks;
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kFp32;
  const double before = runtime::evaluate(runtime::Executor(model, eo), val).accuracy;

  quant::CodebookOptions o;
  o.bits = 3;
  o.train.epochs = 1;
  o.train.batch_size = 32;
  o.train.lr = 1e-3;
  o.train.progress = false;
  const quant::QuantizeReport report = quant::codebook_model(model, o, train, val);
  EXPECT_EQ(report.mode, "codebook");
  EXPECT_EQ(report.tensors.size(), weights.size());
  EXPECT_EQ(report.metrics.at("bits"), 3.0);
  EXPECT_GE(report.metrics.at("val_accuracy_finetuned"), report.metrics.at("val_accuracy_kmeans"));
  EXPECT_EQ(model.quant.mode, "codebook");
  for (const std::string& name : weights) {
    SCOPED_TRACE(name);
    const QuantizedTensor& q = model.quant.tensors.at(name);
    EXPECT_LE(q.codebook.numel(), 8);
    EXPECT_TRUE(model.tensor(name).equal(q.dequantize()));
    EXPECT_TRUE(model.tensor(name).ne(0).equal(masks.at(name)));  // the mask survived
  }
  EXPECT_EQ(model.quant.tensors.count("0.bias"), 0u);  // biases stay fp32 (fine-tuned)
  const double after = runtime::evaluate(runtime::Executor(model, eo), val).accuracy;
  // 3 bits on a separable problem: within 2 points of the pruned fp32 model.
  EXPECT_GE(after, before - 0.02);

  TempDir dir;
  const std::string path = dir.file("cb.h5");
  save_model(model, path);
  const Model loaded = load_model(path);
  EXPECT_EQ(loaded.quant.mode, "codebook");
  for (const std::string& name : weights) {
    SCOPED_TRACE(name);
    const QuantizedTensor& q = loaded.quant.tensors.at(name);
    EXPECT_EQ(q.encoding, Encoding::kCodebook);
    EXPECT_EQ(q.bits, 3);
    EXPECT_TRUE(q.values.equal(model.quant.tensors.at(name).values));
    EXPECT_TRUE(q.codebook.equal(model.quant.tensors.at(name).codebook));
    EXPECT_TRUE(loaded.tensor(name).equal(model.tensor(name)));
    EXPECT_TRUE(loaded.masks.at(name).equal(masks.at(name)));
  }
  // The same model stored int8 takes more room than 3-bit codes.
  Model int8 = loaded.clone();
  int8.quant = {};
  quant::QuantizeOptions qo;
  qo.mode = quant::QuantMode::kInt8Dynamic;
  quant::quantize_model(int8, qo, train, val);
  save_model(int8, dir.file("int8.h5"));
  EXPECT_LT(std::filesystem::file_size(path), std::filesystem::file_size(dir.file("int8.h5")));

  ASSERT_THROWS_WITH(quant::codebook_model(model, o, train, val), ConfigError,
                     "the model is already quantized (codebook)");
  Model fresh = Model::initialize(zoo_spec("lenet5-small"), 0);
  ASSERT_THROWS_WITH(quant::codebook_model(fresh, o, Dataset{}, val), DataError,
                     "codebook fine-tuning needs training data");
}

}  // namespace
}  // namespace mcompress
