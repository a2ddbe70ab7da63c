#include <atask/workers/queue.hpp>

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

}  // namespace atask
