#include "mcompress/distill/distill.h"

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <memory>

#include "mcompress/core/error.h"
#include "mcompress/core/trainable_network.h"
#include "mcompress/distill/loss.h"
#include "mcompress/distill/teacher.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::distill {
namespace {

// Accuracy through the deployable runtime with a fixed policy (no timing-dependent choice).
double runtime_accuracy(const Model& model, const Dataset& data) {
  if (data.size() == 0) return -1;
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kInt8;
  return runtime::evaluate(runtime::Executor(model, eo), data).accuracy;
}

// The hint's moving parts: the student activation captured by a forward hook, the adapter that
// maps it onto the teacher's, and the adapter's own optimizer (train() only steps the
// network's parameters).
struct Hint {
  std::string student_key;
  at::Tensor student_features;
  HintAdapter adapter{nullptr};
  std::unique_ptr<torch::optim::Adam> optimizer;
};

}  // namespace

void DistillOptions::validate() const {
  MCOMPRESS_CHECK(temperature > 0 && std::isfinite(temperature), ConfigError,
                  "temperature must be > 0, got ", temperature);
  MCOMPRESS_CHECK(alpha >= 0 && alpha <= 1, ConfigError, "alpha must be in [0, 1], got ", alpha);
  MCOMPRESS_CHECK(beta >= 0 && std::isfinite(beta), ConfigError, "beta must be >= 0, got ", beta);
  MCOMPRESS_CHECK(hint_teacher.empty() == hint_student.empty(), ConfigError,
                  "hint_teacher and hint_student go together; got hint_teacher '", hint_teacher,
                  "' and hint_student '", hint_student, "'");
  MCOMPRESS_CHECK(!has_hint() || beta > 0, ConfigError,
                  "beta must be > 0 with a hint (hint_teacher '", hint_teacher, "', hint_student '",
                  hint_student, "')");
  MCOMPRESS_CHECK(has_hint() || beta == 0, ConfigError,
                  "beta must be 0 without a hint (hint_teacher, hint_student), got ", beta);
  MCOMPRESS_CHECK(cache_limit_mb >= 0, ConfigError, "cache_limit_mb must be >= 0, got ",
                  cache_limit_mb);
  MCOMPRESS_CHECK(teacher_batch_size >= 1, ConfigError, "teacher_batch_size must be >= 1, got ",
                  teacher_batch_size);
  train.validate();
}

void check_compatible(const Model& teacher, const Model& student) {
  MCOMPRESS_CHECK(teacher.num_classes() == student.num_classes(), ModelError, "teacher '",
                  teacher.name(), "' has ", teacher.num_classes(), " classes but student '",
                  student.name(), "' has ", student.num_classes(),
                  "; distillation needs the same classes");
  MCOMPRESS_CHECK(teacher.input_shape() == student.input_shape(), ModelError, "teacher '",
                  teacher.name(), "' takes input ", shape_to_string(teacher.input_shape()),
                  " but student '", student.name(), "' takes ",
                  shape_to_string(student.input_shape()), "; distillation needs the same input");
}

