#include <iostream>

#include "cli.h"
#include "mcompress/core/table.h"
#include "mcompress/core/zoo.h"

namespace mcompress::cli {

int run_zoo(const Args& args) {
  po::options_description options("zoo options");
  po::variables_map vm;
  if (!parse("zoo", "", args, options, vm)) return 0;
  Table table({"name", "parameters", "input", "description"});
  for (const auto& entry : zoo_entries()) {
    const ArchSpec spec = zoo_spec(entry.name);
    table.add_row({entry.name, std::to_string(spec.parameter_count()),
                   shape_to_string(spec.input_shape), entry.summary});
  }
  std::cout << table.to_text();
  return 0;
}

}  // namespace mcompress::cli
