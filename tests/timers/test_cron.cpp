#include <atask/timers/cron.hpp>

#include <atask/core/errors.hpp>
#include <atask/supervisor.hpp>
#include <atask/timer.hpp>

#include <doctest/doctest.h>

#include "fixtures.hpp"

#include <chrono>
#include <ctime>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using Wall = std::chrono::system_clock;
using namespace test;

namespace {

// A UTC time from its parts: utc(2024, 3, 31, 1, 30).
Wall::time_point utc(int y, int mo, int d, int h = 0, int mi = 0, int s = 0) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  return Wall::from_time_t(timegm(&tm));
}

std::string text(Wall::time_point t) {
  const std::time_t c = Wall::to_time_t(t);
  std::tm tm{};
  gmtime_r(&c, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

// The next n fire times after `from`, as UTC text.
std::vector<std::string> next(const atask::CronSchedule& s, Wall::time_point from, int n) {
  std::vector<std::string> r;
  for (int i = 0; i < n; ++i) r.push_back(text(from = s.next_after(from)));
  return r;
}

std::vector<std::string> next(std::string_view expr, std::string_view zone, Wall::time_point from, int n) {
  return next(atask::CronSchedule::parse(expr, zone), from, n);
}

using V = std::vector<std::string>;

std::string parse_error(std::string_view expr, std::string_view zone = "UTC") {
  return what_of<atask::OptionsError>([&] { (void)atask::CronSchedule::parse(expr, zone); });
}

}  // namespace

TEST_SUITE("cron") {
  TEST_CASE("a parsed schedule keeps its expression and time zone") {
    const auto s = atask::CronSchedule::parse("*/5 * * * *", "Europe/Berlin");
    CHECK(s.expression() == "*/5 * * * *");
    CHECK(s.time_zone() == "Europe/Berlin");
    CHECK(atask::CronSchedule::parse("@daily").time_zone() == "UTC");
  }

  TEST_CASE("next_after is strictly after and to the minute with five fields") {
    CHECK(next("*/5 * * * *", "UTC", utc(2024, 5, 1, 10, 2, 30), 2) ==
          V{"2024-05-01 10:05:00Z", "2024-05-01 10:10:00Z"});
    CHECK(next("*/5 * * * *", "UTC", utc(2024, 5, 1, 10, 5), 1) == V{"2024-05-01 10:10:00Z"});
    CHECK(next("*/5 * * * *", "UTC", utc(2024, 5, 1, 10, 4, 59) + 999ms, 1) == V{"2024-05-01 10:05:00Z"});
    CHECK(next("* * * * *", "UTC", utc(2024, 12, 31, 23, 59, 1), 1) == V{"2025-01-01 00:00:00Z"});
  }

  TEST_CASE("six fields put the second first") {
    CHECK(next("*/20 * * * * *", "UTC", utc(2024, 5, 1, 10, 0, 45), 3) ==
          V{"2024-05-01 10:01:00Z", "2024-05-01 10:01:20Z", "2024-05-01 10:01:40Z"});
    CHECK(next("30 15 10 * * *", "UTC", utc(2024, 5, 1), 2) ==
          V{"2024-05-01 10:15:30Z", "2024-05-02 10:15:30Z"});
  }

  TEST_CASE("lists ranges and steps select the values they name") {
    CHECK(next("5,10-12,50-59/4 3 * * *", "UTC", utc(2024, 5, 1), 7) ==
          V{"2024-05-01 03:05:00Z", "2024-05-01 03:10:00Z", "2024-05-01 03:11:00Z", "2024-05-01 03:12:00Z",
            "2024-05-01 03:50:00Z", "2024-05-01 03:54:00Z", "2024-05-01 03:58:00Z"});
    // a/n runs from a to the field's maximum
    CHECK(next("0 20/2 * * *", "UTC", utc(2024, 5, 1), 3) ==
          V{"2024-05-01 20:00:00Z", "2024-05-01 22:00:00Z", "2024-05-02 20:00:00Z"});
  }

  TEST_CASE("month and day names are case-insensitive and mean their numbers") {
    const auto from = utc(2023, 11, 5);
    CHECK(next("0 0 * jAn-MAR mon-Fri", "UTC", from, 8) == next("0 0 * 1-3 1-5", "UTC", from, 8));
    CHECK(next("0 0 1 DEC,feb *", "UTC", from, 2) == V{"2023-12-01 00:00:00Z", "2024-02-01 00:00:00Z"});
  }

  TEST_CASE("0 and 7 are both Sunday and a day range may end on Sunday") {
    const auto from = utc(2024, 5, 1);  // a Wednesday
    CHECK(next("0 0 * * 7", "UTC", from, 2) == V{"2024-05-05 00:00:00Z", "2024-05-12 00:00:00Z"});
    CHECK(next("0 0 * * 0", "UTC", from, 2) == next("0 0 * * 7", "UTC", from, 2));
    CHECK(next("0 0 * * FRI-SUN", "UTC", from, 4) ==
          V{"2024-05-03 00:00:00Z", "2024-05-04 00:00:00Z", "2024-05-05 00:00:00Z", "2024-05-10 00:00:00Z"});
    CHECK(next("0 0 * * 5-0", "UTC", from, 4) == next("0 0 * * FRI-SUN", "UTC", from, 4));
  }

  TEST_CASE("the shortcuts are their five-field expressions") {
    const auto from = utc(2024, 5, 17, 13, 7);
    CHECK(next("@yearly", "UTC", from, 2) == next("0 0 1 1 *", "UTC", from, 2));
    CHECK(next("@annually", "UTC", from, 2) == next("0 0 1 1 *", "UTC", from, 2));
    CHECK(next("@monthly", "UTC", from, 2) == next("0 0 1 * *", "UTC", from, 2));
    CHECK(next("@weekly", "UTC", from, 2) == next("0 0 * * 0", "UTC", from, 2));
    CHECK(next("@daily", "UTC", from, 2) == next("0 0 * * *", "UTC", from, 2));
    CHECK(next("@MIDNIGHT", "UTC", from, 2) == next("0 0 * * *", "UTC", from, 2));
    CHECK(next(" @hourly ", "UTC", from, 2) == V{"2024-05-17 14:00:00Z", "2024-05-17 15:00:00Z"});
  }

  TEST_CASE("day 31 skips the months without one") {
    CHECK(next("0 0 31 * *", "UTC", utc(2024, 1, 31), 5) == V{"2024-03-31 00:00:00Z", "2024-05-31 00:00:00Z",
                                                              "2024-07-31 00:00:00Z", "2024-08-31 00:00:00Z",
                                                              "2024-10-31 00:00:00Z"});
  }

  TEST_CASE("February 29 fires in leap years only and 2100 is not one") {
    CHECK(next("0 12 29 2 *", "UTC", utc(2021, 3, 1), 2) ==
          V{"2024-02-29 12:00:00Z", "2028-02-29 12:00:00Z"});
    CHECK(next("0 12 29 2 *", "UTC", utc(2096, 3, 1), 1) == V{"2104-02-29 12:00:00Z"});
  }

  TEST_CASE("when both day fields are restricted either one selects a day") {
    // May 2024: the 13th is a Monday; Fridays are the 3rd, 10th, 17th.
    CHECK(next("0 0 13 * FRI", "UTC", utc(2024, 5, 1), 4) ==
          V{"2024-05-03 00:00:00Z", "2024-05-10 00:00:00Z", "2024-05-13 00:00:00Z", "2024-05-17 00:00:00Z"});
    // One of them '*' (or covering every value): the other one alone.
    CHECK(next("0 0 13 * *", "UTC", utc(2024, 5, 1), 1) == V{"2024-05-13 00:00:00Z"});
    CHECK(next("0 0 13 * 0-6", "UTC", utc(2024, 5, 1), 1) == V{"2024-05-13 00:00:00Z"});
    CHECK(next("0 0 * * FRI", "UTC", utc(2024, 5, 1), 1) == V{"2024-05-03 00:00:00Z"});
    // As croniter reads it, */2 is restricted too: odd days or Fridays.
    CHECK(next("0 0 */2 * FRI", "UTC", utc(2024, 5, 1), 3) ==
          V{"2024-05-03 00:00:00Z", "2024-05-05 00:00:00Z", "2024-05-07 00:00:00Z"});
    CHECK(next("0 0 */2 * FRI", "UTC", utc(2024, 5, 8), 2) ==
          V{"2024-05-09 00:00:00Z", "2024-05-10 00:00:00Z"});
  }

  TEST_CASE("fields are read in the schedule's time zone") {
    CHECK(next("0 9 * * *", "Asia/Kolkata", utc(2024, 1, 1), 2) ==
          V{"2024-01-01 03:30:00Z", "2024-01-02 03:30:00Z"});
    CHECK(next("0 9 * * *", "Europe/Berlin", utc(2024, 7, 1), 1) == V{"2024-07-01 07:00:00Z"});
    CHECK(next("0 9 * * *", "Europe/Berlin", utc(2024, 1, 1), 1) == V{"2024-01-01 08:00:00Z"});
  }

  TEST_CASE("a wall time skipped by spring forward fires once at its old-offset instant") {
    // Berlin, 2024-03-31: 02:00 CET becomes 03:00 CEST (01:00Z).
    CHECK(next("30 2 * * *", "Europe/Berlin", utc(2024, 3, 30, 12), 2) ==
          V{"2024-03-31 01:30:00Z", "2024-04-01 00:30:00Z"});  // 03:30 CEST, then 02:30 CEST
    CHECK(next("0 3 * * *", "Europe/Berlin", utc(2024, 3, 30, 12), 2) ==
          V{"2024-03-31 01:00:00Z", "2024-04-01 01:00:00Z"});
    // Every half hour: 01:30 CET, then 03:00 and 03:30 CEST - none twice.
    CHECK(next("*/30 * * * *", "Europe/Berlin", utc(2024, 3, 31, 0, 15), 3) ==
          V{"2024-03-31 00:30:00Z", "2024-03-31 01:00:00Z", "2024-03-31 01:30:00Z"});
    // Two skipped wall times: both fire, in order, after the change.
    CHECK(next("0,20 2 * * *", "Europe/Berlin", utc(2024, 3, 30, 12), 3) ==
          V{"2024-03-31 01:00:00Z", "2024-03-31 01:20:00Z", "2024-04-01 00:00:00Z"});
    // New York, 2024-03-10: 02:00 EST becomes 03:00 EDT (07:00Z).
    CHECK(next("0 2 * * *", "America/New_York", utc(2024, 3, 9, 12), 2) ==
          V{"2024-03-10 07:00:00Z", "2024-03-11 06:00:00Z"});
  }

  TEST_CASE("a wall time repeated by fall back fires once unless the hour field is a star") {
    // Berlin, 2024-10-27: 03:00 CEST becomes 02:00 CET (01:00Z).
    CHECK(next("30 2 * * *", "Europe/Berlin", utc(2024, 10, 26, 12), 2) ==
          V{"2024-10-27 00:30:00Z", "2024-10-28 01:30:00Z"});
    // Started inside the repeated hour, after the first 02:30: not again.
    CHECK(next("30 2 * * *", "Europe/Berlin", utc(2024, 10, 27, 1, 10), 1) == V{"2024-10-28 01:30:00Z"});
    // Every real half hour fires, the repeated ones too.
    CHECK(next("*/30 * * * *", "Europe/Berlin", utc(2024, 10, 27, 0, 15), 4) ==
          V{"2024-10-27 00:30:00Z", "2024-10-27 01:00:00Z", "2024-10-27 01:30:00Z", "2024-10-27 02:00:00Z"});
    // New York, 2024-11-03: 02:00 EDT becomes 01:00 EST (06:00Z).
    CHECK(next("30 1 * * *", "America/New_York", utc(2024, 11, 2, 12), 2) ==
          V{"2024-11-03 05:30:00Z", "2024-11-04 06:30:00Z"});
    CHECK(next("0 * * * *", "America/New_York", utc(2024, 11, 3, 4, 30), 3) ==
          V{"2024-11-03 05:00:00Z", "2024-11-03 06:00:00Z", "2024-11-03 07:00:00Z"});
  }

  TEST_CASE("every minute fires once per real minute through both DST changes") {
    for (const auto& [from, until] : {std::pair{utc(2024, 3, 30, 23), utc(2024, 3, 31, 3)},
                                      std::pair{utc(2024, 10, 26, 23), utc(2024, 10, 27, 3)}}) {
      const auto s = atask::CronSchedule::parse("* * * * *", "Europe/Berlin");
      int fired = 0;
      for (auto t = s.next_after(from); t <= until; t = s.next_after(t)) {
        CHECK(t == from + (fired + 1) * 1min);
        ++fired;
      }
      CHECK(fired == 240);
    }
  }

  TEST_CASE("a bad field names the field and the text") {
    CHECK(parse_error("61 * * * *") == "cron: minute field '61' is out of range 0-59");
    CHECK(parse_error("0 24 * * *") == "cron: hour field '24' is out of range 0-23");
    CHECK(parse_error("0 0 0 * *") == "cron: day-of-month field '0' is out of range 1-31");
    CHECK(parse_error("0 0 * 13 *") == "cron: month field '13' is out of range 1-12");
    CHECK(parse_error("0 0 * * 8") == "cron: day-of-week field '8' is out of range 0-7");
    CHECK(parse_error("60 0 0 * * *") == "cron: second field '60' is out of range 0-59");
    CHECK(contains(parse_error("*/0 * * * *"), "minute field '*/0' has a bad step"));
    CHECK(contains(parse_error("5-2 * * * *"), "minute field '5-2' is a reversed range"));
    CHECK(contains(parse_error("1,,2 * * * *"), "minute field '1,,2' has an empty list item"));
    CHECK(contains(parse_error("0 0 * foo *"), "month field 'foo' is not a number or a month name"));
    CHECK(
        contains(parse_error("0 0 * * sunday"), "day-of-week field 'sunday' is not a number or a day name"));
    CHECK(contains(parse_error("-1 * * * *"), "negative numbers are not allowed"));
    CHECK(contains(parse_error("x * * * *"), "minute field 'x' is not a number"));
  }

  TEST_CASE("a wrong field count or shortcut or zone and a never-firing day are refused") {
    CHECK(contains(parse_error("* * * *"), "has 4 fields; expected 5"));
    CHECK(contains(parse_error("* * * * * * *"), "has 7 fields"));
    CHECK(contains(parse_error(""), "has 0 fields"));
    CHECK(contains(parse_error("@fortnightly"), "unknown shortcut '@fortnightly'"));
    CHECK(contains(parse_error("0 0 30 2 *"), "never fires"));
    CHECK(contains(parse_error("0 0 31 4,6,9,11 *"), "never fires"));
    CHECK(parse_error("0 0 30 2 MON") == "<nothing thrown>");  // Mondays in February
    CHECK(parse_error("* * * * *", "Mars/Olympus_Mons") ==
          "cron: unknown time zone 'Mars/Olympus_Mons' (an IANA name such as 'UTC' or 'Europe/Berlin')");
  }
}

TEST_SUITE("timers") {
  TEST_CASE("cron every second fires twice and stops when canceled") {
    StartedSupervisor sv({});
    Event second;
    std::vector<Wall::time_point> when;  // aloop thread; read after `second`
    auto t = atask::cron(sv, "* * * * * *",
                         [&](atask::TimerControl& c) {
                           when.push_back(Wall::now());
                           if (c.runs() == 1) {
                             c.cancel();
                             second.set();
                           }
                         },
                         {.name = "every-second"});
    REQUIRE(second.wait_for());
    CHECK_FALSE(t.active());
    REQUIRE(eventually([&] { return t.runs() == 2; }));
    REQUIRE(when.size() == 2);
    CHECK(when[1] > when[0]);
  }

  TEST_CASE("cron reads its expression in the time zone option and takes a parsed schedule") {
    atask::Aloop loop("cron");
    loop.start();
    auto a = atask::cron(loop, "0 0 1 1 *", [] {}, {.time_zone = "Asia/Kolkata"});
    CHECK(a.active());
    const auto s = atask::CronSchedule::parse("@yearly", "America/New_York");
    auto b = atask::cron(loop, s, [] {});
    CHECK(b.active());
    CHECK(b.cancel());
    CHECK_FALSE(b.active());
  }

  TEST_CASE("cron refuses a bad expression, an unknown zone and a misplaced time zone option") {
    StartedSupervisor sv({});
    CHECK(what_of<atask::OptionsError>([&] { (void)atask::cron(sv, "61 * * * *", [] {}, {.name = "n"}); }) ==
          "atask::cron() 'n' - cron: minute field '61' is out of range 0-59");
    CHECK(contains(what_of<atask::OptionsError>(
                       [&] { (void)atask::cron(sv, "* * * * *", [] {}, {.time_zone = "Nowhere/Land"}); }),
                   "unknown time zone 'Nowhere/Land'"));
    CHECK(contains(
        what_of<atask::OptionsError>([&] { (void)atask::every(sv, 1s, [] {}, {.time_zone = "UTC"}); }),
        "TimerOptions::time_zone is for cron()"));
    const auto s = atask::CronSchedule::parse("@hourly");
    CHECK(
        contains(what_of<atask::OptionsError>([&] { (void)atask::cron(sv, s, [] {}, {.time_zone = "UTC"}); }),
                 "TimerOptions::time_zone is for cron()"));
  }
}
