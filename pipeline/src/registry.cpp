#include "mcompress/pipeline/registry.h"

#include "mcompress/distill/stages.h"
#include "mcompress/prune/stages.h"
#include "mcompress/quant/stages.h"

namespace mcompress::pipeline {

const StageRegistry& default_registry() {
  // Explicit calls, not static self-registration: a linker drops unreferenced objects of a
  // static library, and with them any registration that relied on their constructors.
  static const StageRegistry registry = [] {
    StageRegistry r;
    distill::register_stages(r);
    prune::register_stages(r);
    quant::register_stages(r);
    return r;
  }();
  return registry;
}

}  // namespace mcompress::pipeline
