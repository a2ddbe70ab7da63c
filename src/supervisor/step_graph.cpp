#include "supervisor/step_graph.hpp"

#include <atask/core/errors.hpp>

#include <algorithm>
#include <set>
#include <string_view>
#include <unordered_map>

namespace atask::detail {

std::vector<std::size_t> resolve(const std::vector<StepSlot>& steps, const std::string& call) {
  const std::size_t n = steps.size();
  std::unordered_map<std::string_view, std::size_t> at;
  for (std::size_t i = 0; i < n; ++i) at.emplace(steps[i].step.name, i);
  std::vector<std::vector<std::size_t>> deps(n), users(n);
  for (std::size_t i = 0; i < n; ++i) {
    for (const auto& d : steps[i].step.depends_on) {
      auto it = at.find(d);
      if (it == at.end())
        throw OptionsError(call + " - step '" + steps[i].step.name + "' depends on '" + d +
                           "', which is not a step");
      if (std::find(deps[i].begin(), deps[i].end(), it->second) != deps[i].end()) continue;
      deps[i].push_back(it->second);
      users[it->second].push_back(i);
    }
  }
  std::vector<std::size_t> waiting(n), order;
  std::set<std::size_t> ready;
  for (std::size_t i = 0; i < n; ++i)
    if ((waiting[i] = deps[i].size()) == 0) ready.insert(i);
  while (!ready.empty()) {
    const std::size_t i = *ready.begin();
    ready.erase(ready.begin());
    order.push_back(i);
    for (auto u : users[i])
      if (--waiting[u] == 0) ready.insert(u);
  }
  if (order.size() == n) return order;
  // Every step left waits for another one left: walk those waits from the
  // first such step until one repeats - that is a cycle.
  std::vector<char> placed(n, 0);
  for (auto i : order) placed[i] = 1;
  std::size_t cur = 0;
  while (placed[cur]) ++cur;
  std::vector<std::size_t> path;
  std::vector<std::ptrdiff_t> pos(n, -1);
  while (pos[cur] < 0) {
    pos[cur] = static_cast<std::ptrdiff_t>(path.size());
    path.push_back(cur);
    cur = *std::find_if(deps[cur].begin(), deps[cur].end(), [&](std::size_t d) { return !placed[d]; });
  }
  std::string cycle;
  for (auto i = static_cast<std::size_t>(pos[cur]); i < path.size(); ++i)
    cycle += steps[path[i]].step.name + " -> ";
  cycle += steps[cur].step.name;
  throw OptionsError(call + " - step cycle: " + cycle + " (each step depends on the next)");
}

std::string joined(const std::vector<StepSlot>& steps, const std::vector<std::size_t>& order) {
  std::string s;
  for (auto i : order) s += (s.empty() ? "" : " -> ") + steps[i].step.name;
  return s;
}

}  // namespace atask::detail
