#include "util/platform.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <pthread.h>

#include <exception>

namespace atask::detail {

std::shared_ptr<spdlog::logger> default_logger() {
  static const std::shared_ptr<spdlog::logger> logger = [] {
    auto l =
        std::make_shared<spdlog::logger>("atask", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    l->set_level(spdlog::level::info);
    return l;
  }();
  return logger;
}

void set_thread_name(std::string_view name) noexcept {
  char buf[16] = {};
  name.copy(buf, sizeof(buf) - 1);
  pthread_setname_np(pthread_self(), buf);
}

std::string describe(std::exception_ptr e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception (not derived from std::exception)";
  }
}

}  // namespace atask::detail
