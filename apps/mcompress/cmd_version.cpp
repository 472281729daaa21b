#include <iostream>

#include "cli.h"
#include "mcompress/core/version.h"

namespace mcompress::cli {

int run_version(const Args& args) {
  po::options_description options("version options");
  po::variables_map vm;
  if (!parse("version", "", args, options, vm)) return 0;
  std::cout << version_details() << std::endl;
  return 0;
}

}  // namespace mcompress::cli
