// mcompress: the command-line front end. The one place that catches exceptions and maps them
// to exit codes: 2 for a usage or configuration error, 1 for anything else.

#include <c10/util/Exception.h>
#include <malloc.h>

#include <iostream>

#include "cli.h"
#include "mcompress/core/error.h"

namespace {

void print_usage(std::ostream& out) {
  out << "usage: mcompress <command> [options]   (mcompress <command> --help for details)\n\n"
         "commands:\n";
  for (const auto& c : mcompress::cli::commands()) {
    out << "  " << c.name << std::string(10 - std::string(c.name).size(), ' ') << c.summary << "\n";
  }
}

int fail(const std::string& message, int code) {
  // One line: the first line of the message (LibTorch errors carry a backtrace after it).
  std::cerr << "mcompress: error: " << message.substr(0, message.find('\n')) << std::endl;
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace mcompress;
  // Training allocates and frees the same multi-megabyte activation buffers every step. With
  // glibc's dynamic mmap threshold those land on fresh mmap'd pages or not depending on heap
  // history (even on the length of argv strings), and the page faults cost up to 30% of an
  // epoch (resnet8: 45 s vs 34 s). Serving them from a heap that keeps freed memory makes
  // the speed stable; the cost is up to 1 GiB of freed memory kept for reuse.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  if (argc < 2) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    print_usage(std::cout);
    return 0;
  }
  if (name == "--version") return cli::run_version({});
  const cli::Args args(argv + 2, argv + argc);
  try {
    for (const auto& c : cli::commands()) {
      if (name == c.name) return c.run(args);
    }
    return fail("unknown command '" + name + "'; run 'mcompress --help' for the list", 2);
  } catch (const cli::po::error& e) {
    return fail(std::string(e.what()) + "; see 'mcompress " + name + " --help'", 2);
  } catch (const ConfigError& e) {
    return fail(e.what(), 2);
  } catch (const c10::Error& e) {
    return fail(e.what_without_backtrace(), 1);
  } catch (const std::exception& e) {
    return fail(e.what(), 1);
  }
}
