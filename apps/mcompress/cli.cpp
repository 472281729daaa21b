#include "cli.h"

#include "mcompress/core/atomic_file.h"

#include <ATen/Parallel.h>

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <iostream>
#include <thread>

#include "mcompress/core/distributed.h"
#include "mcompress/core/error.h"
#include "mcompress/core/table.h"

namespace mcompress::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"zoo", "list the built-in architectures with parameter counts", run_zoo},
      {"ops", "list the ops of graph models (the op table), with attributes and defaults", run_ops},
      {"train", "train a model from the zoo or a spec file", run_train},
      {"eval", "accuracy, loss and latency of a model file (deployable runtime)", run_eval},
      {"inspect", "per-tensor storage table of a model file", run_inspect},
      {"convert", "re-save a model file: --container packed (format v3) or groups (v2)",
       run_convert},
      {"quantize", "fp16/bf16 storage, int8 dynamic or static (calibrated) quantization",
       run_quantize},
      {"compress", "run a compression recipe (YAML): stages in order, reports, checkpoints",
       run_compress},
      {"stages", "list the stages a recipe can use, with their options and defaults", run_stages},
      {"prune",
       "magnitude pruning (layer/global; one-shot, iterative, gradual) or structured filter "
       "pruning",
       run_prune},
      {"distill", "train a student against a teacher model (knowledge distillation)", run_distill},
      {"import", "convert a TorchScript file (torch.jit.save) into a model file", run_import},
      {"export", "write a model for other frameworks: --format torchscript (PyTorch) or onnx",
       run_export},
      {"version", "versions of mcompress, LibTorch and HDF5", run_version},
  };
  return list;
}

bool parse(const std::string& command, const std::string& usage, const Args& args,
           po::options_description& options, po::variables_map& vm, const char* positional) {
  options.add_options()("help,h", "show this help");
  auto parser = po::command_line_parser(args).options(options);
  po::positional_options_description bare;
  if (positional != nullptr) bare.add(positional, 1);
  parser.positional(bare);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    std::cout << "usage: mcompress " << command << " " << usage << "\n\n" << options << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

void add_threads_option(po::options_description& options) {
  options.add_options()("threads", po::value<int>()->default_value(0),
                        "intra-op threads for LibTorch (0 = one per core)");
}

int apply_threads(const po::variables_map& vm) {
  int threads = vm["threads"].as<int>();
  MCOMPRESS_CHECK(threads >= 0, ConfigError, "--threads must be >= 0, got ", threads);
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  at::set_num_threads(threads);
  // OpenBLAS (LibTorch's fp32 GEMM here) keeps its own thread pool; left at its default it
  // competes with LibTorch's threads and makes fp32 timings erratic.
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    set(threads);
  }
  return threads;
}

void add_distributed_options(po::options_description& options) {
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("world-size", po::value<int>(),
                        "ranks of a data-parallel run (default: $WORLD_SIZE or 1)")(
      "rank", po::value<int>(), "this process's rank, 0 .. world-size - 1 (default: $RANK or 0)")(
      "master", po::value<std::string>(),
      "HOST:PORT of rank 0's rendezvous (default: $MASTER_ADDR:$MASTER_PORT or 127.0.0.1:29500)")(
      "dist-timeout", po::value<double>()->default_value(60),
      "seconds a rank waits for the slowest peer before failing");
  // clang-format on
}

bool apply_distributed(const po::variables_map& vm) {
  DistributedOptions o = DistributedOptions::from_environment();
  if (vm.count("world-size")) o.world_size = vm["world-size"].as<int>();
  if (vm.count("rank")) o.rank = vm["rank"].as<int>();
  if (vm.count("master")) o.set_master(vm["master"].as<std::string>());
  const double timeout = vm["dist-timeout"].as<double>();
  MCOMPRESS_CHECK(timeout > 0 && timeout <= 86400, ConfigError,
                  "--dist-timeout must be in (0, 86400] seconds, got ", timeout);
  o.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout * 1000));
  o.validate();
  if (o.world_size > 1) {
    std::cerr << "rank " << o.rank << " of " << o.world_size << ", rendezvous at " << o.master_addr
              << ":" << o.master_port << std::endl;
  }
  init_distributed(o);
  return distributed().is_root();
}

