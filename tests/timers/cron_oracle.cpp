// The C++ side of the cron differential test (cron_differential.py): reads
// cases from stdin, one a line, "<zone>\t<expression>\t<start, Unix seconds>\t<count>",
// and prints for each "OK <t1> <t2> ..." (the next `count` fire times,
// Unix seconds, each strictly after the previous one) or "ERR <message>".
#include <atask/timers/cron.hpp>

#include <atask/core/errors.hpp>

#include <chrono>
#include <iostream>
#include <sstream>
#include <string>

int main() {
  std::ios::sync_with_stdio(false);
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string zone, expr, start_text, count_text;
    if (!std::getline(in, zone, '\t') || !std::getline(in, expr, '\t') ||
        !std::getline(in, start_text, '\t') || !std::getline(in, count_text)) {
      std::cout << "ERR malformed input line\n";
      continue;
    }
    try {
      const auto s = atask::CronSchedule::parse(expr, zone);
      std::chrono::system_clock::time_point t{std::chrono::seconds{std::stoll(start_text)}};
      std::cout << "OK";
      for (int i = 0, n = std::stoi(count_text); i < n; ++i) {
        t = s.next_after(t);
        std::cout << ' ' << std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
      }
      std::cout << '\n';
    } catch (const atask::OptionsError& e) {
      std::cout << "ERR " << e.what() << '\n';
    }
  }
}
