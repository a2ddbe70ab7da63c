#include <atask/tasks/registry.hpp>

#include <boost/json/serialize.hpp>

#include <algorithm>

namespace atask {

namespace {

// Names go into Redis keys, logs, URLs and command lines: keep them plain.
void check_name(const std::string& n) {
  const auto ok = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-' || c == ':' || c == '@' || c == '/';
  };
  if (n.empty()) throw OptionsError("TaskRegistry::add() - the name is empty");
  if (n.size() > 200) throw OptionsError("TaskRegistry::add() - the name is longer than 200 characters");
  if (!std::all_of(n.begin(), n.end(), ok))
    throw OptionsError("TaskRegistry::add() - '" + n +
                       "': a task name has only letters, digits and _ . - : @ / (no spaces)");
}

}  // namespace

void TaskRegistry::merge(TaskRegistry& from) {
  if (&from == this) return;
  std::scoped_lock lk(m_, from.m_);
  for (const auto& [name, e] : from.entries_)
    if (entries_.contains(name))
      throw OptionsError("TaskRegistry::merge() - a task named '" + name + "' is already registered");
  entries_.merge(from.entries_);
}

void TaskRegistry::insert(Entry e) {
  check_name(e.info.name);
  if (e.info.kind != TaskKind::coroutine && !e.info.options.aloop.empty())
    throw OptionsError("TaskRegistry::add() - task '" + e.info.name + "': .aloop = '" + e.info.options.aloop +
                       "' is for coroutine tasks; this one runs " +
                       (e.info.kind == TaskKind::process ? "in a child process" : "on the pool"));
  e.info.options.retry.check(("TaskRegistry::add() - task '" + e.info.name + "'").c_str());
  e.info.options.limits.check(("TaskRegistry::add() - task '" + e.info.name + "'").c_str());
  if (e.info.options.time_limit.count() < 0)
    throw OptionsError("TaskRegistry::add() - task '" + e.info.name + "': time_limit is negative");
  std::lock_guard lk(m_);
  auto [it, added] = entries_.try_emplace(e.info.name, nullptr);
  if (!added)
    throw OptionsError("TaskRegistry::add() - a task named '" + e.info.name + "' is already registered");
  it->second = std::make_shared<const Entry>(std::move(e));
}

bool TaskRegistry::contains(std::string_view name) const {
  std::lock_guard lk(m_);
  return entries_.find(name) != entries_.end();
}

std::vector<std::string> TaskRegistry::names() const {
  std::lock_guard lk(m_);
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& [n, e] : entries_) out.push_back(n);
  return out;
}

std::optional<NamedTaskInfo> TaskRegistry::find(std::string_view name) const {
  std::lock_guard lk(m_);
  auto it = entries_.find(name);
  if (it == entries_.end()) return std::nullopt;
  return it->second->info;
}

TaskHandle<boost::json::value> TaskRegistry::submit(Supervisor& sv, std::string_view name,
                                                    boost::json::array args, CallOptions o) const {
  std::shared_ptr<const Entry> e;
  {
    std::lock_guard lk(m_);
    if (auto it = entries_.find(name); it != entries_.end()) e = it->second;
  }
  if (!e) {
    // A task that fails, like a call that reaches a worker with an unknown
    // name: the caller learns it from the handle.
    return sv.submit(
        TaskOptions{.priority = o.priority.value_or(Priority::normal), .name = std::string(name)},
        [n = std::string(name)]() -> boost::json::value {
          throw NotFoundError("no task named '" + n + "' is registered");
        });
  }
  const TaskOptions to{.priority = o.priority.value_or(e->info.options.priority),
                       .delay = o.delay,
                       .eta = o.eta,
                       .aloop = e->info.kind == TaskKind::coroutine ? e->info.options.aloop : std::string(),
                       .name = e->info.name};
  switch (e->info.kind) {
    case TaskKind::thread:
      return sv.submit(to, [e, a = std::move(args)] { return e->thread(a); });
    case TaskKind::coroutine:
      return sv.submit(to, [e, a = std::move(args)]() mutable { return e->coroutine(std::move(a)); });
    case TaskKind::process:
      if (args.size() != e->info.arity)
        return sv.submit(TaskOptions{.priority = to.priority, .name = to.name},
                         [n = e->info.name, want = e->info.arity, got = args.size()]() -> boost::json::value {
                           throw ConversionError("task '" + n + "': takes " + std::to_string(want) +
                                                 " argument" + (want == 1 ? "" : "s") + ", got " +
                                                 std::to_string(got));
                         });
      return sv.submit(to, e->process(boost::json::serialize(args)));
  }
  throw Error("TaskRegistry::submit() - task '" + e->info.name + "' has no kind");  // unreachable
}

}  // namespace atask
