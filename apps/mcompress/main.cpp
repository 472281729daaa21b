// mcompress: the command-line front end. The one place that catches exceptions and maps them
// to exit codes: 2 for a usage or configuration error, 1 for anything else.

#include <c10/util/Exception.h>
#include <malloc.h>

#include <iostream>
#include <new>

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
  std::cerr << "mcompress: error: " << mcompress::printable(message) << std::endl;
  return code;
}

// An exception the library did not raise on purpose (LibTorch, the allocator, the standard
// library) knows nothing of the files involved, so the line names the command that failed.
int fail_foreign(const std::string& command, const mcompress::cli::Args& args,
                 const std::string& what) {
  std::string line = command;
  for (const auto& a : args) line += " " + a;
  return fail("'" + line + "' failed: " + what, 1);
}

// LibTorch errors carry a backtrace or "Exception raised from" after their first line.
std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

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
  } catch (const Error& e) {
    return fail(e.what(), 1);
  } catch (const c10::Error& e) {
    return fail_foreign(name, args, "LibTorch: " + first_line(e.what_without_backtrace()));
  } catch (const std::bad_alloc&) {
    return fail_foreign(name, args, "out of memory");
  } catch (const std::exception& e) {
    return fail_foreign(name, args, first_line(e.what()));
  }
}
