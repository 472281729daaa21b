#include "mcompress/distill/stages.h"

#include <nlohmann/json.hpp>

#include <optional>

#include "mcompress/core/architecture.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/stage_training.h"
#include "mcompress/distill/distill.h"

namespace mcompress::distill {

DistillOptions distill_options(const StageOptions& o) {
  DistillOptions d;
  d.temperature = o.number("temperature", 1e-6, 1000);
  d.alpha = o.number("alpha", 0, 1);
  d.train.epochs = o.integer("epochs", 1, 10000);
  read_training_options(o, d.train);
  d.train.step_size = o.integer("step_size", 1);
  d.train.gamma = o.number("gamma", 0, 1);
  d.train.early_stop_patience = o.integer("early_stop", 0);
  d.hint_teacher = o.text("hint_teacher");
  d.hint_student = o.text("hint_student");
  d.beta = o.number("beta", 0, 1e6);
  d.cache_limit_mb = o.integer("cache_limit_mb", 0);
  o.validate([&] { d.validate(); });
  return d;
}

namespace {

constexpr const char* kCurrent = "current";

class DistillStage : public Stage {
 public:
  explicit DistillStage(const StageOptions& o) {
    teacher_ = o.text("teacher");
    student_ = o.text("student");
    if (student_ != kCurrent) {
      try {
        (void)resolve_architecture(student_);  // a bad name fails with the recipe, not later
      } catch (const Error& e) {
        o.fail("student", e.what());
      }
    }
    options_ = distill_options(o);
  }

  std::string cannot_follow(const ModelTraits& traits) const override {
    if (student_ == kCurrent && !traits.quant_mode.empty()) {
      return "distilling into the current model would change weights whose " + traits.quant_mode +
             " encoding is already decided; distill before quantize, or "
             "into a new student";
    }
    return "";
  }
  void update(ModelTraits& traits) const override {
    if (student_ != kCurrent) traits = ModelTraits{};  // a fresh fp32 student
  }

  StageReport apply(Model& model, const StageContext& ctx) override {
    const Model teacher = teacher_ == kCurrent ? model.clone() : load_model(teacher_);
    std::optional<Model> fresh;
    if (student_ != kCurrent)
      fresh.emplace(initialize_model(resolve_architecture(student_), ctx.seed));
    Model& student = fresh ? *fresh : model;
    DistillOptions o = options_;
    o.train.seed = ctx.seed;
    o.train.progress = ctx.progress;
    DistillReport report = distill_model(student, teacher, o, ctx.train, ctx.val);
    if (fresh) {
      // The student's provenance starts with the teacher's: how the pipeline got here.
      fresh->history.insert(fresh->history.begin(), model.history.begin(), model.history.end());
      fresh->recipe = model.recipe;
      fresh->seed = model.seed;
      model = std::move(*fresh);
    }
    return report_with_metrics(std::move(report));
  }

 private:
  std::string teacher_, student_;
  DistillOptions options_;
};

}  // namespace

void register_stages(StageRegistry& registry) {
  registry.add(
      {"distill",
       "teacher-student training (Hinton et al.): the current model teaches a new student, or "
       "a teacher file teaches the current model",
       {{"student", "current",
         "zoo name or spec file of a new student, or current (self-distillation)"},
        {"teacher", "current", "model file, or current (the model the pipeline has so far)"},
        {"temperature", "1", "softmax temperature T, > 0"},
        {"alpha", "0.5", "weight of the soft-target term, [0, 1]"},
        {"epochs", "10", "training epochs of the student"},
        {"lr", "1e-3", "peak learning rate"},
        {"batch_size", "128", "batch size"},
        {"optimizer", "adam", "adam or sgd"},
        {"momentum", "0.9", "SGD momentum, [0, 1]"},
        {"weight_decay", "0", "L2 weight decay, [0, 1]"},
        {"lr_schedule", "cosine", "learning-rate schedule: constant, step or cosine"},
        {"step_size", "3", "step schedule: epochs between lr drops"},
        {"gamma", "0.1", "step schedule: lr factor, [0, 1]"},
        {"early_stop", "0", "stop after N epochs without a better validation accuracy (0: off)"},
        {"hint_teacher", "\"\"",
         "FitNets hint: teacher activation key (e.g. 18, convnet's penultimate layer; "
         "docs/distillation.md lists them), or empty"},
        {"hint_student", "\"\"", "FitNets hint: student activation key"},
        {"beta", "0", "weight of the hint term"},
        {"cache_limit_mb", "256",
         "memory for cached teacher outputs; above it the teacher runs on every batch"}},
       [](const StageOptions& o) { return std::make_unique<DistillStage>(o); }});
}

}  // namespace mcompress::distill
