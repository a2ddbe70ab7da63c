#include <atask/helpers/collection.hpp>

#include "util/platform.hpp"

namespace atask::detail {

std::string collection_error_message(std::exception_ptr e) {
  return describe(std::move(e));
}

void validate(const TaskCollectionOptions& o, const char* call) {
  if (o.timeout.count() < 0)
    throw OptionsError(std::string(call) + " - timeout must be >= 0 (got " +
                       std::to_string(o.timeout.count()) + "ms)");
  if (index(o.priority) >= priority_count)
    throw OptionsError(std::string(call) + " - priority " + std::to_string(index(o.priority)) +
                       " is not a valid atask::Priority");
}

}  // namespace atask::detail
