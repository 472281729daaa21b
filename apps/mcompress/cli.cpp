#include "cli.h"

#include <ATen/Parallel.h>

#include <dlfcn.h>

#include <iostream>
#include <thread>

#include "mcompress/core/error.h"
#include "mcompress/core/table.h"

namespace mcompress::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"zoo", "list the built-in architectures with parameter counts", run_zoo},
      {"train", "train a model from the zoo or a spec file", run_train},
      {"eval", "accuracy, loss and latency of a model file (deployable runtime)", run_eval},
      {"inspect", "per-tensor storage table of a model file", run_inspect},
      {"quantize", "fp16/bf16 storage, int8 dynamic or static (calibrated) quantization", run_quantize},
      {"compress", "run a compression recipe (YAML): stages in order, reports, checkpoints", run_compress},
      {"stages", "list the stages a recipe can use, with their options and defaults", run_stages},
      {"prune", "magnitude pruning (layer/global; one-shot, iterative, gradual) or structured filter pruning", run_prune},
      {"version", "versions of mcompress, LibTorch and HDF5", run_version},
  };
  return list;
}

bool parse(const std::string& command, const std::string& usage, const Args& args,
           po::options_description& options, po::variables_map& vm,
           const po::positional_options_description* positional) {
  options.add_options()("help,h", "show this help");
  auto parser = po::command_line_parser(args).options(options);
  if (positional != nullptr) parser.positional(*positional);
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
