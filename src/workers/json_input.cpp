#include "util/json_text.hpp"

#include <atask/workers/queue.hpp>

#include <boost/json/value.hpp>
#include <boost/system/system_error.hpp>

#include <cmath>

namespace atask {

bool accepts_json(const Worker& w) noexcept {
  const auto* in = dynamic_cast<const detail::JsonInput*>(&w);
  return in && in->json_items();
}

bool try_put_json(Worker& w, const boost::json::value& item) {
  auto* in = dynamic_cast<detail::JsonInput*>(&w);
  if (!in)
    throw LifecycleError("atask::try_put_json() - worker '" + w.name() + "' is " +
                         detail::kind_with_article(w.kind()) + " worker, not a queue worker");
  return in->try_put_json_item(item);
}

namespace detail {

std::string json_item_error(const boost::json::value& item, const std::exception& e, JsonWant want,
                            std::string_view range) {
  const std::string got = ", got " + json_preview(item);
  switch (want) {
    case JsonWant::integer: {
      // A whole number out of range (300 for an 8-bit item, -1 for an
      // unsigned one) says the range; anything else just what it wanted.
      const bool whole = item.is_int64() || item.is_uint64() ||
                         (item.is_double() && std::isfinite(item.get_double()) &&
                          std::trunc(item.get_double()) == item.get_double());
      if (whole && !range.empty()) return "expected an integer from " + std::string(range) + got;
      return "expected an integer" + got;
    }
    case JsonWant::boolean:
      return "expected true or false" + got;
    case JsonWant::number:
      if (item.is_number()) return "the number does not fit the item type" + got;
      return "expected a number" + got;
    case JsonWant::string:
      return "expected a string" + got;
    case JsonWant::other:
      break;
  }
  // A user type or a container: the reason its conversion gave. A
  // system_error's what() carries Boost's source location ("not exact
  // [boost.json:25 at /usr/include/boost/json/value.hpp:2370 in function
  // ...]"): its code's message is the part meant for people.
  if (const auto* se = dynamic_cast<const boost::system::system_error*>(&e))
    return se->code().message() + got;
  return e.what() + got;
}

}  // namespace detail

}  // namespace atask
