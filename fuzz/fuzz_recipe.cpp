// libFuzzer target: pipeline::parse_recipe on arbitrary text with the built-in stages.
// Expected: a recipe, or a ConfigError naming the YAML path and line. A YAML::Exception (or
// any other exception type) escaping is a finding: the parser must translate it.
// A first line "#set PATH=VALUE" (a YAML comment otherwise) is also passed as a --set override,
// so the override parser is fuzzed too.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "mcompress/pipeline/recipe.h"
#include "mcompress/pipeline/registry.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> sets;
  if (text.rfind("#set ", 0) == 0) sets.push_back(text.substr(5, text.find('\n') - 5));
  return mcompress::fuzz::run_expecting_typed_errors("fuzz_recipe", [&] {
    const auto recipe = mcompress::pipeline::parse_recipe(
        text, mcompress::pipeline::default_registry(), sets, "fuzz.yaml");
    (void)recipe.digest();
  });
}
