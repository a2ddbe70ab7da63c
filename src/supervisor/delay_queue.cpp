#include "supervisor/delay_queue.hpp"

#include <boost/asio/post.hpp>

#include <exception>
#include <utility>

namespace asio = boost::asio;

namespace atask::detail {

void DelayQueue::add(Ref<TaskStateBase> t, std::chrono::milliseconds delay, UniqueFunction enqueue) {
  ++pending_;
  asio::post(loop_, [this, r = std::move(t), delay, enqueue = std::move(enqueue)]() mutable {
    auto id = r->id();
    auto& timer = timers_[id];
    timer = std::make_unique<asio::steady_timer>(loop_, delay);
    timer->async_wait(
        [this, r = std::move(r), enqueue = std::move(enqueue)](boost::system::error_code) mutable {
          timers_.erase(r->id());
          --pending_;
          // The slot is taken only now: a delayed task holds none while it waits.
          if (!r->try_enqueue_after_delay()) return;  // canceled meanwhile
          try {
            enqueue();
          } catch (const std::exception&) {  // stopping: the pool canceled it
          }
        });
  });
}

void DelayQueue::cancel(TaskStateBase& t) noexcept {
  if (pending_.load() > 0) {
    t.add_ref();
    asio::post(loop_, [this, r = Ref<TaskStateBase>::adopt(&t)] {
      if (auto it = timers_.find(r->id()); it != timers_.end()) it->second->cancel();
    });
  }
}

}  // namespace atask::detail
