#pragma once
/// @file
/// Queue workers: QueueSource<T> (a run per queued item), QueueWorker<T>
/// (blocking executor on the pool) and AsyncQueueWorker<T> (coroutine
/// executor on an aloop); their batch forms BatchQueueWorker<T> and
/// AsyncBatchQueueWorker<T> (the executor takes a std::span<T> of up to
/// QueueOptions::max_batch items); the queue_worker<T>() factory, and
/// atask::put() / try_put() for a queue worker held as a Worker.
///
/// @code
///   auto sum = atask::queue_worker<int>(sv, [&](int x) { total += x; }, {.capacity = 1000});
///   sum->start();
///   sum->put(2);                                        // any thread; blocks while full
///   co_await sum->async_put(3, asio::use_awaitable);    // coroutines wait without a thread
///   sum->stop();                                        // drains what is queued (the default)
///
///   // Batch form: the executor gets what is queued, up to max_batch items per call.
///   auto rows = atask::queue_worker<Row>(sv, [&](std::span<Row> batch) { db.insert(batch); },
///                                        {.max_batch = 500});
///
///   std::vector<std::unique_ptr<atask::Worker>> all;   // held as Worker: no cast needed
///   all.push_back(atask::queue_worker<int>(sv, [](int) {}));
///   atask::put(*all[0], 4);                             // LifecycleError if not a queue of int
/// @endcode

#include <atask/workers/basic_worker.hpp>
#include <atask/workers/detail/fn_worker.hpp>
#include <atask/workers/detail/json_input.hpp>

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/core/demangle.hpp>
#include <boost/json/value_to.hpp>

#include <deque>
#include <limits>
#include <span>
#include <typeinfo>
#include <vector>

namespace atask {

/// In which order a queue worker takes its items.
enum class QueueOrder : unsigned char {
  fifo,     ///< first in, first out
  priority  ///< smallest first by the worker's Compare (like Python's PriorityQueue); FIFO among equals
};

/// What stop() does with items still queued.
enum class QueueStop : unsigned char {
  drain,     ///< the executor processes them all before the worker stops (put() is refused meanwhile)
  hand_back  ///< they are handed back: to on_hand_back, or kept for take_unprocessed()
};

/// Options of queue workers (designated initializers). The common fields
/// come first, in the order of WorkerOptions, then the queue's own:
/// `{.name = "ingest", .capacity = 1000}`.
template <class T>
struct QueueOptions {
  // -- the common fields, in the order of WorkerOptions --
  /// Unique within the supervisor; empty = "queue-<n>".
  std::string name{};
  /// Pool priority of blocking executor runs (ignored by coroutine executors).
  Priority priority = Priority::normal;
  /// Aloop for coroutine executors; empty = the supervisor's default aloop.
  /// OptionsError on a blocking executor (it runs on the pool).
  std::string aloop{};
  /// Called when an executor call throws; empty = log it.
  ErrorHandler on_error{};
  /// Stop the worker after this many executor calls in a row threw (0 = never).
  std::size_t stop_after_errors = 0;
  // -- queue workers only --
  /// 0 = unbounded. When full, put() blocks, put_for() waits up to its
  /// timeout, try_put() fails and async_put() completes once there is room.
  std::size_t capacity = 0;
  QueueOrder order = QueueOrder::fifo;
  QueueStop on_stop = QueueStop::drain;
  /// Gets the items handed back (hand_back, an executor that returned
  /// false, or a supervisor that stopped before the queue drained), on the
  /// thread that completes the stop. Empty: they wait in take_unprocessed().
  std::function<void(std::vector<T>)> on_hand_back{};
  /// Batch executors (taking std::span<T>): at most this many items per
  /// call, taken from the queue under one lock; must be >= 1. A call gets
  /// what is queued when it begins, never waits for a batch to fill.
  /// Ignored by per-item executors.
  std::size_t max_batch = 128;
};

namespace detail {

/// A move-only void(std::exception_ptr) callable: an async_put's completion.
class PutCompletion {
 public:
  template <class F>
  PutCompletion(F f) : p_(std::make_unique<Impl<F>>(std::move(f))) {}
  void operator()(std::exception_ptr e) { p_->call(std::move(e)); }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual void call(std::exception_ptr e) = 0;
  };
  template <class F>
  struct Impl final : Base {
    explicit Impl(F x) : f(std::move(x)) {}
    void call(std::exception_ptr e) override { f(std::move(e)); }
    F f;
  };
  std::unique_ptr<Base> p_;
};

/// The input of a queue worker of items T, whatever its order and executor
/// form: what atask::put() and atask::try_put() find behind a Worker& (a
/// second base of the queue worker types, reached by a cross-cast).
template <class T>
class QueueInput {
 public:
  virtual void put_item(T&& item) = 0;
  virtual bool try_put_item(T& item) = 0;

