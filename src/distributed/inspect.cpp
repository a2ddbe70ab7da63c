// Client's inspection calls: workers, queues, their counts, and purge. What
// `atask inspect`, the API server's cluster view and its metrics read.

#include <atask/distributed/client.hpp>

#include "distributed/client/access.hpp"
#include "distributed/keys.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <cstdlib>
#include <set>
#include <sstream>

namespace atask::distributed {

namespace json = boost::json;
using detail::ClientAccess;
using redis::cmd;
using redis::Reply;

namespace {

long long to_ll(const std::string& s) {
  return std::strtoll(s.c_str(), nullptr, 10);
}

// TIME's reply in Unix ms.
std::int64_t time_ms(const Reply& r) {
  if (r.elements.size() != 2) return 0;
  return to_ll(r.elements[0].str) * 1000 + to_ll(r.elements[1].str) / 1000;
}

std::vector<std::string> words(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string w; in >> w;) out.push_back(std::move(w));
  return out;
}

// A group's fields (XINFO GROUPS: name, consumers, pending, last-delivered-id, ...).
struct GroupState {
  bool found = false;
  long long pending = 0;
  std::string last_delivered = "0-0";
};
GroupState our_group(const Reply& groups) {
  GroupState g;
  if (groups.is_error()) return g;  // no stream yet
  for (const auto& one : groups.elements) {
    GroupState cur;
    bool ours = false;
    for (std::size_t k = 0; k + 1 < one.elements.size(); k += 2) {
      const auto& name = one.elements[k].str;
      const auto& v = one.elements[k + 1];
      if (name == "name") ours = v.str == detail::group;
      if (name == "pending") cur.pending = v.integer;
      if (name == "last-delivered-id") cur.last_delivered = v.str;
    }
    if (ours) {
      cur.found = true;
      return cur;
    }
  }
  return g;
}

}  // namespace

