#include "mcompress/pipeline/registry.h"

#include "mcompress/quant/stages.h"
#ifdef MCOMPRESS_HAVE_PRUNE
#include "mcompress/prune/stages.h"
#endif
#ifdef MCOMPRESS_HAVE_DISTILL
#include "mcompress/distill/stages.h"
#endif

namespace mcompress::pipeline {

const StageRegistry& default_registry() {
  // Explicit calls, not static self-registration: a linker drops unreferenced objects of a
  // static library, and with them any registration that relied on their constructors.
  static const StageRegistry registry = [] {
    StageRegistry r;
#ifdef MCOMPRESS_HAVE_DISTILL
    distill::register_stages(r);
#endif
#ifdef MCOMPRESS_HAVE_PRUNE
    prune::register_stages(r);
#endif
    quant::register_stages(r);
    return r;
  }();
  return registry;
}

}  // namespace mcompress::pipeline
