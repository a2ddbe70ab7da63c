#pragma once
// Where Jobs keep their results (see docs/jobs.md, "Storage"): the key of a
// job (SHA-256 of its type and canonical params), the file names derived
// from it, and the sidecar protocol that makes a stored result trustworthy.

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace atask::detail {

/// Hex SHA-256 of `type`, a newline and the params serialized with object
/// keys sorted (recursively).
std::string job_key(std::string_view type, const boost::json::object& params);

/// Params serialized with object keys sorted, recursively.
std::string canonical_json(const boost::json::object& params);

class JobStore {
 public:
  /// `dir` must exist. Each store has a random nonce for its temp names.
  explicit JobStore(std::filesystem::path dir);

  std::filesystem::path result_path(const std::string& key) const { return dir_ / (key + ".result"); }
  std::filesystem::path sidecar_path(const std::string& key) const { return dir_ / (key + ".json"); }
  /// A job's output while it is written. Temp names carry the job id and
  /// this store's nonce: two stores (or processes) over one directory may
  /// run the same key at once, with the same ids, and must not write into
  /// each other's file.
  std::filesystem::path temp_path(const std::string& key, std::uint64_t id,
                                  std::string_view suffix = {}) const;

  /// The result of an earlier run, if its sidecar says it is for exactly
  /// this type and these params (a hash collision or a tampered file never
  /// returns someone else's result). Returns the result's mtime.
  std::optional<std::chrono::system_clock::time_point> find(const std::string& key, std::string_view type,
                                                            const boost::json::object& params) const;

  /// Makes `output` the result for key: writes the sidecar atomically first
  /// (a result is never visible without the sidecar that vouches for it),
  /// then renames the output into place. Throws atask::Error or
  /// std::filesystem::filesystem_error; leaves no temp sidecar behind.
  void store(const std::string& key, std::uint64_t id, std::string_view type,
             const boost::json::object& params, const std::filesystem::path& output) const;

 private:
  std::filesystem::path dir_;
  std::string nonce_;  // hex, unique per store
};

}  // namespace atask::detail
