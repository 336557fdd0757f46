#include "common/metrics.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace fulcrum {
namespace {

// A label value in the exposition format: backslash, quote and newline
// escaped.
std::string EscapeLabel(absl::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return absl::StrFormat("%.17g", v);
}

}  // namespace

void Counter::Increment(double amount) {
  if (!(amount >= 0)) return;  // counters only go up
  double current = value_.load(std::memory_order_relaxed);
  while (!value_.compare_exchange_weak(current, current + amount, std::memory_order_relaxed)) {
  }
}

double Counter::value() const { return value_.load(std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::Observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  absl::MutexLock lock(&mu_);
  ++counts_[i];
  ++count_;
  sum_ += value;
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  absl::MutexLock lock(&mu_);
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    s.cumulative.push_back(running);
  }
  s.count = count_;
  s.sum = sum_;
  return s;
}

std::vector<double> LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};
}

Counter* MetricsRegistry::AddCounter(const std::string& name, const std::string& help) {
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->help = help;
  e->type = "counter";
  e->counter = std::make_unique<Counter>();
  Counter* out = e->counter.get();
  absl::MutexLock lock(&mu_);
  entries_.push_back(std::move(e));
  return out;
}

Gauge* MetricsRegistry::AddGauge(const std::string& name, const std::string& help) {
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->help = help;
  e->type = "gauge";
  e->gauge = std::make_unique<Gauge>();
  Gauge* out = e->gauge.get();
  absl::MutexLock lock(&mu_);
  entries_.push_back(std::move(e));
  return out;
}

void MetricsRegistry::AddCallbackGauge(const std::string& name, const std::string& help,
                                       std::function<double()> read) {
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->help = help;
  e->type = "gauge";
  e->callback = std::move(read);
  absl::MutexLock lock(&mu_);
  entries_.push_back(std::move(e));
}

void MetricsRegistry::AddCallbackFamily(const std::string& name, const std::string& help,
                                        const std::string& type, const std::string& label,
                                        std::function<LabeledValues()> read) {
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->help = help;
  e->type = type;
  e->label = label;
  e->family = std::move(read);
  absl::MutexLock lock(&mu_);
  entries_.push_back(std::move(e));
}

Histogram* MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                         std::vector<double> bounds) {
  auto e = std::make_unique<Entry>();
  e->name = name;
  e->help = help;
  e->type = "histogram";
  e->histogram = std::make_unique<Histogram>(std::move(bounds));
  Histogram* out = e->histogram.get();
  absl::MutexLock lock(&mu_);
  entries_.push_back(std::move(e));
  return out;
}

std::string MetricsRegistry::Render() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& e : entries_) {
    absl::StrAppend(&out, "# HELP ", e->name, " ", e->help, "\n");
    absl::StrAppend(&out, "# TYPE ", e->name, " ", e->type, "\n");
    if (e->counter) {
      absl::StrAppend(&out, e->name, " ", FormatValue(e->counter->value()), "\n");
    } else if (e->gauge) {
      absl::StrAppend(&out, e->name, " ", FormatValue(e->gauge->value()), "\n");
    } else if (e->callback) {
      absl::StrAppend(&out, e->name, " ", FormatValue(e->callback()), "\n");
    } else if (e->family) {
      for (const auto& [value, number] : e->family()) {
        absl::StrAppend(&out, e->name, "{", e->label, "=\"", EscapeLabel(value), "\"} ",
                        FormatValue(number), "\n");
      }
    } else if (e->histogram) {
      const Histogram::Snapshot s = e->histogram->snapshot();
      for (size_t i = 0; i < s.bounds.size(); ++i) {
        absl::StrAppend(&out, e->name, "_bucket{le=\"", FormatValue(s.bounds[i]), "\"} ",
                        s.cumulative[i], "\n");
      }
      absl::StrAppend(&out, e->name, "_bucket{le=\"+Inf\"} ", s.cumulative.back(), "\n");
      absl::StrAppend(&out, e->name, "_sum ", FormatValue(s.sum), "\n");
      absl::StrAppend(&out, e->name, "_count ", s.count, "\n");
    }
  }
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsHttpServer>> MetricsHttpServer::Start(
    const MetricsRegistry* registry, const std::string& host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("socket: ", std::strerror(errno)));
  const int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    ::close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat("metrics host ", host, " is not an IPv4 address"));
  }
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || ::listen(fd, 16) != 0) {
    const int err = errno;
    ::close(fd);
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", host, ":", port, ": ", std::strerror(err)));
  }
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::unique_ptr<MetricsHttpServer> server(
      new MetricsHttpServer(registry, fd, ntohs(addr.sin_port)));
  server->thread_ = std::thread([s = server.get()] { s->Serve(); });
  return server;
}

MetricsHttpServer::MetricsHttpServer(const MetricsRegistry* registry, int fd, int port)
    : registry_(registry), listen_fd_(fd), port_(port) {}

MetricsHttpServer::~MetricsHttpServer() { Stop(); }

void MetricsHttpServer::Stop() {
  if (stopping_.exchange(true)) return;
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (thread_.joinable()) thread_.join();
  ::close(listen_fd_);
}

void MetricsHttpServer::Serve() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    const int connection = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (connection < 0) continue;
    Handle(connection);
    ::close(connection);
  }
}

void MetricsHttpServer::Handle(int connection) {
  // Read the request head (bounded in size and time).
  std::string request;
  char buffer[2048];
  while (request.find("\r\n\r\n") == std::string::npos && request.size() < 16384) {
    pollfd p{connection, POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0) return;
    const ssize_t n = ::read(connection, buffer, sizeof(buffer));
    if (n <= 0) return;
    request.append(buffer, n);
  }
  std::string status = "200 OK";
  std::string type = "text/plain; version=0.0.4; charset=utf-8";
  std::string body;
  if (absl::StartsWith(request, "GET /metrics ") || absl::StartsWith(request, "GET /metrics?")) {
    body = registry_->Render();
  } else if (absl::StartsWith(request, "GET ")) {
    status = "404 Not Found";
    type = "text/plain";
    body = "metrics are at /metrics\n";
  } else {
    status = "405 Method Not Allowed";
    type = "text/plain";
    body = "only GET\n";
  }
  const std::string response =
      absl::StrCat("HTTP/1.1 ", status, "\r\nContent-Type: ", type,
                   "\r\nContent-Length: ", body.size(), "\r\nConnection: close\r\n\r\n", body);
  size_t sent = 0;
  while (sent < response.size()) {
    const ssize_t n =
        ::send(connection, response.data() + sent, response.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += n;
  }
}

}  // namespace fulcrum
