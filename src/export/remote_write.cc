#include "svcmap/export/remote_write.h"

#include <algorithm>
#include <cmath>
#include <iterator>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "fmt/format.h"
#include "proto/remote_write.pb.h"
#include "snappy.h"

namespace svcmap::exporter {

WriteBatch EncodeWriteRequest(const std::vector<prometheus::MetricFamily>& families,
                              const LabelPairs& extra, int64_t timestamp_ms,
                              const std::vector<std::vector<int64_t>>* created_ms,
                              int64_t since_ms) {
  prompb::WriteRequest req;
  WriteBatch batch;
  batch.timestamp_ms = timestamp_ms;
  // One series: sorted and unique label names, as the spec requires; empty
  // values are the same as no label, and the spec says to leave them out.
  // A counter whose series began since the last push starts with a 0 at
  // that moment, so that increase() counts its first value.
  auto series = [&](const std::string& name, const std::vector<prometheus::ClientMetric::Label>& own,
                    const char* extra_name, const std::string& extra_value, double value,
                    bool counter, int64_t created) {
    std::map<std::string, std::string> labels;
    for (const auto& [n, v] : extra) labels[n] = v;
    for (const prometheus::ClientMetric::Label& l : own) labels[l.name] = l.value;
    if (extra_name != nullptr) labels[extra_name] = extra_value;
    labels["__name__"] = name;
    prompb::TimeSeries* ts = req.add_timeseries();
    for (const auto& [n, v] : labels) {
      if (v.empty()) continue;
      prompb::Label* l = ts->add_labels();
      l->set_name(n);
      l->set_value(v);
    }
    if (counter && created > since_ms && value > 0) {
      prompb::Sample* zero = ts->add_samples();
      zero->set_value(0);
      zero->set_timestamp(std::min(created, timestamp_ms - 1));
      ++batch.samples;
    }
    prompb::Sample* s = ts->add_samples();
    s->set_value(value);
    s->set_timestamp(timestamp_ms);
    ++batch.samples;
  };
  for (size_t fi = 0; fi < families.size(); ++fi) {
    const prometheus::MetricFamily& f = families[fi];
    for (size_t mi = 0; mi < f.metric.size(); ++mi) {
      const prometheus::ClientMetric& m = f.metric[mi];
      int64_t created = 0;
      if (created_ms != nullptr && fi < created_ms->size() && mi < (*created_ms)[fi].size())
        created = (*created_ms)[fi][mi];
      switch (f.type) {
        case prometheus::MetricType::Counter:
          series(f.name, m.label, nullptr, "", m.counter.value, true, created);
          break;
        case prometheus::MetricType::Gauge:
          series(f.name, m.label, nullptr, "", m.gauge.value, false, created);
          break;
        case prometheus::MetricType::Histogram:
          // As a scrape would store it: cumulative _bucket counters by le,
          // _sum and _count.
          for (const prometheus::ClientMetric::Bucket& b : m.histogram.bucket)
            series(f.name + "_bucket", m.label, "le",
                   std::isinf(b.upper_bound) ? "+Inf" : fmt::format("{}", b.upper_bound),
                   static_cast<double>(b.cumulative_count), true, created);
          series(f.name + "_sum", m.label, nullptr, "", m.histogram.sample_sum, true, created);
          series(f.name + "_count", m.label, nullptr, "",
                 static_cast<double>(m.histogram.sample_count), true, created);
          break;
        default: break;  // svcmap exports no summaries
      }
    }
  }
  std::string raw = req.SerializeAsString();
  snappy::Compress(raw.data(), raw.size(), &batch.body);
  return batch;
}

absl::StatusOr<std::vector<DecodedSeries>> DecodeWriteRequest(std::string_view body) {
  std::string raw;
  if (!snappy::Uncompress(body.data(), body.size(), &raw))
    return absl::InvalidArgumentError("not snappy-compressed");
  prompb::WriteRequest req;
  if (!req.ParseFromString(raw)) return absl::InvalidArgumentError("not a WriteRequest");
  std::vector<DecodedSeries> out;
  for (const prompb::TimeSeries& ts : req.timeseries()) {
    DecodedSeries d;
    for (const prompb::Label& l : ts.labels()) d.labels.emplace_back(l.name(), l.value());
    for (const prompb::Sample& s : ts.samples()) d.samples.emplace_back(s.timestamp(), s.value());
    out.push_back(std::move(d));
  }
  return out;
}

absl::StatusOr<Endpoint> ParseEndpoint(const std::string& url) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(fmt::format("--remote-write {:?}: {}", url, why));
  };
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return bad("want http://host:port/path");
  std::string scheme = url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") return bad("only http and https");
  size_t host_start = scheme_end + 3;
  size_t path_start = url.find('/', host_start);
  std::string authority = url.substr(host_start, path_start - host_start);
  if (authority.empty()) return bad("no host");
  if (authority.find('@') != std::string::npos) return bad("credentials in the URL are not supported");
  // A port, if given, is a number in range; "[v6]:port" keeps its brackets.
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    int port = 0;
    if (!absl::SimpleAtoi(authority.substr(colon + 1), &port) || port <= 0 || port > 65535)
      return bad("bad port");
    if (colon == 0) return bad("no host");
  }
  Endpoint e;
  e.scheme_host_port = scheme + "://" + authority;
  e.path = path_start == std::string::npos ? "/" : url.substr(path_start);
  return e;
}

