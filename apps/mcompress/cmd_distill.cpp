#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <optional>

#include "cli.h"
#include "mcompress/core/architecture.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/distill/distill.h"
#include "mcompress/distill/stages.h"
#include "mcompress/pipeline/registry.h"
#include "mcompress/runtime/executor.h"
#include "stage_flags.h"

namespace mcompress::cli {
namespace {

bool has_suffix(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

double test_accuracy(const Model& model, const Dataset& test) {
  runtime::ExecutorOptions eo;
  eo.policy = runtime::KernelPolicy::kInt8;  // as the teacher ran: no timing-dependent choice
  return runtime::evaluate(runtime::Executor(model, eo), test).accuracy;
}

std::string percent(double fraction) { return fraction < 0 ? "" : format_fixed(fraction * 100, 2); }

}  // namespace

int run_distill(const Args& args) {
  const StageInfo& stage = pipeline::default_registry().find("distill");
  po::options_description options("distill options");
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("teacher", po::value<std::string>()->required(),
                        "teacher model file (.h5); fp32, quantized or pruned, run by the runtime")(
      "student", po::value<std::string>()->required(),
      "zoo name (either zoo) or architecture file (.json): a fresh student; model file (.h5): "
      "fine-tune it")("out,o", po::value<std::string>()->required(), "output model file (.h5)")(
      "force", po::bool_switch(), "overwrite an existing output file");
  // --teacher and --student stand for the stage's teacher and student (below).
  add_stage_flags(options, stage, {"teacher", "student"});
  options.add_options()("val-fraction", po::value<double>()->default_value(0.1),
                        "fraction of the training data held out for validation (as train)")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of every random choice")(
      "quiet,q", po::bool_switch(), "no progress output");
  // clang-format on
  add_data_options(options);
  add_threads_option(options);
  add_distributed_options(options);
  po::variables_map vm;
  if (!parse("distill", "--teacher FILE --student NAME|FILE --out FILE [options]", args, options,
             vm)) {
    return 0;
  }
  const auto teacher_path = vm["teacher"].as<std::string>();
  const auto student_arg = vm["student"].as<std::string>();
  // The recipe's distill stage, from the same options. A model file as the student is the
  // stage's current model, taught by the teacher file; otherwise the teacher is the current
  // model and teaches a new student of that architecture.
  const bool student_file = has_suffix(student_arg, ".h5");
  YAML::Node given = stage_node(vm, stage, {"teacher", "student"});
  given["teacher"] = student_file ? teacher_path : "current";
  given["student"] = student_file ? "current" : student_arg;
  const StageOptions stage_opts = stage_options(given, stage);
  const distill::DistillOptions d = distill::distill_options(stage_opts);
  const std::unique_ptr<Stage> distilling = stage.make(stage_opts);
  const uint64_t seed = vm["seed"].as<uint64_t>();
  const bool progress = !vm["quiet"].as<bool>();
  const auto out = vm["out"].as<std::string>();
  const bool force = vm["force"].as<bool>();
  // Every rank trains its share; only rank 0 checks the output, reports and writes.
  const bool root = apply_distributed(vm);
  if (root) check_output_path(out, force, {teacher_path, student_arg});
  const int threads = apply_threads(vm);

  const Model teacher = load_model(teacher_path);
  Model model = student_file ? load_model(student_arg) : teacher.clone();
  // The student as far as the checks and the header need it: the file's model, or a fresh one
  // of the named architecture (either zoo, or an architecture file).
  std::optional<Model> named;
  if (!student_file) named.emplace(initialize_model(resolve_architecture(student_arg), seed));
  const Model& student_arch = student_file ? model : *named;
  try {
    distill::check_compatible(teacher, student_arch);
  } catch (const ModelError& e) {
    throw ModelError("--teacher " + teacher_path + ": " + e.what());
  }
  const Dataset all = load_data(vm, Split::kTrain);
  const auto [train_data, val] = split_train_val(all, vm["val-fraction"].as<double>(), seed);
  const Dataset test = load_data(vm, Split::kTest);
  // Before the header line, so that unusable data gets the one error line alone.
  check_dataset(all, student_arch.input_shape(), student_arch.num_classes(),
                "distillation training");
  check_dataset(test, student_arch.input_shape(), student_arch.num_classes(), "evaluation");
  if (root && progress) {  // --quiet: a failed run prints its error line alone
    std::cerr << "distilling " << teacher.name() << " (" << teacher.parameter_count()
              << " parameters) into " << student_arch.name() << " ("
              << student_arch.parameter_count() << ") on " << train_data.size()
              << " examples, validating on " << val.size() << "; T " << d.temperature << ", alpha "
              << d.alpha << "; " << threads << " threads, seed " << seed << std::endl;
  }

  const double student_before = root && student_file ? test_accuracy(model, test) : -1;
  // A new student's history starts with this run, not with the teacher's (the stage, in a
  // recipe, keeps the pipeline's history before it).
  const auto inherited = static_cast<std::ptrdiff_t>(student_file ? 0 : model.history.size());
  StageContext ctx{train_data, val, val, seed, threads, progress};
  const StageReport done = distilling->apply(model, ctx);
  const auto& report = std::any_cast<const distill::DistillReport&>(done.detail);
  Model& student = model;
  student.history.erase(student.history.begin(), student.history.begin() + inherited);
  if (!root) return 0;
  const double teacher_test = test_accuracy(teacher, test);
  const double student_test = test_accuracy(student, test);

  auto record = nlohmann::json::parse(report.to_json());
  record["metrics"]["teacher_test_accuracy"] = teacher_test;
  record["metrics"]["student_test_accuracy"] = student_test;
  if (student_before >= 0) record["metrics"]["student_test_accuracy_before"] = student_before;
  student.history.push_back(record.dump());
  student.recipe = command_line("distill", args);
  student.seed = seed;
  SaveOptions save;
  save.overwrite = force;
  save_model(student, out, save);

  Table table({"model", "role", "params", "val_acc", "test_acc"});
  table.add_row({teacher.name(), "teacher", std::to_string(report.teacher_parameters),
                 percent(report.teacher_val_accuracy), percent(teacher_test)});
  if (student_before >= 0) {
    table.add_row({student.name(), "student before", std::to_string(report.student_parameters),
                   percent(report.student_val_accuracy_before), percent(student_before)});
  }
  table.add_row({student.name(), "student", std::to_string(report.student_parameters),
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
