#pragma once
// Private helpers shared by the compiled parts: logging default, thread
// names, a CPU pause for bounded spins.

#include <memory>
#include <string>
#include <string_view>

namespace spdlog {
class logger;
}

namespace atask::detail {

/// The "atask" logger used when the user hands in none: stderr, colored,
/// level info. Not registered in spdlog's global registry (users may have
/// their own "atask" logger there).
std::shared_ptr<spdlog::logger> default_logger();

/// Names the calling thread (Linux keeps 15 characters).
void set_thread_name(std::string_view name) noexcept;

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

/// what() of an exception_ptr, or a fixed text for non-std exceptions.
std::string describe(std::exception_ptr e);

}  // namespace atask::detail
