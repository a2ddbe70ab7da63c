#include <atask/workers/process.hpp>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace asio = boost::asio;

namespace atask::detail {

namespace {
// Completes on the awaiting coroutine's executor once the task is final.
template <class Token>
auto async_wait_done(TaskStateBase& t, Token&& token) {
  return asio::async_initiate<Token, void()>(
      [&t](auto handler) {
        auto work = asio::make_work_guard(asio::get_associated_executor(handler));
        t.on_done([handler = std::move(handler), work = std::move(work)]() mutable {
          auto ex = work.get_executor();
          asio::post(ex, std::move(handler));
        });
      },
      token);
}
}  // namespace

asio::awaitable<bool> await_process(TaskStateBase& task, std::stop_token st, std::function<bool()> deliver) {
  task.add_ref();
  Ref<TaskStateBase> keep = Ref<TaskStateBase>::adopt(&task);
  {
    std::stop_callback on_stop(st, [t = keep.get()] {
      if (!t->done()) t->request_stop();
    });
    co_await async_wait_done(*keep, asio::use_awaitable);
  }
  co_return deliver();
}

}  // namespace atask::detail
