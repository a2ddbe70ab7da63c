// The control plane's job routes: listing, one job, its result and its
// progress stream, and starting one.
#include "http/api.hpp"

#include <atask/core/errors.hpp>

#include <charconv>
#include <filesystem>
#include <fstream>

namespace atask::http::detail {

namespace json = boost::json;

std::string event_id(const JobInfo& j) {
  return std::to_string(j.id) + "-" + std::to_string(j.version);
}

std::optional<std::uint64_t> resume_version(std::string_view last_event_id, std::uint64_t job_id) {
  const auto dash = last_event_id.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  auto number = [](std::string_view s) -> std::optional<std::uint64_t> {
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return n;
  };
  const auto id = number(last_event_id.substr(0, dash));
  const auto version = number(last_event_id.substr(dash + 1));
  if (!id || !version || *id != job_id) return std::nullopt;
  return version;
}

Reply Api::jobs_get(Jobs& jobs_obj, std::string_view query) const {
  json::array types;
  for (auto& t : jobs_obj.types()) types.push_back(json::value(t));
  std::vector<JobInfo> list = jobs_obj.list();
  const auto status = query_param(query, "status"), offset_given = query_param(query, "offset");
  if (!status && !offset_given && !query_param(query, "limit")) {
    json::array jobs;
    for (const auto& j : list) jobs.push_back(job_json(j));
    return json_reply(json::object{{"types", std::move(types)}, {"jobs", std::move(jobs)}});
  }
  // A page. "finished" is done or failed: the jobs a history page lists.
  bool finished = false;
  std::optional<JobStatus> only;
  if (status) {
    finished = *status == "finished";
    if (!finished && !(only = from_string<JobStatus>(*status)))
      return error_reply(
          400, "unknown job status '" + std::string(*status) + "' (queued, running, done, failed, finished)");
  }
  std::size_t offset = 0;
  if (offset_given) {
    auto [p, ec] = std::from_chars(offset_given->data(), offset_given->data() + offset_given->size(), offset);
    if (offset_given->empty() || ec != std::errc() || p != offset_given->data() + offset_given->size())
      return error_reply(400, "offset must be a number from 0");
  }
  const auto limit = limit_param(query);
  if (!limit) return error_reply(400, "limit must be a number from 1 to 1000");
  std::erase_if(list, [&](const JobInfo& j) { return finished ? !j.finished() : only && j.status != *only; });
  std::sort(list.begin(), list.end(), [](const JobInfo& a, const JobInfo& b) { return a.id > b.id; });
  json::array jobs;
  for (std::size_t k = offset; k < list.size() && k - offset < *limit; ++k) jobs.push_back(job_json(list[k]));
  return json_reply(json::object{{"types", std::move(types)},
                                 {"jobs", std::move(jobs)},
                                 {"total", list.size()},
                                 {"offset", offset},
                                 {"limit", *limit}});
}

// GET /api/jobs/{type}/{id}: the job; .../events: its progress stream.
Outcome Api::job_get(Jobs& jobs, const Request& r, const std::vector<std::string>& seg) const {
  const std::string& type = seg[2];
  std::uint64_t id = 0;
  const std::string& digits = seg[3];
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), id);
  std::optional<Job> job;
  if (ec == std::errc() && p == digits.data() + digits.size()) job = jobs.find(id);
  std::optional<JobInfo> info;
  if (job) info = job->info();
  if (!info || info->type != type)
    return error_reply(404, "no job " + digits + " of type '" + type + "' (it may have left the history)");
  if (seg.size() == 4) return json_reply(job_json(*info));
  if (seg[4] == "result") return job_result(*info, r.method == "HEAD");
  const StreamFormat format = stream_format(r.accept);
  std::optional<std::uint64_t> seen;
  if (format == StreamFormat::sse) seen = resume_version(r.last_event_id, id);
  return StreamJob{std::move(*job), format, seen};
}

// GET /api/jobs/{type}/{id}/result: the job's own result file, never a path
// from the request. Read on the pool (a file of megabytes must not hold up
// the loop), whole into the reply, up to max_result_size.
Outcome Api::job_result(const JobInfo& j, bool head) const {
  const std::string which = "job " + std::to_string(j.id) + " of type '" + j.type + "'";
  if (j.status == JobStatus::failed)
    return error_reply(409, which + " failed, so it has no result (" + j.error + ")");
  if (j.status != JobStatus::done || j.result_path.empty())
    return error_reply(409,
                       which + " is " + std::string(to_string(j.status)) + ": its result is not ready yet");
  return OnPool{[path = j.result_path, which, head, cap = opt_.max_result_size,
                 disposition = "attachment; filename=\"" + result_name(j) + "\""]() -> Reply {
    namespace fs = std::filesystem;
    auto gone = [&] { return error_reply(404, "the result file of " + which + " is no longer in storage"); };
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return gone();
    const std::uintmax_t size = fs::file_size(path, ec);
    if (ec) return gone();
    auto too_big = [&](std::uintmax_t n) {
      return error_reply(500, "the result file of " + which + " is " + std::to_string(n) +
                                  " bytes, more than the " + std::to_string(cap) +
                                  " this server sends (ServerOptions::max_result_size: replies are built "
                                  "in memory); read it from the Jobs storage_dir");
    };
    if (size > cap) return too_big(size);
    Reply out{.status = 200,
              .body = {},
              .content_type = "application/octet-stream",
              .content_disposition = disposition};
    if (head) {
      out.head_length = size;
      return out;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) return gone();
    // Read to the end rather than `size` bytes: the length sent is what was read.
    out.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    if (in.bad()) return error_reply(500, "the result file of " + which + " could not be read");
    if (out.body.size() > cap) return too_big(out.body.size());
    return out;
  }};
}

Outcome Api::jobs_post(Jobs& jobs, const std::string& type, const Request& r) const {
  if (!jobs.has_type(type)) return error_reply(404, "no job type named '" + type + "'");
  json::value params;
  try {
    params = parse_body(r.body, json::object{});
  } catch (const ConversionError& e) {
    return error_reply(400, e.what());
  }
  if (!params.is_object()) return error_reply(400, "the job parameters must be a JSON object");
  try {
    Job job = jobs.ensure_run(type, std::move(params.as_object()));
    const StreamFormat format = stream_format(r.accept);
    std::optional<std::uint64_t> seen;
    // A fetch()-based SSE client re-posts with Last-Event-ID; if the same
    // parameters now name another job (a failed one is run again), the id
    // does not match and it gets that job from its start.
    if (format == StreamFormat::sse) seen = resume_version(r.last_event_id, job.id());
    return StreamJob{std::move(job), format, seen};
  } catch (const NotFoundError& e) {
    return error_reply(404, e.what());
  } catch (const LifecycleError& e) {
    return error_reply(503, e.what());
  } catch (const OptionsError& e) {
    return error_reply(400, e.what());
  }
}

}  // namespace atask::http::detail
