#pragma once
// Shared pieces of the mcompress subcommands. Only apps/ prints, exits or parses argv.

#include <boost/program_options.hpp>

#include <string>
#include <vector>

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/dataset.h"
#include "mcompress/core/train.h"
#include "mcompress/runtime/executor.h"

namespace mcompress::cli {

namespace po = boost::program_options;
using Args = std::vector<std::string>;

/// A subcommand: its name, one-line summary and entry point (returns the exit code).
struct Command {
  const char* name;
  const char* summary;
  int (*run)(const Args& args);
};

const std::vector<Command>& commands();

int run_zoo(const Args& args);
int run_ops(const Args& args);
int run_train(const Args& args);
int run_eval(const Args& args);
int run_inspect(const Args& args);
int run_convert(const Args& args);
int run_quantize(const Args& args);
int run_prune(const Args& args);
int run_distill(const Args& args);
int run_version(const Args& args);
int run_compress(const Args& args);
int run_stages(const Args& args);
int run_import(const Args& args);
int run_export(const Args& args);

/// Parses `args` against `options`, handling --help: returns false when help was printed and
/// the command should exit 0. `positional`, when given, names the option a bare first
/// argument sets ("model" for `mcompress eval m.h5`).
bool parse(const std::string& command, const std::string& usage, const Args& args,
           po::options_description& options, po::variables_map& vm,
           const char* positional = nullptr);

/// Adds --threads and applies it: LibTorch intra-op threads (0 = all cores). Returns the count.
void add_threads_option(po::options_description& options);
int apply_threads(const po::variables_map& vm);

/// --world-size, --rank, --master HOST:PORT and --dist-timeout SECONDS: a data-parallel run
/// (docs/scaling.md). apply_distributed starts from the torchrun environment (WORLD_SIZE,
/// RANK, MASTER_ADDR, MASTER_PORT), lets the flags override it and joins the process group
/// (mcompress::init_distributed); a world of 1 joins nothing. Returns whether this process is
/// rank 0, the one that writes files and prints reports.
void add_distributed_options(po::options_description& options);
bool apply_distributed(const po::variables_map& vm);

/// --data (directory of IDX files or HDF5 file) and --limit (first N examples, 0 = all).
void add_data_options(po::options_description& options);
Dataset load_data(const po::variables_map& vm, Split split);

/// The options of a training run (--epochs, --batch-size, --optimizer, --lr, --momentum,
/// --weight-decay, --schedule, --step-size, --gamma, --early-stop, --seed, --quiet), with
/// `t`'s values as defaults; read_train_options fills `t` from the parsed values and validates
/// it. train and distill share them, so their runs differ only where they mean to.
void add_train_options(po::options_description& options, TrainOptions& t);
void read_train_options(const po::variables_map& vm, TrainOptions& t);

/// Fails before a long run rather than at the save: the output's folder must exist and take a
/// new file, an existing output must be a regular file and needs --force, and the output must
/// not be any of `inputs` (compared as files). See mcompress::check_output_file.
void check_output_path(const std::string& out, bool force,
                       const std::vector<std::string>& inputs = {});

/// "mcompress <command> <args...>", the provenance a saved model records.
std::string command_line(const std::string& command, const Args& args);

/// The executor's per-step plan: kernel choice, the auto policy's timings (fp32, int8,
/// sparse), notes (folded layers, weight density).
void print_plan(std::ostream& out, const runtime::Executor& exec,
                const runtime::ExecutorOptions& options, int threads);

}  // namespace mcompress::cli