 protected:
  ~QueueInput() = default;
};

/// The queue of T behind `w`.
/// @throws LifecycleError naming the worker and T when `w` is not a queue
///         worker of T.
template <class T>
QueueInput<T>& queue_of(Worker& w, const char* call) {
  if (auto* q = dynamic_cast<QueueInput<T>*>(&w)) return *q;
  const std::string type = boost::core::demangle(typeid(T).name());
  if (w.kind() == WorkerKind::queue)
    throw LifecycleError(std::string(call) + " - worker '" + w.name() +
                         "' is a queue worker, but its items are not of type '" + type + "'");
  throw LifecycleError(std::string(call) + " - worker '" + w.name() + "' is " + kind_with_article(w.kind()) +
                       " worker, not a queue worker of '" + type + "'");
}

}  // namespace detail

/// The source of a queue worker: the queue, in FIFO or priority order, and
/// a run per queued item (a run takes items in a row, and gives its pool
/// slot back now and then: see run_slice).
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe, as Worker (put() from the
/// worker's own executor throws when the queue is full, see put()).
template <class T, class Compare = std::less<>>
class QueueSource : public Worker, public detail::QueueInput<T>, public detail::JsonInput {
 public:
  using options_type = QueueOptions<T>;
  using items = detail::ItemList<T>;

  /// Queues an item; blocks while the queue is full.
  /// @throws LifecycleError when the worker is not active (the item is not
  ///         queued), or when called from the worker's own executor while
  ///         the queue is full (it would wait for itself).
  void put(T item) {
    std::unique_lock lk(m_);
    check_accepting("put()");
    if (full_locked()) {
      if (this->on_executor_thread_locked())
        throw LifecycleError(call("put()") + " - the queue is full and this is the worker's own executor");
      space_cv_.wait(lk, [&] { return !this->active_locked() || !full_locked(); });
      check_accepting("put()");
    }
    push_locked(std::move(item));
  }

  /// Queues an item if there is room now; false otherwise (the item is left
  /// untouched in `item`).
  /// @throws LifecycleError when not active.
  bool try_put(T& item) {
    std::lock_guard lk(m_);
    check_accepting("try_put()");
    if (full_locked()) return false;
    push_locked(std::move(item));
    return true;
  }
  bool try_put(T&& item) { return try_put(item); }

  /// put() that waits up to `d` for room; false on timeout (item untouched).
  /// @throws LifecycleError when not active (also when the worker stops
  ///         while the call waits).
  template <class Rep, class Period>
  bool put_for(T& item, std::chrono::duration<Rep, Period> d) {
    std::unique_lock lk(m_);
    check_accepting("put_for()");
    if (!space_cv_.wait_for(lk, d, [&] { return !this->active_locked() || !full_locked(); })) return false;
    check_accepting("put_for()");
    push_locked(std::move(item));
    return true;
  }
  template <class Rep, class Period>
  bool put_for(T&& item, std::chrono::duration<Rep, Period> d) {
    return put_for(item, d);
  }

  /// Queues an item without blocking a thread: completes with
  /// (std::exception_ptr) once the item is queued - at once when there is
  /// room, else when room frees - on the token's associated executor. The
  /// error is a LifecycleError when the worker is not active or stops while
  /// the put waits; an item that was waiting is then handed back with the
  /// queue's other items (see QueueOptions::on_hand_back).
  /// `co_await w.async_put(x, asio::use_awaitable)` throws that error.
  template <class CompletionToken>
  auto async_put(T item, CompletionToken&& token) {
    return boost::asio::async_initiate<CompletionToken, void(std::exception_ptr)>(
        [this](auto handler, T item) {
          auto work = boost::asio::make_work_guard(boost::asio::get_associated_executor(handler));
          detail::PutCompletion done = [handler = std::move(handler),
                                        work = std::move(work)](std::exception_ptr e) mutable {
            auto ex = work.get_executor();
            boost::asio::post(ex, [handler = std::move(handler), e]() mutable { std::move(handler)(e); });
          };
          std::unique_lock lk(m_);
          if (!this->active_locked()) {
            auto e = std::make_exception_ptr(LifecycleError(call("async_put()") + " - worker '" +
                                                            this->name_locked() + "' is not active"));
            lk.unlock();
            done(e);
            return;
          }
          if (full_locked()) {
            waiting_.push_back({std::move(item), std::move(done)});
            return;
          }
          push_locked(std::move(item));
          lk.unlock();
          done(nullptr);
        },
        token, std::move(item));
  }

  /// Items waiting (not counting one being processed).
  std::size_t size() const {
    std::lock_guard lk(m_);
    return queued_locked();
  }
  std::size_t capacity() const noexcept { return capacity_; }

  /// Items handed back at a stop and not given to on_hand_back, oldest
  /// first; they are yours now.
  std::vector<T> take_unprocessed() {
    std::lock_guard lk(m_);
    return std::exchange(unprocessed_, {});
  }

  void put_item(T&& item) final { put(std::move(item)); }
  bool try_put_item(T& item) final { return try_put(item); }

  ~QueueSource() override {
    std::lock_guard lk(m_);
    if (!unprocessed_.empty()) this->note_unprocessed_dropped(unprocessed_.size());
  }

 protected:
  /// @throws OptionsError for a taken name, for QueueOrder::priority when
  ///         Compare cannot order T, or for an aloop on a blocking executor.
  QueueSource(WorkerInit init, bool coroutine, QueueOptions<T> o)
      : Worker(std::move(init), WorkerKind::queue, coroutine, detail::WorkerSettings::common(o)),
        capacity_(o.capacity),
        order_(o.order),
        on_stop_(o.on_stop),
        on_hand_back_(std::move(o.on_hand_back)) {
    if constexpr (!std::is_invocable_r_v<bool, Compare&, const T&, const T&>) {
      if (order_ == QueueOrder::priority)
        throw OptionsError(call(coroutine ? "AsyncQueueWorker()" : "QueueWorker()") +
                           " - priority order needs items that Compare can order");
    }
  }

  /// Takes the next item for a run, or nothing when the run should end
  /// (queue empty, the worker stops without draining, or the run has had
  /// its share: see run_slice).
  std::optional<T> next_item(std::size_t calls_in_run) {
    std::lock_guard lk(m_);
    if (!may_take_locked(calls_in_run)) return std::nullopt;
    std::optional<T> item(pop_locked());
    refill_locked(1);
    return item;
  }

  /// The batch form of next_item(): appends up to `max` items to `out`
  /// under one lock; false when the run should end.
  bool next_items(std::vector<T>& out, std::size_t max, std::size_t calls_in_run) {
    std::lock_guard lk(m_);
    if (!may_take_locked(calls_in_run)) return false;
    const std::size_t n = std::min(max, queued_locked());
    for (std::size_t i = 0; i < n; ++i) out.push_back(pop_locked());
    refill_locked(n);
    return true;
  }

  /// A run gives its pool slot back (another run follows if items remain)
  /// once it has made at least `min_calls_per_run` executor calls and run
  /// for at least `run_slice`: a busy queue does not hold a pool thread
  /// forever, and cheap items do not pay a new run every few calls.
  static constexpr std::size_t min_calls_per_run = 64;
  static constexpr std::chrono::microseconds run_slice{1000};

 private:
  struct Waiting {
    T item;
    detail::PutCompletion done;
  };

  std::string call(const char* what) const {
    return std::string(this->coroutine() ? "AsyncQueueWorker::" : "QueueWorker::") + what;
  }

  void check_accepting(const char* what) const {
    if (!this->active_locked())
      throw LifecycleError(call(what) + " - worker '" + this->name_locked() + "' is not active");
  }
  bool full_locked() const noexcept { return capacity_ != 0 && queued_locked() >= capacity_; }

  bool may_take_locked(std::size_t calls_in_run) noexcept {
    const bool draining = this->draining_locked();
    if (!this->active_locked() && !draining) return false;
    if (queued_locked() == 0) return false;
    if (draining) return true;
    // The clock is read once per run and once per min_calls_per_run calls.
    if (calls_in_run == 0) {
      run_began_ = std::chrono::steady_clock::now();
    } else if (calls_in_run % min_calls_per_run == 0 &&
               std::chrono::steady_clock::now() - run_began_ >= run_slice) {
      return false;
    }
    return true;
  }

  void push_locked(T&& item) {
    if (order_ == QueueOrder::fifo) {
      fifo_.push_back(std::move(item));
    } else {
      if constexpr (std::is_invocable_r_v<bool, Compare&, const T&, const T&>) {
        heap_.push_back({seq_++, std::move(item)});
        std::push_heap(heap_.begin(), heap_.end(), HeapLess{&cmp_});
      }
    }
    this->work_arrived_locked();
  }

  T pop_locked() {
    if (order_ == QueueOrder::fifo) {
      T v = std::move(fifo_.front());
      fifo_.pop_front();
      return v;
    }
    if constexpr (std::is_invocable_r_v<bool, Compare&, const T&, const T&>) {
      std::pop_heap(heap_.begin(), heap_.end(), HeapLess{&cmp_});
      T v = std::move(heap_.back().second);
      heap_.pop_back();
      return v;
    }
    std::abort();  // unreachable: the constructor refuses priority order here
  }

  // `freed` places came free: move waiting async puts in while there is
  // room, and wake blocked putters (only a bounded queue has any).
  void refill_locked(std::size_t freed) {
    if (capacity_ == 0) return;
    while (!waiting_.empty() && !full_locked()) {
      Waiting w = std::move(waiting_.front());
      waiting_.pop_front();
      push_locked(std::move(w.item));
      w.done(nullptr);  // posts its completion; runs nothing here
    }
    if (freed == 1)
      space_cv_.notify_one();
    else if (freed > 1)
      space_cv_.notify_all();
  }

  // -- the source of work --
  bool take_run_locked() override { return queued_locked() != 0; }
  void add_info_locked(WorkerInfo& info) const override {
    info.queue_length = queued_locked();
    info.accepts_json = boost::json::has_value_to<T>::value;
  }
  std::size_t queued_locked() const noexcept override { return fifo_.size() + heap_.size(); }
  bool drains_on_stop() const noexcept override { return on_stop_ == QueueStop::drain; }

  void queue_state_changed_locked() override {
    space_cv_.notify_all();
    if (!this->active_locked() && !waiting_.empty() && !draining_locked()) {
      // Stopping: waiting async puts fail; their items are handed back.
      for (auto& w : waiting_) {
        w.done(std::make_exception_ptr(LifecycleError(
            call("async_put()") + " - worker '" + this->name_locked() + "' stopped while the put waited")));
        handed_.push_back(std::move(w.item));
      }
      waiting_.clear();
    }
  }

  void hand_back_locked() override {
    queue_state_changed_locked();
    while (queued_locked() != 0) handed_.push_back(pop_locked());
  }

  void deliver_handed_back() override {
    std::vector<T> items;
    {
      std::lock_guard lk(m_);
      items = std::exchange(handed_, {});
    }
    if (items.empty()) return;
    this->note_handed_back(items.size(), static_cast<bool>(on_hand_back_));
    if (on_hand_back_) {
      try {
        on_hand_back_(std::move(items));
        return;
      } catch (...) {
        this->note_hand_back_threw(std::current_exception());
        return;
      }
    }
    std::lock_guard lk(m_);
    for (auto& i : items) unprocessed_.push_back(std::move(i));
  }

  struct HeapLess {
    Compare* c;
    // A max-heap of "later" entries: the smallest item (then the oldest) on top.
    bool operator()(const std::pair<std::uint64_t, T>& a, const std::pair<std::uint64_t, T>& b) const {
      if constexpr (std::is_invocable_r_v<bool, Compare&, const T&, const T&>) {
        if ((*c)(b.second, a.second)) return true;
        if ((*c)(a.second, b.second)) return false;
      }
      return a.first > b.first;
    }
  };

  // -- JSON items (the HTTP put hook, atask::try_put_json()) --
  static std::string json_error(const boost::json::value& v, const std::exception& e) {
    using detail::JsonWant;
    if constexpr (std::is_same_v<T, bool>) {
      return detail::json_item_error(v, e, JsonWant::boolean);
    } else if constexpr (std::is_integral_v<T>) {
      using L = std::numeric_limits<T>;
      return detail::json_item_error(v, e, JsonWant::integer,
                                     std::to_string(+L::min()) + " to " + std::to_string(+L::max()));
    } else if constexpr (std::is_floating_point_v<T>) {
      return detail::json_item_error(v, e, JsonWant::number);
    } else if constexpr (boost::json::is_string_like<T>::value) {
      return detail::json_item_error(v, e, JsonWant::string);
    } else {
      return detail::json_item_error(v, e, JsonWant::other);
    }
  }
  bool json_items() const noexcept override { return boost::json::has_value_to<T>::value; }
  bool try_put_json_item(const boost::json::value& v) override {
    if constexpr (boost::json::has_value_to<T>::value) {
      std::optional<T> item;
      try {
        item.emplace(boost::json::value_to<T>(v));
      } catch (const std::exception& e) {
        throw ConversionError(call("try_put_json()") +
                              " - the item does not convert to the queue's item type: " + json_error(v, e));
      }
      return try_put(*item);
    } else {
      throw LifecycleError(call("try_put_json()") + " - the items of queue worker '" + this->name() +
                           "' do not convert from JSON");
    }
  }

  std::condition_variable space_cv_;  // putters waiting for room
  const std::size_t capacity_;
  const QueueOrder order_;
  const QueueStop on_stop_;
  std::function<void(std::vector<T>)> on_hand_back_;
  Compare cmp_{};
  std::deque<T> fifo_;
  std::vector<std::pair<std::uint64_t, T>> heap_;
  std::uint64_t seq_ = 0;
  std::chrono::steady_clock::time_point run_began_{};  // of the run in progress
  std::deque<Waiting> waiting_;
  std::vector<T> handed_;       // handed back, not yet delivered
  std::vector<T> unprocessed_;  // delivered to nobody: take_unprocessed()
};

/// Runs its executor `bool run(T item, WorkerContext&)` on the pool for
/// each queued item, one at a time, in FIFO or priority order.
template <class T, class Compare = std::less<>>
using QueueWorker = BasicWorker<QueueSource<T, Compare>, Blocking>;
/// QueueWorker with a coroutine executor
/// `awaitable<bool> run(T item, WorkerContext&)` on an aloop.
template <class T, class Compare = std::less<>>
using AsyncQueueWorker = BasicWorker<QueueSource<T, Compare>, Coroutine>;

/// The source of a batch queue worker: the queue of QueueSource, handed to
/// the executor as a std::span<T> of what is queued when the call begins,
/// up to QueueOptions::max_batch items, taken under one lock. The span is
/// valid during the call; its items are the executor's to move from. A
/// stop waits for the call in progress, with its whole batch; what is
/// still queued then is drained or handed back as for QueueSource.
template <class T, class Compare = std::less<>>
class BatchQueueSource : public QueueSource<T, Compare> {
 public:
  using items = detail::ItemList<std::span<T>>;

 protected:
  /// @throws OptionsError when max_batch is 0, and as QueueSource.
  BatchQueueSource(WorkerInit init, bool coroutine, QueueOptions<T> o)
      : QueueSource<T, Compare>(std::move(init), coroutine, checked(o, coroutine)), max_batch_(o.max_batch) {}

  /// The next batch for a run (hides QueueSource::next_item()).
  std::optional<std::span<T>> next_item(std::size_t calls_in_run) {
    batch_.clear();
    if (!this->next_items(batch_, max_batch_, calls_in_run)) return std::nullopt;
    return std::span<T>(batch_);
  }

 private:
  static QueueOptions<T> checked(const QueueOptions<T>& o, bool coroutine) {
    if (o.max_batch == 0)
      throw OptionsError(std::string(coroutine ? "AsyncBatchQueueWorker()" : "BatchQueueWorker()") +
                         " - max_batch must be >= 1");
    return o;
  }

  const std::size_t max_batch_;
  std::vector<T> batch_;  // the batch of the call in progress (one call at a time)
};

/// Runs its executor `bool run(std::span<T> items, WorkerContext&)` on the
/// pool with up to max_batch queued items per call.
template <class T, class Compare = std::less<>>
using BatchQueueWorker = BasicWorker<BatchQueueSource<T, Compare>, Blocking>;
/// BatchQueueWorker with a coroutine executor
/// `awaitable<bool> run(std::span<T> items, WorkerContext&)` on an aloop.
template <class T, class Compare = std::less<>>
using AsyncBatchQueueWorker = BasicWorker<BatchQueueSource<T, Compare>, Coroutine>;

/// Puts `item` into `w`, a queue worker of T held as a Worker (say in a
/// `std::vector<std::unique_ptr<atask::Worker>>`), without a cast: what
/// QueueWorker<T>::put() does (blocks while the queue is full). T is the
/// queue's item type, deduced from `item`; name it when the argument's type
/// differs: `atask::put<std::string>(w, "text")`.
/// @throws LifecycleError when `w` is not a queue worker of T (the message
///         names the worker and T), or as QueueWorker<T>::put().
template <class T>
void put(Worker& w, T&& item) {
  using Item = std::remove_cvref_t<T>;
  detail::queue_of<Item>(w, "atask::put()").put_item(Item(std::forward<T>(item)));
}

/// QueueWorker<T>::try_put() on `w` held as a Worker: false when the queue
/// is full now (a non-const lvalue `item` is then left untouched). T as for
/// atask::put().
/// @throws LifecycleError when `w` is not a queue worker of T (the message
///         names the worker and T), or when the worker is not active.
template <class T>
bool try_put(Worker& w, T&& item) {
  using Item = std::remove_cvref_t<T>;
  auto& q = detail::queue_of<Item>(w, "atask::try_put()");
  if constexpr (std::is_lvalue_reference_v<T> && !std::is_const_v<std::remove_reference_t<T>>) {
    return q.try_put_item(item);
  } else {
    Item copy(std::forward<T>(item));
    return q.try_put_item(copy);
  }
}

/// True when `w` is a queue worker whose items convert from Boost.JSON
/// (boost::json::value_to, tag_invoke for user types): what the HTTP API's
/// put needs.
bool accepts_json(const Worker& w) noexcept;

/// Converts `item` to the item type of queue worker `w` (held as a Worker)
/// and try_put()s it: false when the queue is full.
/// @throws ConversionError when the value does not fit the item type.
/// @throws LifecycleError when `w` is not active, is not a queue worker, or
///         its items do not convert from JSON (the message says which).
bool try_put_json(Worker& w, const boost::json::value& item);

namespace detail {

/// F takes one item: (T, WorkerContext&) or (T).
template <class F, class T>
inline constexpr bool item_executor_v =
    std::is_invocable_v<F&, T&, WorkerContext&> || std::is_invocable_v<F&, T&>;
/// F takes a batch and not one item: (std::span<T>, WorkerContext&) or (std::span<T>).
template <class F, class T>
inline constexpr bool batch_executor_v =
    !item_executor_v<F, T> &&
    (std::is_invocable_v<F&, std::span<T>&, WorkerContext&> || std::is_invocable_v<F&, std::span<T>&>);

}  // namespace detail

/// Builds a queue worker from a callable taking (T, WorkerContext&) or (T)
/// - a QueueWorker<T> - or (std::span<T>, WorkerContext&) or (std::span<T>)
/// - a BatchQueueWorker<T>, up to `o.max_batch` items per call - and
/// returning void, bool or awaitable<void|bool>. Not started.
/// @throws OptionsError as QueueSource (and for an `.aloop` when f is
///         blocking, or a max_batch of 0 for a batch executor).
template <class T, class Compare = std::less<>, class F>
[[nodiscard]] auto queue_worker(Supervisor& sv, F f, QueueOptions<T> o = {}) {
  if constexpr (detail::batch_executor_v<F, T>) {
    using Batch = std::span<T>;
    return detail::make_fn_worker<BasicWorker<BatchQueueSource<T, Compare>, detail::form_of_t<F, Batch>>>(
        sv, std::move(f), std::move(o));
  } else {
    return detail::make_fn_worker<BasicWorker<QueueSource<T, Compare>, detail::form_of_t<F, T>>>(
        sv, std::move(f), std::move(o));
  }
}

}  // namespace atask