DistillReport distill_model(Model& student, const Model& teacher, const DistillOptions& o,
                            const Dataset& train_data, const Dataset& val) {
  o.validate();
  check_compatible(teacher, student);
  MCOMPRESS_CHECK(student.quant.empty(), ConfigError, "the student is quantized (",
                  student.quant.mode, "); distill into its fp32 original, then quantize");
  check_dataset(train_data, student.input_shape(), student.num_classes(), "distillation training");
  if (val.size() > 0) {
    check_dataset(val, student.input_shape(), student.num_classes(), "distillation validation");
  }
  // Hint keys are checked before anything runs (the teacher's again by TeacherOutputs).
  std::vector<int64_t> student_shape;
  if (o.has_hint()) {
    activation_shape(teacher, o.hint_teacher, "teacher");
    student_shape = activation_shape(student, o.hint_student, "student");
  }

  DistillReport report;
  report.options = o;
  report.teacher_arch = teacher.name();
  report.student_arch = student.name();
  report.teacher_parameters = teacher.parameter_count();
  report.student_parameters = student.parameter_count();
  report.teacher_quant_mode = teacher.quant.mode;
  report.teacher_val_accuracy = runtime_accuracy(teacher, val);
  report.student_val_accuracy_before = runtime_accuracy(student, val);

  Hint hint;
  TeacherOutputOptions to;
  to.hint_key = o.hint_teacher;
  to.cache_limit_bytes = o.cache_limit_mb << 20;
  to.batch_size = o.teacher_batch_size;
  const TeacherOutputs teacher_out(teacher, train_data, to);

  at::Tensor rows;  // training-set rows of the current batch
  TrainHooks hooks;
  hooks.before_batch = [&rows](const at::Tensor& indices) { rows = indices; };
  hooks.loss = [&](const at::Tensor& logits, const at::Tensor&, const at::Tensor& y) {
    auto loss = kd_loss(logits, teacher_out.logits(rows), y, o.temperature, o.alpha);
    if (o.has_hint()) {
      loss = loss + o.beta * hint_loss(hint.adapter->forward(hint.student_features),
                                       teacher_out.features(rows));
    }
    return loss;
  };
  if (!o.has_hint()) {
    report.train = train_model(student, train_data, val, o.train, hooks);
  } else {
    const auto net = make_network(student);
    hint.student_key = o.hint_student;
    torch::manual_seed(o.train.seed);  // the adapter's initial weights
    hint.adapter = HintAdapter(student_shape, teacher_out.feature_shape());
    report.hint_adapter = hint.adapter->kind();
    // Constant lr: the adapter only has to keep up with the student, whose schedule train() owns.
    hint.optimizer = std::make_unique<torch::optim::Adam>(hint.adapter->parameters(),
                                                          torch::optim::AdamOptions(o.train.lr));
    ForwardHooks fh;
    fh.activation = [&hint](const std::string& key, const torch::Tensor& x) {
      if (key == hint.student_key) hint.student_features = x;
      return x;
    };
    net->set_hooks(fh);
    struct ClearHooks {
      TrainableNetwork& net;
      ~ClearHooks() { net.clear_hooks(); }
    } clear_hooks{*net};
    hooks.after_step = [&hint](TrainableNetwork&, int64_t) {
      hint.optimizer->step();
      hint.optimizer->zero_grad();
    };
    report.train = train(*net, train_data, val, o.train, hooks);
    net->clear_hooks();
    net->store(student);
  }

  report.student_val_accuracy = runtime_accuracy(student, val);
  report.logits_cached = teacher_out.logits_cached();
  report.features_cached = teacher_out.features_cached();
  report.cache_bytes = teacher_out.cache_bytes();
  report.teacher_seconds = teacher_out.cache_seconds();
  return report;
}

std::string DistillReport::to_json() const {
  auto doc = nlohmann::json::parse(train.to_json(options.train));
  doc["stage"] = "distill";
  auto& opts = doc["options"];
  opts["temperature"] = options.temperature;
  opts["alpha"] = options.alpha;
  opts["beta"] = options.beta;
  opts["hint_teacher"] = options.hint_teacher;
  opts["hint_student"] = options.hint_student;
  opts["cache_limit_mb"] = options.cache_limit_mb;
  doc["teacher"] = {{"arch", teacher_arch},
                    {"parameters", teacher_parameters},
                    {"quant_mode", teacher_quant_mode}};
  doc["student"] = {{"arch", student_arch}, {"parameters", student_parameters}};
  doc["metrics"] = {{"teacher_val_accuracy", teacher_val_accuracy},
                    {"student_val_accuracy_before", student_val_accuracy_before},
                    {"student_val_accuracy", student_val_accuracy},
                    {"teacher_logits_cached", logits_cached},
                    {"teacher_features_cached", features_cached},
                    {"teacher_cache_bytes", cache_bytes},
                    {"teacher_seconds", teacher_seconds},
                    {"hint_adapter", hint_adapter},
                    {"train_seconds", train.seconds}};
  return doc.dump();
}

}  // namespace mcompress::distill
