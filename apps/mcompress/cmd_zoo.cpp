#include <iostream>

#include "cli.h"
#include "mcompress/core/architecture.h"
#include "mcompress/core/table.h"

namespace mcompress::cli {

int run_zoo(const Args& args) {
  po::options_description options("zoo options");
  po::variables_map vm;
  if (!parse("zoo", "", args, options, vm)) return 0;
  Table table({"name", "kind", "parameters", "input", "description"});
  for (const auto& entry : architecture_entries()) {
    table.add_row({entry.name, entry.kind, std::to_string(entry.parameters),
                   shape_to_string(entry.input_shape), entry.summary});
  }
  std::cout << table.to_text();
  return 0;
}

}  // namespace mcompress::cli