std::vector<Client::WorkerRecord> Client::workers() {
  auto head = ClientAccess::pipeline(
      *this, {cmd("TIME"), cmd("ZRANGE", std::string(detail::workers_key), "0", "-1", "WITHSCORES")});
  const std::int64_t now = time_ms(head.at(0));
  const Reply& listed = head.at(1);
  if (listed.is_error()) throw BrokerError("Client::workers() - " + listed.str);
  std::vector<WorkerRecord> out;
  std::vector<redis::Connection::Command> reads;
  for (std::size_t i = 0; i + 1 < listed.elements.size(); i += 2) {
    WorkerRecord w;
    w.name = listed.elements[i].str;
    w.heartbeat_ms = to_ll(listed.elements[i + 1].str);
    w.heartbeat_age_ms = std::max<std::int64_t>(0, now - w.heartbeat_ms);
    reads.push_back(cmd("HGETALL", detail::worker_key(w.name)));
    out.push_back(std::move(w));
  }
  if (reads.empty()) return out;
  auto hashes = ClientAccess::pipeline(*this, std::move(reads));
  for (std::size_t i = 0; i < out.size() && i < hashes.size(); ++i) {
    auto& w = out[i];
    const auto& f = hashes[i].elements;
    for (std::size_t k = 0; k + 1 < f.size(); k += 2) {
      const std::string& key = f[k].str;
      const std::string& v = f[k + 1].str;
      if (key == "host")
        w.host = v;
      else if (key == "pid")
        w.pid = static_cast<int>(to_ll(v));
      else if (key == "queues")
        w.queues = words(v);
      else if (key == "prefetch")
        w.prefetch = static_cast<std::size_t>(to_ll(v));
      else if (key == "started")
        w.started_ms = to_ll(v);
      else if (key == "running")
        w.running = words(v);
      else if (key == "succeeded")
        w.succeeded = static_cast<std::uint64_t>(to_ll(v));
      else if (key == "failed")
        w.failed = static_cast<std::uint64_t>(to_ll(v));
      else if (key == "retried")
        w.retried = static_cast<std::uint64_t>(to_ll(v));
      else if (key == "reaped")
        w.reaped = static_cast<std::uint64_t>(to_ll(v));
      else if (key == "labels") {
        boost::system::error_code ec;
        json::value l = json::parse(v, ec);
        if (!ec && l.is_object())
          for (const auto& [lk, lv] : l.as_object())
            if (lv.is_string()) w.labels.emplace_back(std::string(lk), std::string(lv.as_string()));
      }
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return out;
}

std::vector<std::string> Client::queues() {
  // atask:queues has every queue a task was put into (lua/00_library.lua, QUEUES).
  Reply r = ClientAccess::call(*this, cmd("SMEMBERS", "atask:queues"));
  std::set<std::string> found;
  for (const auto& q : r.elements) found.insert(q.str);
  for (auto& w : workers())
    for (auto& q : w.queues) found.insert(q);
  return {found.begin(), found.end()};
}

Client::QueueStats Client::queue_stats(std::string_view queue) {
  detail::check_queue_name("Client::queue_stats()", queue);
  std::vector<redis::Connection::Command> cs{cmd("TIME"), cmd("ZCARD", detail::delayed_key(queue)),
                                             cmd("XLEN", detail::dead_key(queue))};
  for (Priority p : all_priorities) {
    cs.push_back(cmd("XLEN", detail::stream_key(queue, p)));
    cs.push_back(cmd("XINFO", "GROUPS", detail::stream_key(queue, p)));
  }
  cs.push_back(cmd("ZCARD", detail::retrying_key(queue)));
  auto r = ClientAccess::pipeline(*this, std::move(cs));
  QueueStats s;
  s.queue = std::string(queue);
  const std::int64_t now = time_ms(r.at(0));
  s.delayed = static_cast<std::size_t>(std::max(0LL, r.at(1).integer));
  s.dead = static_cast<std::size_t>(std::max(0LL, r.at(2).integer));
  s.retrying = static_cast<std::size_t>(std::max(0LL, r.at(3 + 2 * priority_count).integer));
  // The oldest waiting entry of each priority: the first one after what the
  // group was last given (entry ids start with their time in ms).
  std::vector<redis::Connection::Command> firsts;
  for (std::size_t i = 0; i < priority_count; ++i) {
    const long long len = r.at(3 + 2 * i).integer;
    const GroupState g = our_group(r.at(4 + 2 * i));
    s.running += static_cast<std::size_t>(std::max(0LL, g.pending));
    s.queued[i] = static_cast<std::size_t>(std::max(0LL, len - g.pending));
    if (s.queued[i] > 0)
      firsts.push_back(cmd("XRANGE", detail::stream_key(queue, all_priorities[i]),
                           g.found ? "(" + g.last_delivered : std::string("-"), "+", "COUNT", "1"));
  }
  if (!firsts.empty()) {
    std::int64_t oldest = 0;
    for (const auto& one : ClientAccess::pipeline(*this, std::move(firsts))) {
      if (one.elements.empty() || one.elements[0].elements.empty()) continue;
      const std::int64_t ms = to_ll(one.elements[0].elements[0].str);  // "<ms>-<seq>"
      if (ms > 0 && (oldest == 0 || ms < oldest)) oldest = ms;
    }
    if (oldest > 0) s.oldest_ms = std::max<std::int64_t>(0, now - oldest);
  }
  return s;
}

std::size_t Client::purge(std::string_view queue) {
  detail::check_queue_name("Client::purge()", queue);
  std::size_t total = 0;
  for (;;) {
    redis::Connection::Command c = cmd("FCALL", "atask_purge", "5");
    for (Priority p : all_priorities) c.push_back(detail::stream_key(queue, p));
    c.push_back(detail::delayed_key(queue));
    c.push_back(std::string(queue));
    c.push_back("1000");
    const long long n = ClientAccess::call(*this, std::move(c)).integer;
    if (n <= 0) break;
    total += static_cast<std::size_t>(n);
  }
  return total;
}

}  // namespace atask::distributed