void add_data_options(po::options_description& options) {
  options.add_options()("data", po::value<std::string>()->default_value(kFashionMnistDir),
                        "directory of IDX files or an HDF5 file with x/y")(
      "limit", po::value<int64_t>()->default_value(0), "use only the first N examples (0 = all)");
}

Dataset load_data(const po::variables_map& vm, Split split) {
  Dataset data = load_dataset(vm["data"].as<std::string>(), split);
  const int64_t limit = vm["limit"].as<int64_t>();
  MCOMPRESS_CHECK(limit >= 0, ConfigError, "--limit must be >= 0, got ", limit);
  if (limit > 0 && limit < data.size()) data = data.slice(0, limit);
  return data;
}

void add_train_options(po::options_description& options, TrainOptions& t) {
  // clang-format off: one option per line reads better than the formatter's packing
  options.add_options()("epochs", po::value<int64_t>(&t.epochs)->default_value(t.epochs),
                        "training epochs")(
      "batch-size", po::value<int64_t>(&t.batch_size)->default_value(t.batch_size), "batch size")(
      "optimizer", po::value<std::string>()->default_value(to_string(t.optimizer)), "adam or sgd")(
      "lr", po::value<double>(&t.lr)->default_value(t.lr), "peak learning rate")(
      "momentum", po::value<double>(&t.momentum)->default_value(t.momentum), "SGD momentum")(
      "weight-decay", po::value<double>(&t.weight_decay)->default_value(t.weight_decay),
      "L2 weight decay")("schedule", po::value<std::string>()->default_value(to_string(t.schedule)),
                         "learning-rate schedule: constant, step, cosine")(
      "step-size", po::value<int64_t>(&t.step_size)->default_value(t.step_size),
      "epochs between lr drops (step schedule)")(
      "gamma", po::value<double>(&t.gamma)->default_value(t.gamma), "lr factor (step schedule)")(
      "early-stop",
      po::value<int64_t>(&t.early_stop_patience)->default_value(t.early_stop_patience),
      "stop after N epochs without a better validation accuracy (0 = off)")(
      "seed", po::value<uint64_t>(&t.seed)->default_value(t.seed), "seed of every random choice")(
      "quiet,q", po::bool_switch(), "no progress output");
  // clang-format on
}

void read_train_options(const po::variables_map& vm, TrainOptions& t) {
  t.optimizer = parse_optimizer(vm["optimizer"].as<std::string>());
  t.schedule = parse_lr_schedule(vm["schedule"].as<std::string>());
  t.progress = !vm["quiet"].as<bool>();
  t.validate();
}

void check_output_path(const std::string& out, bool force, const std::vector<std::string>& inputs) {
  check_output_file(out, force, inputs);
}

std::string command_line(const std::string& command, const Args& args) {
  std::string line = "mcompress " + command;
  for (const auto& a : args) line += " " + a;
  return line;
}

void print_plan(std::ostream& out, const runtime::Executor& exec,
                const runtime::ExecutorOptions& options, int threads) {
  Table plan({"layers", "op", "kernel", "fp32_ms", "int8_ms", "sparse_ms", "note"});
  auto ms = [](double v) { return v > 0 ? format_fixed(v, 3) : std::string(); };
  for (const auto& s : exec.plan()) {
    plan.add_row({s.layers, s.op, s.kernel, ms(s.fp32_ms), ms(s.int8_ms), ms(s.sparse_ms), s.note});
  }
  out << "plan at batch " << options.batch_size << " (" << threads << " threads, kernel policy "
      << to_string(options.policy) << "):\n"
      << plan.to_text();
  if (!exec.plan_note().empty()) out << exec.plan_note() << "\n";
}

}  // namespace mcompress::cli
