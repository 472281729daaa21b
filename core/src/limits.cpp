#include "mcompress/core/limits.h"

#include "mcompress/core/arch_spec.h"
#include "mcompress/core/error.h"

namespace mcompress {

int64_t checked_elements(const std::vector<int64_t>& dims, int64_t limit, const std::string& what) {
  int64_t n = 1;
  for (int64_t d : dims) {
    MCOMPRESS_CHECK(d >= 0, ModelError, what, ": negative size in ", shape_to_string(dims));
    MCOMPRESS_CHECK(!__builtin_mul_overflow(n, d, &n) && n <= limit, ModelError, what, ": ",
                    shape_to_string(dims), " is more than ", limit, " elements");
  }
  return n;
}

}  // namespace mcompress
