#pragma once
/// @file
/// Cron expressions: parse one, and ask when it fires next, in a time zone.
///
/// @code
///   auto s = atask::CronSchedule::parse("30 2 * * MON-FRI", "Europe/Berlin");
///   auto t = s.next_after(std::chrono::system_clock::now());  // the next weekday 02:30 in Berlin
/// @endcode
///
/// Syntax: five fields (minute hour day-of-month month day-of-week) or six
/// (a leading second field). Each field is a comma list of `*`, `v`,
/// `a-b`, `*/n`, `a-b/n` or `a/n` (= `a-max/n`); months JAN-DEC and days
/// SUN-SAT by name (any case); 0 and 7 are both Sunday, and a day range may
/// end on Sunday (`FRI-SUN`, `5-0`). Shortcuts: @yearly, @annually,
/// @monthly, @weekly, @daily, @midnight, @hourly.
///
/// When both day fields are restricted (neither covers all its values), a
/// day matches if either one matches (Vixie cron's rule, as croniter
/// applies it: `*/2` counts as restricted).
///
/// Time zones and daylight saving time: the fields are read as wall-clock
/// time in the schedule's zone. A wall time skipped by a spring-forward
/// change fires at the instant it would have had on the old offset (02:30
/// in a gap from 02:00 to 03:00 fires at 03:30; never twice at one
/// instant). A wall time repeated by a fall-back change fires once, at its
/// first occurrence - unless the hour field is `*`, where every real
/// hour (minute, second) is meant and the repeated ones fire too.
/// docs/timers.md has the details and the few differences from croniter.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace atask {

/// A parsed cron expression and its time zone (an IANA name: "UTC",
/// "Europe/Berlin", ...). A value: cheap to copy, immutable.
///
/// @par Thread safety
/// Distinct objects: Safe. Shared objects: Safe.
class CronSchedule {
 public:
  /// Parses `expr`, read in `time_zone`.
  /// @throws OptionsError for a malformed expression, naming the field and
  ///         the text ("cron: minute field '61' is out of range 0-59"), for
  ///         one that can never fire ("0 0 30 2 *"), and for an unknown
  ///         time zone.
  static CronSchedule parse(std::string_view expr, std::string_view time_zone = "UTC");

  /// The first fire time strictly after `t`, to the second (to the minute
  /// with five fields). Every valid schedule has one.
  std::chrono::system_clock::time_point next_after(std::chrono::system_clock::time_point t) const;

  /// The expression as given.
  const std::string& expression() const noexcept;
  /// The time zone's name as given.
  const std::string& time_zone() const noexcept;

 private:
  struct Impl;
  explicit CronSchedule(std::shared_ptr<const Impl> impl) noexcept : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;
};

}  // namespace atask
