#include "distributed/retry_json.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <boost/json/value_to.hpp>

namespace atask::distributed::detail {

namespace json = boost::json;
using std::chrono::milliseconds;

std::string retry_to_json(const RetryPolicy& p) {
  json::array on, delays;
  for (auto& t : p.on) on.emplace_back(t);
  for (auto d : p.delays) delays.emplace_back(d.count());
  return json::serialize(json::object{{"max", p.max_attempts},
                                      {"on", std::move(on)},
                                      {"tl", p.on_time_limit},
                                      {"crash", p.on_child_crash},
                                      {"base", p.backoff.count()},
                                      {"cap", p.backoff_cap.count()},
                                      {"jitter", p.jitter},
                                      {"delays", std::move(delays)}});
}

RetryPolicy retry_from_json(std::string_view text) {
  const json::object o = json::parse(text).as_object();
  RetryPolicy p;
  p.max_attempts = json::value_to<unsigned>(o.at("max"));
  for (auto& t : o.at("on").as_array()) p.on.emplace_back(t.as_string());
  p.on_time_limit = o.at("tl").as_bool();
  p.on_child_crash = o.at("crash").as_bool();
  p.backoff = milliseconds(o.at("base").to_number<long long>());
  p.backoff_cap = milliseconds(o.at("cap").to_number<long long>());
  p.jitter = o.at("jitter").as_bool();
  for (auto& d : o.at("delays").as_array()) p.delays.emplace_back(d.to_number<long long>());
  return p;
}

}  // namespace atask::distributed::detail
