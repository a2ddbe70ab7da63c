#pragma once
// What every benchmark here needs: percentiles, duration conversions, the
// process's RSS and load, and table cells.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace bench {

using clk = std::chrono::steady_clock;

inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * v.size()))];
}

inline double median(std::vector<double> v) {
  return percentile(std::move(v), .5);
}

inline double us(clk::duration d) {
  return std::chrono::duration<double, std::micro>(d).count();
}
inline double ms(clk::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}
inline double secs(clk::duration d) {
  return std::chrono::duration<double>(d).count();
}

/// Resident set size of this process, KiB (-1 if unknown).
inline long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

/// The 1, 5 and 15 minute load averages, as /proc/loadavg has them.
inline std::string loadavg() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

/// A table cell: v formatted with printf's format f.
inline std::string num(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

inline const char* yes(bool ok) {
  return ok ? "yes" : "NO";
}

}  // namespace bench
