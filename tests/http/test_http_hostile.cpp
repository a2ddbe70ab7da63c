// 2,000 malformed or hostile requests against a running control plane:
// each gets a 4xx or a closed connection, the server keeps serving, memory
// stays flat, and the rest of the supervisor does not notice.
#include "http_client.hpp"
#include "fixtures.hpp"

#include <atask/atask.hpp>
#include <atask/http.hpp>
#include <atask/jobs.hpp>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <random>

using namespace std::chrono_literals;
namespace asio = boost::asio;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool sanitized = true;  // their allocators keep freed memory: RSS says nothing here
#else
constexpr bool sanitized = false;
#endif

long rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

// What the server did with one hostile exchange: the status of its reply,
// or 0 if it closed the connection without one.
struct Outcome {
  int status = 0;
  std::string head;
};

// Reads until the server closes. The socket's receive timeout is far above
// the server's request_timeout: a server that neither answers nor closes
// fails the test.
Outcome read_outcome(test::HttpConnection& c, const std::string& sent) {
  boost::system::error_code ec;
  std::string got;
  char buf[4096];
  for (;;) {
    const std::size_t n = c.socket().read_some(asio::buffer(buf), ec);
    got.append(buf, n);
    if (ec) break;
  }
  // EAGAIN here is the receive timeout: the server held the connection open.
  REQUIRE_MESSAGE(ec != asio::error::would_block,
                  "the server neither answered nor closed: ", sent.substr(0, 80));
  Outcome o;
  if (got.rfind("HTTP/1.", 0) == 0 && got.size() >= 12) o.status = std::stoi(got.substr(9, 3));
  o.head = got.substr(0, got.find("\r\n"));
  return o;
}

// Sends `bytes` (then, if `half_close`, ends the sending side) and reads
// what comes back until the server closes.
Outcome exchange(unsigned short port, const std::string& bytes, bool half_close) {
  test::HttpConnection c(port, std::chrono::seconds(20));
  boost::system::error_code ec;
  asio::write(c.socket(), asio::buffer(bytes), ec);  // the server may close before it read everything
  if (half_close) c.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  return read_outcome(c, bytes);
}

std::string req(const std::string& method, const std::string& target, const std::string& body = {},
                const std::string& extra = {}) {
  std::string r = method + " " + target + " HTTP/1.1\r\nHost: x\r\n" + extra;
  if (!body.empty() || method == "POST") r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return r + "Connection: close\r\n\r\n" + body;
}