RemoteWriter::RemoteWriter(RemoteWriteOptions options) : options_(std::move(options)) {
  sender_ = std::thread([this] { Run(); });
}

RemoteWriter::~RemoteWriter() { Shutdown(absl::ZeroDuration()); }

void RemoteWriter::Enqueue(WriteBatch batch) {
  std::lock_guard<std::mutex> lock(mu_);
  auto dropped = [&](uint64_t n) {
    stats_.dropped_samples += n;
    if (stats_.failing_since != absl::InfinitePast()) stats_.dropped_while_failing += n;
  };
  if (stopping_ || batch.samples > options_.max_pending_samples) {
    dropped(batch.samples);
    return;
  }
  stats_.pending_samples += batch.samples;
  pending_.emplace_back(next_seq_++, std::move(batch));
  // Over the bound: the oldest go, so what reaches the store is recent. A
  // batch whose request is on the wire is not one of them: the store may
  // already have it, and counting it as dropped and then as sent would make
  // the two figures lie.
  while (stats_.pending_samples > options_.max_pending_samples) {
    auto oldest = pending_.begin();
    if (in_flight_ && oldest != pending_.end() && oldest->first == *in_flight_) ++oldest;
    if (oldest == pending_.end() || std::next(oldest) == pending_.end()) break;  // keep the newest
    stats_.pending_samples -= oldest->second.samples;
    dropped(oldest->second.samples);
    pending_.erase(oldest);
  }
  cv_.notify_one();
}

void RemoteWriter::Shutdown(absl::Duration grace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      deadline_ = absl::Now() + grace;
    }
  }
  cv_.notify_one();
  if (sender_.joinable()) sender_.join();
}

RemoteWriteStats RemoteWriter::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void RemoteWriter::Run() {
  net::HttpTimeouts timeouts{options_.timeout, options_.timeout};
  std::optional<net::HttpClient> client;
  const std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Encoding", "snappy"}, {"X-Prometheus-Remote-Write-Version", "0.1.0"}};
  absl::Duration backoff = options_.min_backoff;
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
    if (pending_.empty() || (stopping_ && absl::Now() >= deadline_)) break;
    // Sent from the front and removed only once the store has it, so a
    // retry resends the same samples in order.
    const uint64_t seq = pending_.front().first;
    WriteBatch batch = pending_.front().second;
    in_flight_ = seq;
    lock.unlock();
    absl::StatusOr<net::HttpResponse> res = absl::UnavailableError("no client");
    if (!client) {
      absl::StatusOr<net::Url> url = net::ParseUrl(options_.endpoint.scheme_host_port);
      absl::StatusOr<net::HttpClient> c =
          url.ok() ? net::HttpClient::Create(*url, options_.http, timeouts)
                   : absl::StatusOr<net::HttpClient>(url.status());
      if (c.ok()) client.emplace(*std::move(c));
      else res = c.status();
    }
    if (client)
      res = client->Post(options_.endpoint.path, batch.body, "application/x-protobuf", headers);
    lock.lock();
    in_flight_.reset();
    const int code = res.ok() ? res->status : 0;
    if (code >= 200 && code < 300) {
      stats_.sent_samples += batch.samples;
      stats_.last_error.clear();
      stats_.failing_since = absl::InfinitePast();
      stats_.dropped_while_failing = 0;
    } else if (code >= 400 && code < 500 && code != 429 && code != 401 && code != 403) {
      // The spec: a 4xx other than 429 will fail again, so do not retry.
      // Except 401 and 403: credentials are fixed by an operator without
      // the agent restarting (the files are read at each request), so the
      // backlog waits for them, bounded as for a store that is down.
      stats_.rejected_samples += batch.samples;
      stats_.last_error = net::DescribeStatus(*res);
    } else {
      ++stats_.failed_requests;
      if (stats_.failing_since == absl::InfinitePast()) stats_.failing_since = absl::Now();
      stats_.last_error = res.ok() ? net::DescribeStatus(*res) : std::string(res.status().message());
      absl::Time until = std::min(absl::Now() + backoff, deadline_);
      backoff = std::min(backoff * 2, options_.max_backoff);
      cv_.wait_until(lock, absl::ToChronoTime(until), [&] { return stopping_ && absl::Now() >= deadline_; });
      continue;
    }
    backoff = options_.min_backoff;
    // Still at the front: Enqueue() never drops the batch in flight.
    if (!pending_.empty() && pending_.front().first == seq) {
      stats_.pending_samples -= batch.samples;
      pending_.pop_front();
    }
  }
  for (const auto& [seq, b] : pending_) stats_.dropped_samples += b.samples;
  stats_.pending_samples = 0;
  pending_.clear();
}

}  // namespace svcmap::exporter
