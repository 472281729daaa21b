#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/core/zoo.h"
#include "mcompress/distill/distill.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::cli {
namespace {

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// --student: a model file (fine-tuning it, e.g. after pruning), a spec file or a zoo name
// (both freshly initialised from the seed).
Model load_student(const std::string& student, uint64_t seed) {
  if (has_suffix(student, ".h5")) return load_model(student);
  if (has_suffix(student, ".json")) return Model::initialize(read_spec_file(student), seed);
  try {
    return Model::initialize(zoo_spec(student), seed);
  } catch (const ConfigError& e) {
    throw ConfigError(std::string("--student: ") + e.what() +
                      ", or a spec (.json) or model (.h5) file");
  }
}

double test_accuracy(const Model& model, const Dataset& test) {
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kInt8;  // as the teacher ran: no timing-dependent choice
  return runtime::evaluate(runtime::Executor(model, eo), test).accuracy;
}

std::string percent(double fraction) { return fraction < 0 ? "" : format_fixed(fraction * 100, 2); }

}  // namespace

int run_distill(const Args& args) {
  distill::DistillOptions d;
  po::options_description options("distill options");
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("teacher", po::value<std::string>()->required(),
                        "teacher model file (.h5); fp32, quantized or pruned, run by the runtime")(
      "student", po::value<std::string>()->required(),
      "zoo name or spec file (.json): a fresh student; model file (.h5): fine-tune it")(
      "out,o", po::value<std::string>()->required(), "output model file (.h5)")(
      "force", po::bool_switch(), "overwrite an existing output file")(
      "temperature,T", po::value<double>(&d.temperature)->default_value(d.temperature),
      "softmax temperature T > 0 of the soft targets")(
      "alpha", po::value<double>(&d.alpha)->default_value(d.alpha),
      "weight of the soft-target term T²·KL, in [0, 1]; 1 − alpha weighs the cross-entropy")(
      "hint-teacher", po::value<std::string>(&d.hint_teacher)->default_value(""),
      "FitNets hint: teacher activation key (e.g. 18, convnet's penultimate layer; "
      "docs/distillation.md lists them)")(
      "hint-student", po::value<std::string>(&d.hint_student)->default_value(""),
      "FitNets hint: student activation key")(
      "beta", po::value<double>(&d.beta)->default_value(d.beta), "weight of the hint term")(
      "cache-limit-mb", po::value<int64_t>(&d.cache_limit_mb)->default_value(d.cache_limit_mb),
      "memory for cached teacher outputs; above it the teacher runs on every batch")(
      "val-fraction", po::value<double>()->default_value(0.1),
      "fraction of the training data held out for validation (as train)");
  // clang-format on
  add_train_options(options, d.train);
  add_data_options(options);
  add_threads_option(options);
  add_distributed_options(options);
  po::variables_map vm;
  if (!parse("distill", "--teacher FILE --student NAME|FILE --out FILE [options]", args, options,
             vm)) {
    return 0;
  }
  read_train_options(vm, d.train);
  d.validate();
  const auto teacher_path = vm["teacher"].as<std::string>();
  const auto student_arg = vm["student"].as<std::string>();
  const auto out = vm["out"].as<std::string>();
  const bool force = vm["force"].as<bool>();
  // Every rank trains its share; only rank 0 checks the output, reports and writes.
  const bool root = apply_distributed(vm);
  if (root) check_output_path(out, force, {teacher_path, student_arg});
  const int threads = apply_threads(vm);

  Model student = load_student(student_arg, d.train.seed);
  const Model teacher = load_model(teacher_path);
  try {
    distill::check_compatible(teacher, student);
  } catch (const ModelError& e) {
    throw ModelError("--teacher " + teacher_path + ": " + e.what());
  }
  const Dataset all = load_data(vm, Split::kTrain);
  const auto [train_data, val] =
      split_train_val(all, vm["val-fraction"].as<double>(), d.train.seed);
  const Dataset test = load_data(vm, Split::kTest);
  // Before the header line, so that unusable data gets the one error line alone.
  const ArchSpec& spec = student.spec();
  check_dataset(all, spec.input_shape, spec.num_classes, "distillation training");
  check_dataset(test, spec.input_shape, spec.num_classes, "evaluation");
  if (root && d.train.progress) {  // --quiet: a failed run prints its error line alone
    std::cerr << "distilling " << teacher.spec().name << " (" << teacher.spec().parameter_count()
              << " parameters) into " << student.spec().name << " ("
              << student.spec().parameter_count() << ") on " << train_data.size()
              << " examples, validating on " << val.size() << "; T " << d.temperature << ", alpha "
              << d.alpha << "; " << threads << " threads, seed " << d.train.seed << std::endl;
  }

  const double student_before =
      root && has_suffix(student_arg, ".h5") ? test_accuracy(student, test) : -1;
  const auto report = distill::distill_model(student, teacher, d, train_data, val);
  if (!root) return 0;
  const double teacher_test = test_accuracy(teacher, test);
  const double student_test = test_accuracy(student, test);

  auto record = nlohmann::json::parse(report.to_json());
  record["metrics"]["teacher_test_accuracy"] = teacher_test;
  record["metrics"]["student_test_accuracy"] = student_test;
  if (student_before >= 0) record["metrics"]["student_test_accuracy_before"] = student_before;
  student.history.push_back(record.dump());
  student.recipe = command_line("distill", args);
  student.seed = d.train.seed;
  SaveOptions save;
  save.overwrite = force;
  save_model(student, out, save);

  Table table({"model", "role", "params", "val_acc", "test_acc"});
  table.add_row({teacher.spec().name, "teacher", std::to_string(report.teacher_parameters),
                 percent(report.teacher_val_accuracy), percent(teacher_test)});
  if (student_before >= 0) {
    table.add_row({student.spec().name, "student before", std::to_string(report.student_parameters),
                   percent(report.student_val_accuracy_before), percent(student_before)});
  }
  table.add_row({student.spec().name, "student", std::to_string(report.student_parameters),
                 percent(report.student_val_accuracy), percent(student_test)});
  std::cout << table.to_text() << "epochs " << report.train.epochs.size() << " (best "
            << report.train.best_epoch << "), teacher outputs "
            << (report.logits_cached
                    ? "cached (" + format_bytes(static_cast<double>(report.cache_bytes)) + " in " +
                          format_fixed(report.teacher_seconds, 1) + "s)"
                    : std::string("computed per batch"))
            << ", training " << format_fixed(report.train.seconds, 1) << "s; saved " << out
            << std::endl;
  return 0;
}

}  // namespace mcompress::cli