// The hostile requests: each returns the bytes to send and whether the
// client then closes its sending side (false: it just stops sending).
std::vector<std::pair<std::string, bool>> hostile_requests(std::mt19937& rng) {
  std::vector<std::pair<std::string, bool>> all;
  auto add = [&](std::string s, bool half_close = true) { all.emplace_back(std::move(s), half_close); };
  auto junk = [&](std::size_t n) {
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng() & 0xff);
    return s;
  };
  // bad request lines
  add("GARBAGE\r\n\r\n");
  add("GET\r\n\r\n");
  add("GET / HTTP/9.9\r\nHost: x\r\n\r\n");
  add("GET / FTP/1.1\r\nHost: x\r\n\r\n");
  add("G\x01T / HTTP/1.1\r\nHost: x\r\n\r\n");
  add(" / HTTP/1.1\r\n\r\n");
  add("GET /api/supervisor HTTP/1.1 extra\r\n\r\n");
  add(std::string(3000, 'A') + " / HTTP/1.1\r\n\r\n");
  add("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + junk(64));  // a TLS ClientHello
  add(junk(1 + rng() % 512));
  add("GET / HTTP/1.1\nHost: x\n\n\x00\x00");
  // huge headers
  add("GET /api/supervisor HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(20000, 'b') + "\r\n\r\n");
  {
    std::string many = "GET /api/supervisor HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 2000; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
    add(many + "\r\n");
  }
  add("GET /" + std::string(20000, 'p') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  add("GET / HTTP/1.1\r\nHost: x\r\nBad Header Name: v\r\n\r\n");
  add("GET / HTTP/1.1\r\nHost: x\r\nX-Nul: a\0b\r\n\r\n");
  // truncated and inconsistent bodies
  add("POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n12345");
  add("POST /api/jobs/report HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{\"a\":");
  add("POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n1");
  add("POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n1");
  add("POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n12");
  add("POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n1");
  add("POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: "
      "chunked\r\n\r\nzz\r\n1\r\n0\r\n\r\n");
  add("POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n1");
  add("POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(1 << 20) +
      "\r\n\r\n" + std::string(70000, '1'));
  // invalid JSON and wrong types
  add(req("POST", "/api/workers/q/put", "{\"a\":"));
  add(req("POST", "/api/workers/q/put", "\"not a number\""));
  add(req("POST", "/api/workers/q/put", "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["));
  add(req("POST", "/api/workers/q/put", "1e999999"));
  add(req("POST", "/api/workers/q/put", junk(200)));
  add(req("POST", "/api/jobs/report", "[1,2,3]"));
  add(req("POST", "/api/jobs/report", "{\"x\": tru}"));
  add(req("POST", "/api/jobs/report", "\"\\ud800\""));
  add(req("POST", "/api/workers/tick/put", "1"));  // an interval worker takes no items
  // path tricks
  for (const char* t : {"/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/api/workers/..%2f..%2fetc",
                        "//api//workers", "/api/./supervisor", "/api/workers/%00", "/api/workers/%",
                        "/api/%zz", "*", "http://evil.example/api/supervisor", "/api/workers/a\x7f",
                        "/api/jobs/../metrics", "/api/tasks?status=../../x",
                        "/api/tasks?limit=99999999999999999999", "/api/nothing", "/metrics/../api"})
    add(req("GET", t));
  add(req("POST", "/api/workers/nope/start"));
  add(req("DELETE", "/api/supervisor"));
  add(req("PUT", "/api/workers/q/put", "1"));
  add(req("POST", "/api/supervisor"));
  add(req("BREW", "/"));
  // slow clients that stop sending (no half-close: they just go quiet)
  add("GET /api/supervisor HTTP/1.1\r\nHo", false);
  add("POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12", false);
  add("G", false);
  add("", false);
  return all;
}

}  // namespace

TEST_CASE("http: 2000 hostile requests get 4xx or a closed connection and disturb nothing") {
  const auto dir = std::filesystem::temp_directory_path() / ("atask-hostile-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  atask::Supervisor sv(test::options("hostile", 4));
  atask::Jobs jobs(sv, {.storage_dir = dir});
  jobs.add_type("report", [](atask::JobContext& j) { std::ofstream(j.output_path()) << "ok"; });
  auto server = atask::http::serve(sv, {.port = 0,
                                        .max_body_size = 64 * 1024,
                                        .max_header_size = 8 * 1024,
                                        .request_timeout = 300ms,
                                        .jobs = &jobs});
  std::atomic<long> sum{0};
  auto q = atask::queue_worker<long>(sv, [&](long x) { sum += x; }, {.name = "q"});
  auto tick = atask::interval_worker(sv, [] {}, {.name = "tick", .interval = 2ms});
  sv.start();
  q->start();
  tick->start();

  std::mt19937 rng(2026);
  const auto requests = hostile_requests(rng);
  REQUIRE(requests.size() >= 50);
  const auto port = server.port();

  long rss_after_warmup = 0;
  int sent = 0, closed = 0, answered = 0, round = 0;
  std::vector<std::string> failures;
  long expected_sum = 0;
  auto record = [&](const Outcome& o, const std::string& bytes) {
    ++sent;
    if (o.status == 0)
      ++closed;
    else if (o.status >= 400 && o.status < 500)
      ++answered;
    else
      failures.push_back(std::to_string(o.status) + " for: " + bytes.substr(0, 60));
  };
  auto run = [&](int count) {
    for (int k = 0; k < count; ++round) {
      const auto& [bytes, half_close] = requests[static_cast<std::size_t>(round) % requests.size()];
      // A quiet client costs a request_timeout each: take them in every
      // fifth pass only (the concurrent ones below are the real test).
      if (!half_close && (round / static_cast<int>(requests.size())) % 5 != 0) continue;
      record(exchange(port, bytes, half_close), bytes);
      ++k;
      // The server keeps serving, and work goes on, in between.
      if (sent % 100 == 0) {
        REQUIRE(test::http_request(port, "GET", "/api/supervisor").status == 200);
        REQUIRE(test::http_request(port, "POST", "/api/workers/q/put", std::to_string(sent)).status == 200);
        expected_sum += sent;
        auto t = sv.submit({}, [n = sent] { return n * 2; });
        REQUIRE(t.get_for(test::patience) == sent * 2);
      }
    }
  };

  // 100 slow clients at once, each sending part of a request and then
  // nothing: the server still answers others meanwhile, and cuts each off.
  {
    std::vector<std::unique_ptr<test::HttpConnection>> quiet;
    const std::string part = "POST /api/workers/q/put HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12";
    for (int i = 0; i < 100; ++i) {
      quiet.push_back(std::make_unique<test::HttpConnection>(port));
      asio::write(quiet.back()->socket(), asio::buffer(part));
    }
    REQUIRE(test::http_request(port, "GET", "/api/supervisor").status == 200);
    for (auto& c : quiet) record(read_outcome(*c, part), part);
  }

  run(400);  // warm-up: allocator pools, buffers, the history fill up
  rss_after_warmup = rss_kib();
  const auto ticks_before = tick->info().runs;
  run(1500);
  CHECK(sent == 2000);
  CHECK(failures.empty());
  for (auto& f : failures) MESSAGE(f);
  MESSAGE("answered with 4xx: " << answered << ", closed without an answer: " << closed);
  CHECK(answered > 1000);

  // Every connection is gone, and the server still serves.
  REQUIRE(test::eventually([&] { return server.stats().connections_open == 0; }));
  REQUIRE(test::http_request(port, "GET", "/metrics").status == 200);
  CHECK(server.stats().timeouts > 0);  // the quiet clients were cut off

  // The rest of the supervisor did not notice.
  REQUIRE(test::eventually([&] { return sum.load() == expected_sum; }));
  REQUIRE(test::eventually([&] { return tick->info().runs > ticks_before + 10; }));
  CHECK(tick->info().errors == 0);
  CHECK(q->info().errors == 0);
  CHECK(sv.info().tasks.failed[atask::index(atask::Priority::normal)] == 0);

  const long rss_end = rss_kib();
  MESSAGE("RSS after warm-up " << rss_after_warmup << " KiB, after 1500 more " << rss_end << " KiB");
  if (!sanitized) CHECK(rss_end - rss_after_warmup < 8 * 1024);

  q->stop();
  tick->stop();
  sv.stop();
  std::filesystem::remove_all(dir);
}
