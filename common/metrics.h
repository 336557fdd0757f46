// Prometheus metrics: a registry of counters, gauges and histograms, rendered
// in the Prometheus text exposition format (0.0.4), and a small HTTP server
// serving it at /metrics.
//
// Why not prometheus-cpp: Debian ships it only as shared libraries, and
// Fulcrum's images are fully static binaries FROM scratch.
#ifndef FULCRUM_COMMON_METRICS_H_
#define FULCRUM_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace fulcrum {

// A monotonically increasing value. Thread-safe, lock-free.
class Counter {
 public:
  void Increment(double amount = 1);
  double value() const;

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down. Thread-safe, lock-free.
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted in cumulative buckets (upper bounds), with their sum.
// Thread-safe.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    uint64_t count = 0;
    double sum = 0;
  };
  Snapshot snapshot() const;

 private:
  const std::vector<double> bounds_;
  mutable absl::Mutex mu_;
  std::vector<uint64_t> counts_ ABSL_GUARDED_BY(mu_);  // per bucket, then +Inf
  uint64_t count_ ABSL_GUARDED_BY(mu_) = 0;
  double sum_ ABSL_GUARDED_BY(mu_) = 0;
};

// Bucket bounds for RPC latencies: 50 us to 10 s, seconds.
std::vector<double> LatencyBuckets();

// Owns the metrics it creates; returned pointers live as long as it does.
// Thread-safe. Names follow Prometheus conventions (fulcrum_..._total for
// counters, base units such as seconds and bytes).
class MetricsRegistry {
 public:
  Counter* AddCounter(const std::string& name, const std::string& help);
  Gauge* AddGauge(const std::string& name, const std::string& help);
  // A gauge read at scrape time.
  void AddCallbackGauge(const std::string& name, const std::string& help,
                        std::function<double()> read);
  Histogram* AddHistogram(const std::string& name, const std::string& help,
                          std::vector<double> bounds);
  // A family of values read at scrape time, one series per value of
  // `label` (e.g. name{table="emb"}); `type` is "gauge" or "counter".
  using LabeledValues = std::vector<std::pair<std::string, double>>;
  void AddCallbackFamily(const std::string& name, const std::string& help, const std::string& type,
                         const std::string& label, std::function<LabeledValues()> read);

  // Every metric in the text exposition format.
  std::string Render() const;

 private:
  struct Entry {
    std::string name;
    std::string help;
    std::string type;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::function<double()> callback;
    std::string label;
    std::function<LabeledValues()> family;
    std::unique_ptr<Histogram> histogram;
  };
  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Entry>> entries_ ABSL_GUARDED_BY(mu_);
};

// Serves a registry at http://HOST:PORT/metrics from a thread of its own.
// Thread-safe; Stop (or the destructor) ends it.
class MetricsHttpServer {
 public:
  // Port 0 picks a free one (see port()). UNAVAILABLE if it cannot listen.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(const MetricsRegistry* registry,
                                                                  const std::string& host,
                                                                  int port);
  ~MetricsHttpServer();
  void Stop();
  int port() const { return port_; }

 private:
  MetricsHttpServer(const MetricsRegistry* registry, int fd, int port);
  void Serve();
  void Handle(int connection);

  const MetricsRegistry* const registry_;
  const int listen_fd_;
  const int port_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_METRICS_H_
