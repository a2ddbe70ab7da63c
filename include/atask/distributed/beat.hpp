#pragma once
/// @file
/// Beat: sends named tasks on a schedule (cron expressions or intervals) to
/// the cluster. Run any number of beats, on any machines: each tick of a
/// schedule sends its task once.
///
/// @code
///   atask::distributed::Beat beat(sv, {
///       {.name = "nightly-report", .cron = "30 2 * * *", .time_zone = "Europe/Berlin",
///        .task = "report", .args = {"daily"}},
///       {.name = "heartbeat-check", .every = std::chrono::seconds(30), .task = "check"}},
///       {.broker = "redis://10.0.0.5:6379"});
///   sv.start();  // the "beat:<name>" step
/// @endcode
///
/// One beat at a time leads (a lease in Redis, renewed every lease / 3) and
/// fires the ticks; the others wait to take over. Correctness does not rest
/// on the lease: a tick fires only if it is later than the last one Redis
/// recorded for its schedule, in one atomic function, and the task's id is
/// made of the schedule's name and the tick, so two beats that both think
/// they lead (one paused past its lease and resumed) still send a tick once.

#include <atask/distributed/client.hpp>

#include <boost/json/array.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace atask {
class Supervisor;
}

namespace atask::distributed {

/// What a beat does with ticks it missed (all its beats down, say): fire
/// the latest one once (run_once), fire each (run_all, at most 1,000), or
/// none (skip). A tick counts as missed when it is more than
/// BeatOptions::grace old.
enum class MissedTicks : unsigned char { run_once, run_all, skip };
BOOST_DESCRIBE_ENUM(MissedTicks, run_once, run_all, skip)

struct BeatEntry {
  /// The schedule's name, unique in the cluster: letters, digits, _ . - : @ /.
  std::string name{};
  /// A cron expression (timers/cron.hpp), read in time_zone; or, instead,
  std::string cron{};
  std::string time_zone = "UTC";
  /// a fixed interval, counted from the schedule's last tick.
  std::chrono::milliseconds every{0};
  /// The task sent at each tick, with these arguments and options.
  std::string task{};
  boost::json::array args{};
  SendOptions send{};
  MissedTicks missed = MissedTicks::run_once;
};

struct BeatOptions {
  std::string broker = "redis://127.0.0.1:6379";
  /// This beat's name in Redis; empty: "<host>:<pid>:<random>".
  std::string name{};
  /// How long a leader's lease lasts without renewal; the others take over
  /// this long after the leader stopped renewing it.
  std::chrono::milliseconds lease{10'000};
  /// A tick older than this when the leader sees it counts as missed.
  std::chrono::milliseconds grace{2'000};
  std::chrono::milliseconds connect_timeout{5'000};
};

struct BeatInfo {
  std::string name;
  bool leader = false;
  std::uint64_t fired = 0;    ///< tasks this beat sent
  std::uint64_t skipped = 0;  ///< missed ticks it passed over (MissedTicks::skip, run_once)
};

/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe.
class Beat {
 public:
  /// Adds the step "beat:<name>" (after "loop"); create it before sv.start().
  /// @throws OptionsError for a malformed broker URL, an entry without a
  ///         name or task, a name given twice, a malformed cron expression or
  ///         time zone, an entry with both or neither of cron and every.
  Beat(Supervisor& sv, std::vector<BeatEntry> entries, BeatOptions options = {});
  ~Beat();
  Beat(const Beat&) = delete;
  Beat& operator=(const Beat&) = delete;

  /// Stops firing and gives up the lease. Idempotent; the supervisor's stop
  /// calls it too.
  void stop();
  BeatInfo info() const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace atask::distributed
