#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <optional>

#include "cli.h"
#include "mcompress/core/error.h"
#include "mcompress/core/model_file.h"
#include "mcompress/core/table.h"
#include "mcompress/prune/prune.h"
#include "mcompress/prune/schedule.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::cli {
namespace {

// "NAME=FRACTION" → (NAME, FRACTION).
std::pair<std::string, double> parse_override(const std::string& text) {
  const auto eq = text.rfind('=');
  MCOMPRESS_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < text.size(), ConfigError,
                  "--override expects NAME=FRACTION, got '", text, "'");
  try {
    size_t used = 0;
    const double value = std::stod(text.substr(eq + 1), &used);
    if (used == text.size() - eq - 1) return {text.substr(0, eq), value};
  } catch (const std::logic_error&) {
  }
  throw ConfigError("--override expects NAME=FRACTION, got '" + text + "'");
}

prune::PruneOptions options_from(const po::variables_map& vm) {
  prune::PruneOptions o;
  const bool structured = vm["structured"].as<bool>();
  MCOMPRESS_CHECK(!structured || vm["method"].defaulted(), ConfigError,
                  "give --structured or --method, not both");
  o.method = structured ? prune::PruneMethod::kStructured
                        : prune::parse_prune_method(vm["method"].as<std::string>());
  o.scope = prune::parse_prune_scope(vm["scope"].as<std::string>());
  o.target = vm["target"].as<double>();
  o.schedule = prune::parse_prune_schedule(vm["schedule"].as<std::string>());
  o.round_fraction = vm["round-fraction"].as<double>();
  o.rounds = vm["rounds"].as<int64_t>();
  if (o.round_fraction > 0 && vm["rounds"].defaulted() && o.target < 1 && o.target >= 0) {
    o.rounds = prune::rounds_for_fraction(o.target, o.round_fraction);
  }
  o.gradual.initial_sparsity = vm["initial-sparsity"].as<double>();
  o.gradual.begin_step = vm["begin-step"].as<int64_t>();
  o.gradual.end_step = vm["end-step"].as<int64_t>();
  o.gradual.frequency = vm["frequency"].as<int64_t>();
  if (vm.count("exclude")) o.exclude = vm["exclude"].as<std::vector<std::string>>();
  if (vm.count("override")) {
    for (const auto& text : vm["override"].as<std::vector<std::string>>()) {
      const auto [name, value] = parse_override(text);
      o.overrides[name] = value;
    }
  }
  o.finetune_epochs = vm["finetune-epochs"].as<int64_t>();
  o.finetune.lr = vm["lr"].as<double>();
  o.finetune.batch_size = vm["batch-size"].as<int64_t>();
  o.finetune.optimizer = parse_optimizer(vm["optimizer"].as<std::string>());
  o.finetune.momentum = vm["momentum"].as<double>();
  o.finetune.weight_decay = vm["weight-decay"].as<double>();
  o.finetune.schedule = parse_lr_schedule(vm["lr-schedule"].as<std::string>());
  o.finetune.seed = vm["seed"].as<uint64_t>();
  o.finetune.progress = vm["progress"].as<bool>();
  return o;
}

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
  po::options_description options("prune options");
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("model", po::value<std::string>()->required(), "fp32 model file (.h5)")(
      "out,o", po::value<std::string>()->required(), "output model file (.h5)")(
      "force", po::bool_switch(), "overwrite an existing output file")(
      "method", po::value<std::string>()->default_value("magnitude"),
      "magnitude (unstructured, masks) or structured (remove whole filters / units by L1 norm)")(
      "structured", po::bool_switch(), "same as --method structured")(
      "scope", po::value<std::string>()->default_value("layer"),
      "magnitude: layer (each tensor to its target) or global (one threshold for all)")(
      "target", po::value<double>()->default_value(0.5),
      "magnitude: fraction of weights removed; structured: fraction of each layer's filters "
      "removed")("schedule", po::value<std::string>()->default_value("one-shot"),
                 "one-shot, iterative or gradual")("rounds", po::value<int64_t>()->default_value(5),
                                                   "iterative: pruning + fine-tuning rounds")(
      "round-fraction", po::value<double>()->default_value(0),
      "iterative: remove this fraction of the remaining weights per round (0.2 = lottery ticket; "
      "without --rounds, as many rounds as the target needs); 0 = the same keep ratio every round")(
      "initial-sparsity", po::value<double>()->default_value(0), "gradual: s_i at --begin-step")(
      "begin-step", po::value<int64_t>()->default_value(0), "gradual: first pruning step t0")(
      "end-step", po::value<int64_t>()->default_value(0),
      "gradual: step where the target is reached (0 = at 3/4 of the fine-tuning)")(
      "frequency", po::value<int64_t>()->default_value(100), "gradual: steps between mask updates")(
      "exclude", po::value<std::vector<std::string>>()->multitoken(),
      "tensors left dense: names (0.weight) or first / last")(
      "override", po::value<std::vector<std::string>>()->multitoken(),
      "per-tensor targets: NAME=FRACTION ...")(
      "rewind", po::value<std::string>(),
      "reset surviving weights before fine-tuning: init (the initialisation of the model's seed) "
      "or a model file (e.g. an early-epoch checkpoint)")(
      "finetune-epochs", po::value<int64_t>()->default_value(1),
      "fine-tuning epochs per round (gradual: in all)")(
      "lr", po::value<double>()->default_value(1e-3), "fine-tuning learning rate")(
      "lr-schedule", po::value<std::string>()->default_value("cosine"),
      "fine-tuning lr schedule within each round: constant, step, cosine")(
      "optimizer", po::value<std::string>()->default_value("adam"),
      "fine-tuning optimizer: adam or sgd")("momentum", po::value<double>()->default_value(0.9),
                                            "SGD momentum")(
      "weight-decay", po::value<double>()->default_value(0), "L2 weight decay")(
      "batch-size", po::value<int64_t>()->default_value(128), "fine-tuning batch size")(
      "val-fraction", po::value<double>()->default_value(0.1),
      "fraction of the training data held out to score each round")(
      "seed", po::value<uint64_t>()->default_value(0),
      "seed of the validation split and data order")("progress", po::bool_switch(),
                                                     "show fine-tuning progress on stderr");
  // clang-format on
  add_data_options(options);
  add_threads_option(options);
  add_distributed_options(options);
  po::positional_options_description positional;
  positional.add("model", 1);
  po::variables_map vm;
  if (!parse("prune", "MODEL --out FILE [options]", args, options, vm, &positional)) return 0;

  const prune::PruneOptions o = options_from(vm);
  o.validate();
  const auto in = vm["model"].as<std::string>();
  const auto out = vm["out"].as<std::string>();
  const bool force = vm["force"].as<bool>();
  // Every rank fine-tunes its share; only rank 0 checks the output, reports and writes.
  const bool root = apply_distributed(vm);
  if (root) check_output_path(out, force, {in});
  const int threads = apply_threads(vm);
  const uint64_t seed = vm["seed"].as<uint64_t>();

  Model model = load_model(in);
  o.validate(model.spec());
  const Model original = model.clone();
  std::optional<Model> rewind_to;
  std::string rewind_note;
  if (vm.count("rewind")) {
    const auto what = vm["rewind"].as<std::string>();
    rewind_to = what == "init" ? Model::initialize(model.spec(), model.seed) : load_model(what);
    rewind_note = what == "init" ? "init (seed " + std::to_string(model.seed) + ")" : what;
  }
  const Dataset all = load_data(vm, Split::kTrain);
  const auto [train, val] = split_train_val(all, vm["val-fraction"].as<double>(), seed);
  const Dataset test = load_data(vm, Split::kTest);
  // Before the header line, so that unusable data gets the one error line alone.
  check_dataset(all, model.spec().input_shape, model.spec().num_classes, "fine-tuning");
  check_dataset(test, model.spec().input_shape, model.spec().num_classes, "evaluation");
  if (root) {
    std::cerr << "pruning " << model.spec().name << " (" << model.spec().parameter_count()
              << " parameters): " << describe(o) << "; " << train.size() << " training, "
              << val.size() << " validation examples; " << threads << " threads, seed " << seed
              << (rewind_note.empty() ? "" : "; rewinding to " + rewind_note) << std::endl;
  }

  const auto report = prune::prune_model(model, o, train, val, rewind_to ? &*rewind_to : nullptr);
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
