#pragma once
// A logger whose last lines a test can read: give logger() to the
// supervisor's options, then look for what it said in text().

#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace test {

class LogCapture {
 public:
  explicit LogCapture(std::size_t lines = 200)
      : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(lines)),
        logger_(std::make_shared<spdlog::logger>("capture", sink_)) {}

  std::shared_ptr<spdlog::logger> logger() const { return logger_; }

  /// The lines kept so far, formatted, one after the other.
  std::string text() const {
    std::string all;
    for (auto& l : sink_->last_formatted()) all += l;
    return all;
  }

  /// How many times `what` occurs in text().
  std::size_t count(std::string_view what) const {
    const std::string all = text();
    std::size_t n = 0;
    for (auto at = all.find(what); at != std::string::npos; at = all.find(what, at + 1)) ++n;
    return n;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
  std::shared_ptr<spdlog::logger> logger_;
};

}  // namespace test
