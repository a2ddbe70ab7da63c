#include <atask/timers/cron.hpp>

#include <atask/core/errors.hpp>

// Howard Hinnant's date library (Debian's libhowardhinnant-date-dev, built
// with USE_OS_TZDB: it reads /usr/share/zoneinfo). GCC 12's <chrono> has no
// time zone database.
#include <date/date.h>
#include <date/tz.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <vector>

namespace atask {

namespace {

using std::chrono::seconds;
using sys_seconds = date::sys_seconds;
using local_seconds = date::local_seconds;

// One field's place in the expression, its range and its names.
struct FieldKind {
  const char* name;
  int min, max;  // max 7 for day-of-week: 7 is Sunday too
  const std::array<const char*, 12>* names;
  int first_name_value;  // value of names[0]
};

constexpr std::array<const char*, 12> month_names{"jan", "feb", "mar", "apr", "may", "jun",
                                                  "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr std::array<const char*, 12> day_names{"sun", "mon", "tue", "wed", "thu", "fri", "sat"};

constexpr FieldKind second_field{"second", 0, 59, nullptr, 0};
constexpr FieldKind minute_field{"minute", 0, 59, nullptr, 0};
constexpr FieldKind hour_field{"hour", 0, 23, nullptr, 0};
constexpr FieldKind dom_field{"day-of-month", 1, 31, nullptr, 0};
constexpr FieldKind month_field{"month", 1, 12, &month_names, 1};
constexpr FieldKind dow_field{"day-of-week", 0, 7, &day_names, 0};

[[noreturn]] void bad(const FieldKind& f, std::string_view item, const std::string& why) {
  throw OptionsError("cron: " + std::string(f.name) + " field '" + std::string(item) + "' " + why);
}

std::string lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A number or a name; range-checked by the caller.
int value_of(const FieldKind& f, std::string_view text, std::string_view item) {
  if (all_digits(text)) {
    if (text.size() > 4)
      bad(f, item, "is out of range " + std::to_string(f.min) + "-" + std::to_string(f.max));
    return std::stoi(std::string(text));
  }
  if (f.names) {
    const std::string l = lower(text);
    for (std::size_t i = 0; i < f.names->size(); ++i)
      if ((*f.names)[i] && l == (*f.names)[i]) return f.first_name_value + static_cast<int>(i);
    bad(f, item,
        std::string("is not a number or a ") + (f.names == &month_names ? "month" : "day") + " name");
  }
  bad(f, item, "is not a number");
}

// The set of values of one field, as bits (bit v = value v). Day-of-week 7
// is folded onto 0.
std::uint64_t parse_field(const FieldKind& f, std::string_view text) {
  std::uint64_t bits = 0;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t comma = text.find(',', pos);
    const std::string_view item = text.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
    if (item.empty()) bad(f, text, "has an empty list item");
    std::string_view base = item;
    int step = 1;
    bool stepped = false;
    if (const auto slash = item.find('/'); slash != std::string_view::npos) {
      base = item.substr(0, slash);
      const std::string_view s = item.substr(slash + 1);
      if (!all_digits(s) || s.size() > 4 || std::stoi(std::string(s)) == 0)
        bad(f, item, "has a bad step (a whole number >= 1 after '/')");
      step = std::stoi(std::string(s));
      stepped = true;
    }
    int lo = 0, hi = 0;
    if (base == "*") {
      lo = f.min;
      hi = f.max;
    } else if (const auto dash = base.find('-'); dash != std::string_view::npos) {
      if (dash == 0) bad(f, item, "is not a range (a-b) nor a number: negative numbers are not allowed");
      lo = value_of(f, base.substr(0, dash), item);
      hi = value_of(f, base.substr(dash + 1), item);
      if (&f == &dow_field && hi == 0 && lo > 0) hi = 7;  // FRI-SUN: Sunday as 7
      if (lo > hi) bad(f, item, "is a reversed range (the first value must not exceed the second)");
    } else if (base.empty()) {
      bad(f, item, "has no value before '/'");
    } else {
      lo = value_of(f, base, item);
      hi = stepped ? f.max : lo;  // a/n = a-max/n
    }
    if (lo < f.min || lo > f.max || hi > f.max)
      bad(f, item, "is out of range " + std::to_string(f.min) + "-" + std::to_string(f.max));
    for (int v = lo; v <= hi; v += step) bits |= std::uint64_t{1} << (&f == &dow_field && v == 7 ? 0 : v);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return bits;
}

std::uint64_t full(int min, int max) {
  std::uint64_t b = 0;
  for (int v = min; v <= max; ++v) b |= std::uint64_t{1} << v;
  return b;
}

// The lowest value >= from in `bits`, or -1.
int next_bit(std::uint64_t bits, int from) {
  if (from >= 64) return -1;
  const std::uint64_t rest = bits & (~std::uint64_t{0} << from);
  return rest ? std::countr_zero(rest) : -1;
}

std::string_view shortcut(const std::string& lowered) {
  if (lowered == "@yearly" || lowered == "@annually") return "0 0 1 1 *";
  if (lowered == "@monthly") return "0 0 1 * *";
  if (lowered == "@weekly") return "0 0 * * 0";
  if (lowered == "@daily" || lowered == "@midnight") return "0 0 * * *";
  if (lowered == "@hourly") return "0 * * * *";
  return {};
}

constexpr auto far = std::chrono::hours(24 * 366 * 20);  // beyond any valid schedule's next fire time

}  // namespace

struct CronSchedule::Impl {
  std::string expression, zone_name;
  const date::time_zone* zone = nullptr;
  std::uint64_t second = 0, minute = 0, hour = 0, dom = 0, month = 0, dow = 0;
  bool dom_all = false, dow_all = false, hour_all = false;

