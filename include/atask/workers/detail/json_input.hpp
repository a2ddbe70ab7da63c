#pragma once
/// @file
/// JsonInput: what atask::try_put_json() finds behind a Worker& (a base of
/// every QueueSource, reached by a cross-cast), so that control planes can
/// put JSON items into a queue worker they know only by name, and Worker
/// itself knows nothing of JSON.

#include <exception>
#include <string>
#include <string_view>

namespace boost::json {
class value;
}

namespace atask::detail {

/// What a queue's item type expects of a JSON item, for messages.
enum class JsonWant : unsigned char { integer, boolean, number, string, other };

/// Why `item` does not convert to an item type that wants `want`, as a
/// reader would say it: "expected an integer, got 1.5", "expected an
/// integer from 0 to 255, got 300" (`range` is "0 to 255"). For other
/// types, the reason `e` gives: a Boost.JSON error as its message, never
/// Boost's source location. Defined in src/workers/json_input.cpp.
std::string json_item_error(const boost::json::value& item, const std::exception& e, JsonWant want,
                            std::string_view range = {});

class JsonInput {
 public:
  /// The item type converts from Boost.JSON.
  virtual bool json_items() const noexcept = 0;
  /// Converts and try_put()s; false when the queue is full.
  virtual bool try_put_json_item(const boost::json::value& item) = 0;

 protected:
  ~JsonInput() = default;
};

}  // namespace atask::detail
