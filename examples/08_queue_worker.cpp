// 08: QueueWorker<T> - an executor per queued item, one at a time. put()
// from any thread (it blocks while a bounded queue is full), async_put()
// from coroutines. stop() drains the queue by default; QueueStop::hand_back
// gives the items back instead - never silently dropped.
#include <atask/atask.hpp>

#include <cstdio>
#include <string>
#include <vector>

int main() {
  atask::Supervisor sv({.id = "queue"});
  sv.start();

  int sum = 0;
  auto adder = atask::queue_worker<int>(sv, [&](int x) { sum += x; }, {.name = "adder", .capacity = 100});
  adder->start();
  for (int x : {2, 3, 4}) adder->put(x);
  adder->stop();  // drains: every queued item is processed first
  std::printf("2 + 3 + 4 = %d\n", sum);

  // Priority order: the smallest item first.
  auto jobs = atask::queue_worker<std::pair<int, std::string>>(
      sv, [](std::pair<int, std::string> job) { std::printf("job %d: %s\n", job.first, job.second.c_str()); },
      {.name = "jobs",
       .order = atask::QueueOrder::priority,
       .on_stop = atask::QueueStop::hand_back,
       .on_hand_back = [](std::vector<std::pair<int, std::string>> left) {
         std::printf("%zu jobs handed back at stop\n", left.size());
       }});
  jobs->start();
  jobs->put({3, "send report"});
  jobs->put({1, "urgent fix"});
  jobs->put({2, "refresh cache"});
  jobs->stop();
  sv.stop();
}