  bool day_matches(date::year_month_day ymd, date::weekday wd) const {
    const bool d = dom >> static_cast<unsigned>(ymd.day()) & 1;
    const bool w = dow >> wd.c_encoding() & 1;
    // Vixie cron: both restricted = either one; otherwise the restricted one.
    return (!dom_all && !dow_all) ? (d || w) : (d && w);
  }

  // The first matching wall time in [lo, hi), if any.
  std::optional<local_seconds> find(local_seconds lo, local_seconds hi) const {
    using namespace std::chrono;
    local_seconds l = lo;
    while (l < hi) {
      const date::local_days day = date::floor<date::days>(l);
      const date::year_month_day ymd{day};
      if (!(month >> static_cast<unsigned>(ymd.month()) & 1)) {
        l = date::local_days{(ymd.year() / ymd.month() + date::months{1}) / 1};
        continue;
      }
      if (!day_matches(ymd, date::weekday{day})) {
        l = day + date::days{1};
        continue;
      }
      const auto tod = l - day;
      const int h = static_cast<int>(duration_cast<hours>(tod).count());
      if (const int nh = next_bit(hour, h); nh != h) {
        l = nh < 0 ? day + date::days{1} : day + hours{nh};
        continue;
      }
      const int m = static_cast<int>(duration_cast<minutes>(tod - hours{h}).count());
      if (const int nm = next_bit(minute, m); nm != m) {
        l = nm < 0 ? day + hours{h + 1} : day + hours{h} + minutes{nm};
        continue;
      }
      const int s = static_cast<int>((tod - hours{h} - minutes{m}).count());
      if (const int ns = next_bit(second, s); ns != s) {
        l = ns < 0 ? day + hours{h} + minutes{m + 1} : day + hours{h} + minutes{m} + seconds{ns};
        continue;
      }
      return l;
    }
    return std::nullopt;
  }
};

CronSchedule CronSchedule::parse(std::string_view expr, std::string_view time_zone) {
  auto impl = std::make_shared<Impl>();
  impl->expression = std::string(expr);
  impl->zone_name = std::string(time_zone);

  std::string text(expr);
  const auto first = text.find_first_not_of(" \t\n\r");
  if (first != std::string::npos && text[first] == '@') {
    const auto last = text.find_last_not_of(" \t\n\r");
    const std::string name = lower(std::string_view(text).substr(first, last - first + 1));
    const std::string_view s = shortcut(name);
    if (s.empty())
      throw OptionsError("cron: unknown shortcut '" + name +
                         "' (known: @yearly @annually @monthly @weekly @daily @midnight @hourly)");
    text = std::string(s);
  }
  std::vector<std::string_view> fields;
  for (std::size_t i = 0; i < text.size();) {
    if (std::isspace(static_cast<unsigned char>(text[i]))) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    fields.push_back(std::string_view(text).substr(i, j - i));
    i = j;
  }
  if (fields.size() != 5 && fields.size() != 6)
    throw OptionsError("cron: '" + std::string(expr) + "' has " + std::to_string(fields.size()) +
                       " fields; expected 5 (minute hour day-of-month month day-of-week), 6 (a second "
                       "field first) or a shortcut such as @daily");
  const std::size_t k = fields.size() - 5;
  impl->second = k ? parse_field(second_field, fields[0]) : 1;
  impl->minute = parse_field(minute_field, fields[k]);
  impl->hour = parse_field(hour_field, fields[k + 1]);
  impl->dom = parse_field(dom_field, fields[k + 2]);
  impl->month = parse_field(month_field, fields[k + 3]);
  impl->dow = parse_field(dow_field, fields[k + 4]);
  impl->dom_all = impl->dom == full(1, 31);
  impl->dow_all = impl->dow == full(0, 6);
  impl->hour_all = impl->hour == full(0, 23);

  // Day-of-month alone decides the day: some selected month must have one
  // of the selected days (February counted with 29), or it never fires.
  if (!impl->dom_all && impl->dow_all) {
    constexpr int days_in[] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool possible = false;
    for (int m = 1; m <= 12; ++m)
      if (impl->month >> m & 1) possible |= (impl->dom & full(1, days_in[m])) != 0;
    if (!possible)
      throw OptionsError("cron: '" + std::string(expr) +
                         "' never fires: none of its months has any of its days of the month");
  }

  try {
    impl->zone = date::locate_zone(impl->zone_name);
  } catch (const std::runtime_error&) {
    throw OptionsError("cron: unknown time zone '" + impl->zone_name +
                       "' (an IANA name such as 'UTC' or 'Europe/Berlin')");
  }
  return CronSchedule(std::move(impl));
}

// The zone's timeline is a run of segments, each with one UTC offset; within
// a segment wall time and real time move together. So: look for the first
// matching wall time inside the segment that holds the earliest allowed
// instant, then in the next segment, and so on. Two rules make the seams
// behave (see the header):
//  - the wall times a spring-forward change skips fire at their old-offset
//    instant (02:30 fires at 03:30 new time): before the change the search
//    runs on over them, and just after it they compete with the real ones;
//  - after a fall-back change, the wall times that repeat the end of the
//    previous segment fire again only when the hour field is '*'.
std::chrono::system_clock::time_point CronSchedule::next_after(
    std::chrono::system_clock::time_point t) const {
  const Impl& s = *impl_;
  const sys_seconds start = date::floor<seconds>(t) + seconds{1};
  sys_seconds cur = start;  // the earliest instant still allowed
  for (;;) {
    if (cur - start > far)
      throw std::logic_error("CronSchedule::next_after() - no fire time within 20 years for '" +
                             s.expression + "'");
    const date::sys_info info = s.zone->get_info(cur);
    const seconds off = info.offset;
    const local_seconds lo{cur.time_since_epoch() + off};
    local_seconds hi = lo + far;
    if (info.end - cur < far) {
      const seconds next_off = s.zone->get_info(info.end).offset;
      hi = local_seconds{info.end.time_since_epoch() + std::max(off, next_off)};
    }
    // Just after a spring-forward change, the wall times the gap skipped
    // that are still to come (on the old offset) compete with the real ones.
    std::optional<sys_seconds> skipped;
    if (cur - info.begin < far) {
      const seconds prev_off = s.zone->get_info(info.begin - seconds{1}).offset;
      if (prev_off < off && cur < info.begin + (off - prev_off))
        if (const auto l = s.find(local_seconds{cur.time_since_epoch() + prev_off},
                                  local_seconds{info.begin.time_since_epoch() + off}))
          skipped = sys_seconds{l->time_since_epoch() - prev_off};
    }
    if (const auto l =
            s.find(lo, skipped ? std::min(hi, local_seconds{skipped->time_since_epoch() + off}) : hi)) {
      const sys_seconds when{l->time_since_epoch() - off};
      if (!s.hour_all && cur - info.begin < far) {
        const seconds prev_off = s.zone->get_info(info.begin - seconds{1}).offset;
        if (prev_off > off && *l < local_seconds{info.begin.time_since_epoch() + prev_off}) {
          cur = info.begin + (prev_off - off);  // past the repeated wall times
          continue;
        }
      }
      return when;
    }
    if (skipped) return *skipped;
    cur = info.end;
  }
}

const std::string& CronSchedule::expression() const noexcept {
  return impl_->expression;
}
const std::string& CronSchedule::time_zone() const noexcept {
  return impl_->zone_name;
}

}  // namespace atask
