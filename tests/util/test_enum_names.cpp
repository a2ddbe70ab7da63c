// Convention (b): every state, status, stage and priority is an enum with
// one to_string and one from_string (atask/util/enum_names.hpp). The
// strings are the HTTP API's JSON, the metrics' labels and the logs': they
// are pinned here, enumerator by enumerator.

#include <atask/util/enum_names.hpp>

#include <atask/jobs.hpp>
#include <atask/supervisor.hpp>
#include <atask/worker_info.hpp>
#include <atask/workers/event.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <boost/describe/enumerators.hpp>
#include <boost/mp11/algorithm.hpp>

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

using namespace test;

namespace {

// A test-only enum with two names that differ from their enumerators, to
// check the documented override.
namespace wire {
enum class Mode : unsigned char { plain, dash_ed, other };
BOOST_DESCRIBE_ENUM(Mode, plain, dash_ed, other)
constexpr std::string_view enum_name_override(Mode m) noexcept {
  switch (m) {
    case Mode::dash_ed:
      return "dash-ed";
    case Mode::other:
      return "something else";
    default:
      return "";
  }
}
}  // namespace wire

// The names of every described enumerator of E, in declaration order, and a
// check that each one parses back to its enumerator.
template <class E>
std::vector<std::string> names_round_trip() {
  std::vector<std::string> out;
  boost::mp11::mp_for_each<boost::describe::describe_enumerators<E>>([&](auto d) {
    const std::string_view n = atask::to_string(d.value);
    INFO("enumerator ", d.name);
    CHECK(n != "?");
    const auto back = atask::from_string<E>(n);
    REQUIRE(back.has_value());
    CHECK(*back == d.value);
    out.emplace_back(n);
  });
  CHECK(atask::enumerators<E>().size() == out.size());
  return out;
}

using Names = std::vector<std::string>;

}  // namespace

TEST_SUITE("enum_names") {
  TEST_CASE("every atask enum round-trips through to_string and from_string with today's names") {
    CHECK(names_round_trip<atask::Priority>() == Names{"low", "normal", "high", "critical"});
    CHECK(names_round_trip<atask::WorkerState>() == Names{"stopped", "active", "stopping"});
    CHECK(names_round_trip<atask::WorkerKind>() == Names{"background", "event", "interval", "queue"});
    CHECK(names_round_trip<atask::TriggerMode>() == Names{"coalesce", "force"});
    CHECK(names_round_trip<atask::TaskStatus>() ==
          Names{"queued", "delayed", "started", "completed", "failed", "canceled"});
    CHECK(names_round_trip<atask::TaskKind>() == Names{"thread", "coroutine", "process"});
    CHECK(names_round_trip<atask::StopStage>() == Names{"none", "warm", "soft", "cold"});
    CHECK(names_round_trip<atask::JobStatus>() == Names{"queued", "running", "done", "failed"});
    CHECK(names_round_trip<atask::SupervisorState>() == Names{"created", "running", "stopping", "stopped"});
    CHECK(names_round_trip<atask::StepState>() == Names{"created", "running", "failed", "stopped"});
  }

  TEST_CASE("the described enumerators cover every value: all_priorities and priority_count agree") {
    CHECK(atask::enumerators<atask::Priority>() == atask::all_priorities);
    CHECK(atask::enumerators<atask::TaskKind>().size() == atask::task_kind_count);
  }

  TEST_CASE("from_string accepts exact names only") {
    for (std::string_view bad : {"", "?", "High", " high", "high ", "hi", "highest", "0", "2"})
      CHECK_FALSE(atask::from_string<atask::Priority>(bad).has_value());
    CHECK_FALSE(atask::from_string<atask::TaskStatus>("cancelled").has_value());
    CHECK_FALSE(atask::from_string<atask::SupervisorState>("Running").has_value());
  }

  TEST_CASE("a value that is no enumerator is named '?'") {
    CHECK(atask::to_string(static_cast<atask::Priority>(200)) == "?");
    CHECK(atask::to_string(static_cast<atask::StepState>(9)) == "?");
  }

  TEST_CASE("to_string and from_string are usable in constant expressions") {
    static_assert(atask::to_string(atask::Priority::critical) == "critical");
    static_assert(atask::from_string<atask::JobStatus>("done") == atask::JobStatus::done);
    static_assert(!atask::from_string<atask::JobStatus>("gone"));
    CHECK(true);
  }

  TEST_CASE("an enum_name_override renames enumerators on both ways and leaves the others") {
    CHECK(atask::to_string(wire::Mode::plain) == "plain");
    CHECK(atask::to_string(wire::Mode::dash_ed) == "dash-ed");
    CHECK(atask::to_string(wire::Mode::other) == "something else");
    CHECK(names_round_trip<wire::Mode>() == Names{"plain", "dash-ed", "something else"});
    CHECK_FALSE(atask::from_string<wire::Mode>("dash_ed").has_value());  // the enumerator's own name is gone
    CHECK_FALSE(atask::from_string<wire::Mode>("other").has_value());
  }

  TEST_CASE("to_string is found by argument-dependent lookup, as the library's call sites use it") {
    CHECK(to_string(atask::TaskStatus::failed) == "failed");
    CHECK(to_string(atask::SupervisorState::stopping) == "stopping");
  }
}

TEST_SUITE("enum_names") {
  TEST_CASE("SupervisorInfo::state and StepInfo::state are enums through a supervisor's life") {
    atask::Supervisor sv(options("enum-life", 1));
    sv.add_step({.name = "boom", .depends_on = {"pool"}, .start = [](atask::Supervisor&) {
                   throw std::runtime_error("boom");
                 }});
    sv.add_step({.name = "after", .depends_on = {"boom"}});
    auto state_of = [&](std::string_view n) {
      for (const auto& s : sv.info().steps)
        if (s.name == n) return s.state;
      FAIL("no step named " << n);
      return atask::StepState::created;
    };
    atask::SupervisorInfo i = sv.info();
    CHECK(i.state == atask::SupervisorState::created);
    CHECK(to_string(i.state) == "created");
    CHECK(state_of("pool") == atask::StepState::created);

    CHECK_THROWS_AS(sv.start(), atask::Error);  // "boom" fails: the started steps stop again
    i = sv.info();
    CHECK(i.state == atask::SupervisorState::stopped);
    CHECK(to_string(i.state) == "stopped");
    CHECK(state_of("pool") == atask::StepState::stopped);
    CHECK(state_of("boom") == atask::StepState::failed);
    CHECK(to_string(state_of("boom")) == "failed");
    CHECK(state_of("after") == atask::StepState::created);
  }

  TEST_CASE("a running supervisor reports running for itself and its steps") {
    StartedSupervisor sv(options("enum-run", 1));
    const auto i = sv.info();
    CHECK(i.state == atask::SupervisorState::running);
    CHECK(to_string(i.state) == "running");
    REQUIRE_FALSE(i.steps.empty());
    for (const auto& s : i.steps) {
      INFO("step ", s.name);
      CHECK(s.state == atask::StepState::running);
      CHECK(to_string(s.state) == "running");
    }
  }
}
