#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/pipeline/registry.h"
#include "mcompress/prune/prune.h"
#include "mcompress/prune/stages.h"
#include "mcompress/runtime/executor.h"
#include "stage_flags.h"

namespace mcompress::cli {
namespace {

std::string describe(const prune::PruneOptions& o) {
  std::string s = to_string(o.method) + ", target " + format_fixed(o.target, 3);
  if (o.method == prune::PruneMethod::kMagnitude) s += ", " + to_string(o.scope) + " scope";
  s += ", " + to_string(o.schedule);
  if (o.schedule == prune::PruneSchedule::kIterative) {
    s += " (" + std::to_string(o.rounds) + " rounds";
    if (o.round_fraction > 0) s += " of " + format_fixed(o.round_fraction, 2) + " each";
    s += ")";
  }
  s += ", " + std::to_string(o.finetune_epochs) + " fine-tuning epoch" +
       (o.finetune_epochs == 1 ? "" : "s") +
       (o.schedule == prune::PruneSchedule::kIterative ? " per round" : "");
  return s;
}

std::string percent(double fraction) { return fraction < 0 ? "" : format_fixed(fraction * 100, 2); }

void print_rounds(const prune::PruneReport& r) {
  const bool gradual = r.options.schedule == prune::PruneSchedule::kGradual;
  Table t({gradual ? "epoch" : "round", "target", "sparsity", "nonzero_params", "val_acc"});
  t.add_row({"before", "", format_fixed(0, 4), std::to_string(r.nonzero_before),
             percent(r.val_accuracy_before)});
  for (const auto& round : r.rounds) {
    t.add_row({std::to_string(round.round), format_fixed(round.target, 4),
               format_fixed(round.sparsity, 4), std::to_string(round.nonzero),
               percent(round.val_accuracy)});
  }
  std::cout << t.to_text() << "\n";
}

void print_tensors(const prune::PruneReport& r) {
  Table t({"tensor", "shape", "rule", "target", "kept", "total", "density"});
  for (const auto& x : r.tensors) {
    t.add_row({x.name, shape_to_string(x.shape), x.rule, format_fixed(x.target, 3),
               std::to_string(x.kept), std::to_string(x.total), format_fixed(x.density(), 4)});
  }
  t.add_row({"total", "", "", "", std::to_string(r.kept), std::to_string(r.total),
             format_fixed(1 - r.sparsity(), 4)});
  std::cout << t.to_text() << "\n";
}

void print_widths(const prune::PruneReport& r) {
  Table t({"layer", "width_before", "width_after"});
  for (const auto& w : r.widths)
    t.add_row({w.layer, std::to_string(w.before), std::to_string(w.after)});
  std::cout << t.to_text() << "parameters " << r.parameters_before << " -> " << r.parameters_after
            << " ("
            << format_fixed(static_cast<double>(r.parameters_before) /
                                static_cast<double>(r.parameters_after),
                            2)
            << "x fewer)\n\n";
}

}  // namespace

int run_prune(const Args& args) {
  const StageInfo& stage = pipeline::default_registry().find("prune");
  po::options_description options("prune options");
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("model", po::value<std::string>()->required(), "fp32 model file (.h5)")(
      "out,o", po::value<std::string>()->required(), "output model file (.h5)")(
      "force", po::bool_switch(), "overwrite an existing output file")(
      "structured", po::bool_switch(), "same as --method structured");
  add_stage_flags(options, stage);
  options.add_options()("val-fraction", po::value<double>()->default_value(0.1),
                        "fraction of the training data held out to score each round")(
      "seed", po::value<uint64_t>()->default_value(0),
      "seed of the validation split and data order")("progress", po::bool_switch(),
                                                     "show fine-tuning progress on stderr");
  // clang-format on
  add_data_options(options);
  add_threads_option(options);
  add_distributed_options(options);
  po::variables_map vm;
  if (!parse("prune", "MODEL --out FILE [options]", args, options, vm, "model")) return 0;

  // The recipe's prune stage, from the same options.
  YAML::Node given = stage_node(vm, stage);
  if (vm["structured"].as<bool>()) {
    MCOMPRESS_CHECK(!static_cast<const YAML::Node&>(given)["method"].IsDefined(), ConfigError,
                    "give --structured or --method, not both");
    given["method"] = "structured";
  }
  const StageOptions stage_opts = stage_options(given, stage);
  const prune::PruneOptions o = prune::prune_options(stage_opts);
  const std::unique_ptr<Stage> pruning = stage.make(stage_opts);
  const std::string rewind = stage_opts.text("rewind");
  const auto in = vm["model"].as<std::string>();
  const auto out = vm["out"].as<std::string>();
  const bool force = vm["force"].as<bool>();
  // Every rank fine-tunes its share; only rank 0 checks the output, reports and writes.
  const bool root = apply_distributed(vm);
  if (root) check_output_path(out, force, {in});
  const int threads = apply_threads(vm);
  const uint64_t seed = vm["seed"].as<uint64_t>();

  Model model = load_model(in);
  o.validate(model);
  // A rewind file is read by the stage, after the header line; its problems are found here.
  if (rewind != "none" && rewind != "init") (void)load_model(rewind);
  const Model original = model.clone();
  const std::string rewind_note = rewind == "none" ? ""
                                  : rewind == "init"
                                      ? "init (seed " + std::to_string(model.seed) + ")"
                                      : rewind;
  const Dataset all = load_data(vm, Split::kTrain);
  const auto [train, val] = split_train_val(all, vm["val-fraction"].as<double>(), seed);
  const Dataset test = load_data(vm, Split::kTest);
  // Before the header line, so that unusable data gets the one error line alone.
  check_dataset(all, model.input_shape(), model.num_classes(), "fine-tuning");
  check_dataset(test, model.input_shape(), model.num_classes(), "evaluation");
  if (root) {
    std::cerr << "pruning " << model.name() << " (" << model.parameter_count()
              << " parameters): " << describe(o) << "; " << train.size() << " training, "
              << val.size() << " validation examples; " << threads << " threads, seed " << seed
              << (rewind_note.empty() ? "" : "; rewinding to " + rewind_note) << std::endl;
  }

  StageContext ctx{train, val, val, seed, threads, vm["progress"].as<bool>()};
  const StageReport done = pruning->apply(model, ctx);
  const auto& report = std::any_cast<const prune::PruneReport&>(done.detail);
  if (!root) return 0;
  const auto before = runtime::evaluate(runtime::Executor(original), test);
  const auto after = runtime::evaluate(runtime::Executor(model), test);

  auto record = nlohmann::json::parse(report.to_json());
  if (!rewind_note.empty()) record["options"]["rewind"] = rewind_note;
  record["metrics"]["test_accuracy_before"] = before.accuracy;
  record["metrics"]["test_accuracy_after"] = after.accuracy;
  model.history.push_back(record.dump());
  SaveOptions save;
  save.overwrite = force;
  save_model(model, out, save);

  for (const auto& note : report.notes) std::cout << "note: " << note << "\n";
  print_rounds(report);
  if (!report.widths.empty()) print_widths(report);
  print_tensors(report);
  const auto in_bytes = static_cast<double>(std::filesystem::file_size(in));
  const auto out_bytes = static_cast<double>(std::filesystem::file_size(out));
  Table summary({"", "test_acc", "test_loss", "params", "nonzero_params", "file_size"});
  summary.add_row({"before", percent(before.accuracy), format_fixed(before.loss, 4),
                   std::to_string(report.parameters_before), std::to_string(report.nonzero_before),
                   format_bytes(in_bytes)});
  summary.add_row({"after", percent(after.accuracy), format_fixed(after.loss, 4),
                   std::to_string(report.parameters_after), std::to_string(report.nonzero_after),
                   format_bytes(out_bytes)});
  std::cout << summary.to_text() << "sparsity " << format_fixed(report.sparsity(), 4) << " of "
            << report.total << " conv/linear weights; " << format_fixed(report.seconds, 1)
            << "s; saved " << out << std::endl;
  return 0;
}

}  // namespace mcompress::cli
