#pragma once
// A RetryPolicy as it travels in a task's hash (field "retry"): JSON, so
// that a worker reads what any client version wrote, field by field.

#include <atask/tasks/retry.hpp>

#include <string>
#include <string_view>

namespace atask::distributed::detail {

std::string retry_to_json(const RetryPolicy& p);
/// @throws std::exception (Boost.JSON's) for text that is not such JSON.
RetryPolicy retry_from_json(std::string_view text);

}  // namespace atask::distributed::detail
