#include <iostream>
#include <string>

#include "cli.h"
#include "mcompress/core/architecture.h"
#include "mcompress/core/op_schema.h"
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

namespace {

// "kernel_shape: ints (required)", "group: int = 1", "min: float (optional)".
std::string describe(const AttrSpec& a) {
  std::string out = a.name + ": ";
  switch (a.kind) {
    case AttrKind::kInt:
      out += "int";
      break;
    case AttrKind::kInts:
      out += "ints";
      break;
    case AttrKind::kFloat:
      out += "float";
      break;
  }
  if (a.optional) return out + " (optional)";
  if (a.default_value.is_null()) return out + " (required)";
  return out + " = " + a.default_value.dump();
}

std::string arity(const OpSchema& s) {
  if (s.max_inputs < 0) return std::to_string(s.min_inputs) + " or more";
  if (s.min_inputs == s.max_inputs) return std::to_string(s.min_inputs);
  return std::to_string(s.min_inputs) + " to " + std::to_string(s.max_inputs);
}

}  // namespace

int run_ops(const Args& args) {
  po::options_description options("ops options");
  options.add_options()("markdown", po::bool_switch(), "print a Markdown table (docs/format.md)");
  po::variables_map vm;
  if (!parse("ops", "[--markdown]", args, options, vm)) return 0;
  Table table({"op", "inputs", "attributes", "semantics"});
  for (const OpSchema& s : op_schemas()) {
    std::string attrs;
    for (const AttrSpec& a : s.attrs) attrs += (attrs.empty() ? "" : "; ") + describe(a);
    table.add_row({s.op, arity(s), attrs.empty() ? "-" : attrs, s.summary});
  }
  std::cout << (vm["markdown"].as<bool>() ? table.to_markdown() : table.to_text());
  return 0;
}

}  // namespace mcompress::cli
