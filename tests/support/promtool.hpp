#pragma once
// `promtool check metrics` on a text exposition (Debian's prometheus
// package, installed by scripts/setup.sh).

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

namespace test {

struct Promtool {
  bool found = false;
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

inline std::optional<std::string> promtool_path() {
  if (const char* env = std::getenv("PROMTOOL"); env && *env && ::access(env, X_OK) == 0) return env;
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const auto p = (dir.empty() ? std::string(".") : dir) + "/promtool";
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return std::nullopt;
}

// `promtool check metrics` with `text` on its stdin. For clean input it
// prints nothing and exits 0; lint problems are printed and exit 3, input
// it cannot parse exits 1.
inline Promtool check_with_promtool(const std::string& text) {
  Promtool r;
  const auto tool = promtool_path();
  if (!tool) return r;
  r.found = true;
  char name[] = "/tmp/atask-metrics-XXXXXX";
  const int fd = ::mkstemp(name);
  if (fd < 0) {
    r.output = "mkstemp failed";
    return r;
  }
  ::close(fd);
  {
    std::ofstream f(name, std::ios::binary);
    f << text;
  }
  const std::string cmd = "'" + *tool + "' check metrics < '" + name + "' 2>&1";
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
    const int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  } else {
    r.output = "popen failed";
  }
  ::unlink(name);
  return r;
}

}  // namespace test
