#pragma once
// The supervisor's named aloops: the default one (created on first use),
// those the user created, and the retired ones - stopped aloops are kept so
// that references to them stay valid.
//
// Lock: aloop_m, its own. It nests with no other supervisor lock (see the
// top of src/supervisor/supervisor.cpp).

#include <atask/aloop/aloop.hpp>
#include <atask/supervisor/supervisor.hpp>

#include "supervisor/lifecycle.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace atask::detail {

class AloopSet {
 public:
  /// `life` and `id` name the supervisor in errors; `default_name` is
  /// SupervisorOptions::default_aloop.
  AloopSet(const Lifecycle& life, std::string id, std::string default_name);
  AloopSet(const AloopSet&) = delete;
  AloopSet& operator=(const AloopSet&) = delete;

  /// The "aloops" step: starts every aloop created so far, and those
  /// created from now on.
  void start_all();
  /// The "aloops" step's stop: stops them all (their threads are joined
  /// outside aloop_m); none can be created afterwards.
  void stop_all();

  /// Supervisor::create_aloop(), aloop(), default_aloop(), stop_aloop().
  Aloop& create(const std::string& name, bool make_default);
  Aloop& find(std::string_view name);
  Aloop& default_aloop();
  void stop(std::string_view name);

  /// The caller runs on one of the running aloops.
  bool on_thread() const;
  std::vector<AloopInfo> infos() const;

 private:
  Aloop& start_locked(const std::string& name);

  const Lifecycle& life_;
  const std::string id_;

  mutable std::mutex aloop_m_;
  std::string default_name_;
  std::map<std::string, std::unique_ptr<Aloop>, std::less<>> aloops_;
  std::vector<std::unique_ptr<Aloop>> retired_;
  bool live_ = false, done_ = false;  // the "aloops" step started / stopped
};

}  // namespace atask::detail
