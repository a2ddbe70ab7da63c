// Job keys and the result store (see job_store.hpp).
#include "jobs/job_store.hpp"

#include <atask/core/errors.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <vector>

namespace atask::detail {

namespace json = boost::json;
namespace fs = std::filesystem;
using sys_clock = std::chrono::system_clock;

namespace {

// A copy of v whose objects hold their keys in byte order, recursively:
// json::object keeps insertion order, so serializing the copy is canonical.
json::value sorted_copy(const json::value& v) {
  switch (v.kind()) {
    case json::kind::object: {
      const auto& o = v.get_object();
      std::vector<const json::key_value_pair*> kvs;
      kvs.reserve(o.size());
      for (const auto& kv : o) kvs.push_back(&kv);
      std::sort(kvs.begin(), kvs.end(), [](auto* a, auto* b) { return a->key() < b->key(); });
      json::object out;
      out.reserve(kvs.size());
      for (const auto* kv : kvs) out.emplace(kv->key(), sorted_copy(kv->value()));
      return out;
    }
    case json::kind::array: {
      json::array out;
      out.reserve(v.get_array().size());
      for (const auto& e : v.get_array()) out.push_back(sorted_copy(e));
      return out;
    }
    default:
      return v;
  }
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) != 1)
    throw Error("Jobs::key_of() - SHA-256 failed (OpenSSL EVP_Digest)");
  static constexpr char digits[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(2 * len);
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(digits[md[i] >> 4]);
    hex.push_back(digits[md[i] & 0xf]);
  }
  return hex;
}

// Writes `text` to `tmp`, then renames it to `dest` (atomic on one file system).
void write_atomically(const fs::path& tmp, const fs::path& dest, const std::string& text) {
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error("Jobs - cannot create " + tmp.string());
    f.write(text.data(), static_cast<std::streamsize>(text.size()));
    f.flush();
    if (!f) throw Error("Jobs - cannot write " + tmp.string());
  }
  fs::rename(tmp, dest);
}

std::optional<std::string> read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return std::nullopt;
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return std::nullopt;
  return std::move(ss).str();
}

}  // namespace

std::string canonical_json(const json::object& params) {
  return json::serialize(sorted_copy(json::value(params)));
}

std::string job_key(std::string_view type, const json::object& params) {
  std::string text(type);
  text.push_back('\n');
  text += canonical_json(params);
  return sha256_hex(text);
}

JobStore::JobStore(fs::path dir) : dir_(std::move(dir)) {
  std::random_device rd;
  const std::uint64_t v = (std::uint64_t{rd()} << 32) ^ rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  nonce_ = buf;
}

fs::path JobStore::temp_path(const std::string& key, std::uint64_t id, std::string_view suffix) const {
  return dir_ / (".tmp-" + key + "-" + std::to_string(id) + "-" + nonce_ + std::string(suffix));
}

std::optional<sys_clock::time_point> JobStore::find(const std::string& key, std::string_view type,
                                                    const json::object& params) const {
  std::error_code ec;
  const auto result = result_path(key);
  if (!fs::is_regular_file(result, ec)) return std::nullopt;
  const auto text = read_file(sidecar_path(key));
  if (!text) return std::nullopt;
  json::value side = json::parse(*text, ec);
  if (ec || !side.is_object()) return std::nullopt;
  const auto& o = side.get_object();
  const auto* t = o.if_contains("type");
  const auto* p = o.if_contains("params");
  if (!t || !t->is_string() || t->get_string() != type) return std::nullopt;
  if (!p || !p->is_object() || canonical_json(p->get_object()) != canonical_json(params)) return std::nullopt;
  const auto mtime = fs::last_write_time(result, ec);
  if (ec) return sys_clock::now();
  return std::chrono::time_point_cast<sys_clock::duration>(std::chrono::file_clock::to_sys(mtime));
}

void JobStore::store(const std::string& key, std::uint64_t id, std::string_view type,
                     const json::object& params, const fs::path& output) const {
  const auto side_tmp = temp_path(key, id, ".json");
  try {
    const json::object side{{"type", type}, {"params", params}};
    write_atomically(side_tmp, sidecar_path(key), json::serialize(side));
    fs::rename(output, result_path(key));
  } catch (...) {
    std::error_code ec;
    fs::remove(side_tmp, ec);
    throw;
  }
}

}  // namespace atask::detail
