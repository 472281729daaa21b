#include "mcompress/quant/stages.h"

#include "mcompress/core/error.h"
#include "mcompress/quant/codebook.h"
#include "mcompress/quant/qat.h"
#include "mcompress/quant/quantize.h"

namespace mcompress::quant {
namespace {

class QuantizeStage : public Stage {
 public:
  explicit QuantizeStage(const StageOptions& o) : resolved_(o.resolved()) {
    const std::string mode =
        o.choice("mode", {"fp16", "bf16", "int8-dynamic", "int8-static", "qat", "codebook"});
    qat_ = mode == "qat";
    codebook_ = mode == "codebook";
    options_.mode = qat_ || codebook_ ? QuantMode::kInt8Static : parse_quant_mode(mode);
    const std::string observer = o.choice(
        "observer", {"minmax", "moving-average-minmax", "percentile", "entropy", "mse", "compare"});
    options_.compare_observers = observer == "compare";
    if (!options_.compare_observers) options_.observer.kind = parse_observer(observer);
    options_.observer.percentile = o.number("percentile", 50, 100);
    options_.granularity =
        o.flag("per_tensor") ? Granularity::kPerTensor : Granularity::kPerChannel;
    options_.half_fallback_bf16 = o.choice("fp16_fallback", {"fp32", "bf16"}) == "bf16";
    options_.max_accuracy_drop = o.number("max_accuracy_drop", -1, 100);
    qat_options_.train.epochs = o.integer("epochs", codebook_ ? 0 : 1, 1000);
    qat_options_.train.lr = o.number("lr", 1e-8, 10);
    qat_options_.train.batch_size = o.integer("batch_size", 1, 1 << 16);
    qat_options_.granularity = options_.granularity;
    codebook_options_.bits = o.integer("bits", 2, 8);
    codebook_options_.train.epochs = qat_options_.train.epochs;
    codebook_options_.train.lr = qat_options_.train.lr;
    codebook_options_.train.batch_size = qat_options_.train.batch_size;
    if (codebook_) qat_options_.train.epochs = 1;  // unused; 0 would not validate
    o.validate([&] {
      options_.validate();
      qat_options_.validate();
      codebook_options_.validate();
    });
  }

  std::string cannot_follow(const ModelTraits& traits) const override {
    if (traits.quant_mode.empty()) return "";
    return "the model is already quantized (" + traits.quant_mode +
           "); quantize once, after the stages that change weights";
  }
  void update(ModelTraits& traits) const override {
    traits.quant_mode = qat_ ? "int8-static" : codebook_ ? "codebook" : to_string(options_.mode);
  }

  StageReport apply(Model& model, const StageContext& ctx) override {
    QuantizeOptions q = options_;
    q.calib_batch_size = std::max<int64_t>(1, ctx.calib_batch_size);
    q.calib_batches =
        std::max<int64_t>(1, (ctx.calib.size() + q.calib_batch_size - 1) / q.calib_batch_size);
    QuantizeReport report;
    if (qat_) {
      QatOptions qo = qat_options_;
      qo.train.seed = ctx.seed;
      qo.train.progress = ctx.progress;
      qo.calib_batches = q.calib_batches;
      qo.calib_batch_size = q.calib_batch_size;
      report = qat_model(model, qo, ctx.train, ctx.val);
    } else if (codebook_) {
      CodebookOptions co = codebook_options_;
      co.train.seed = ctx.seed;
      co.train.progress = ctx.progress;
      report = codebook_model(model, co, ctx.train, ctx.val);
    } else {
      report = quantize_model(model, q, ctx.calib, ctx.val);
    }
    StageReport out;
    out.options = resolved_;
    out.metrics = nlohmann::json::parse(report.to_json());
    out.warnings = report.warnings;
    out.detail = std::move(report);
    return out;
  }

 private:
  nlohmann::json resolved_;
  bool qat_ = false;
  bool codebook_ = false;
  QuantizeOptions options_;
  QatOptions qat_options_;
  CodebookOptions codebook_options_;
};

}  // namespace

void register_stages(StageRegistry& registry) {
  registry.add(
      {"quantize",
       "fp16/bf16 storage, int8 dynamic, int8 static (calibrated), quantization-aware training, "
       "or weight sharing (k-means codebook, fine-tuned)",
       {{"mode", "int8-static", "fp16, bf16, int8-dynamic, int8-static, qat or codebook"},
        {"observer", "minmax",
         "int8-static activation ranges: minmax, moving-average-minmax, percentile, entropy, mse, "
         "or compare (each, keep the best on validation)"},
        {"percentile", "99.99",
         "percentile observer: percentage of values kept in range, [50, 100]"},
        {"per_tensor", "false", "int8 weights: one scale per tensor instead of per output channel"},
        {"fp16_fallback", "fp32",
         "fp16: encoding of tensors beyond the float16 range: fp32 or bf16"},
        {"max_accuracy_drop", "-1",
         "int8: keep the most sensitive layers fp32 until the validation drop is within this many "
         "points (< 0: off)"},
        {"bits", "4",
         "codebook: bits per code, 2 to 8 (at most 2^bits shared values per weight tensor)"},
        {"epochs", "2",
         "qat and codebook: fine-tuning epochs (codebook: 0 keeps the k-means values)"},
        {"lr", "1e-4", "qat and codebook: learning rate (Adam, cosine)"},
        {"batch_size", "128", "qat and codebook: batch size"}},
       [](const StageOptions& o) { return std::make_unique<QuantizeStage>(o); }});
}

}  // namespace mcompress::quant
