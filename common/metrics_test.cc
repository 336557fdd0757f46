#include "common/metrics.h"

#include "common/http_get.h"
#include "gtest/gtest.h"

namespace fulcrum {
namespace {

TEST(MetricsTest, Render_CountersGaugesHistogramsInTextFormat) {
  MetricsRegistry registry;
  Counter* pushes = registry.AddCounter("fulcrum_pushes_total", "Pushes.");
  Gauge* workers = registry.AddGauge("fulcrum_live_workers", "Live workers.");
  registry.AddCallbackGauge("fulcrum_answer", "Read at scrape.", [] { return 42.0; });
  Histogram* latency = registry.AddHistogram("fulcrum_latency_seconds", "Latency.", {0.1, 1});
  pushes->Increment();
  pushes->Increment(2);
  pushes->Increment(-5);  // ignored: counters only go up
  workers->Set(3);
  latency->Observe(0.05);
  latency->Observe(0.5);
  latency->Observe(7);
  const std::string text = registry.Render();
  for (const char* line :
       {"# TYPE fulcrum_pushes_total counter\nfulcrum_pushes_total 3\n",
        "# HELP fulcrum_live_workers Live workers.\n", "fulcrum_live_workers 3\n",
        "fulcrum_answer 42\n", "# TYPE fulcrum_latency_seconds histogram\n",
        "fulcrum_latency_seconds_bucket{le=\"0.10000000000000001\"} 1\n",
        "fulcrum_latency_seconds_bucket{le=\"1\"} 2\n",
        "fulcrum_latency_seconds_bucket{le=\"+Inf\"} 3\n",
        "fulcrum_latency_seconds_sum 7.5499999999999998\n", "fulcrum_latency_seconds_count 3\n"}) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\nin\n" << text;
  }
}

TEST(MetricsTest, HttpServer_ServesMetricsAnd404Elsewhere) {
  MetricsRegistry registry;
  Counter* c = registry.AddCounter("fulcrum_things_total", "Things.");
  auto server = MetricsHttpServer::Start(&registry, "127.0.0.1", 0);
  ASSERT_TRUE(server.ok()) << server.status();
  ASSERT_GT((*server)->port(), 0);
  c->Increment(5);
  absl::StatusOr<HttpResponse> r = HttpGet((*server)->port(), "/metrics");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->code, 200);
  EXPECT_NE(r->body.find("fulcrum_things_total 5\n"), std::string::npos);
  c->Increment();
  EXPECT_NE(HttpGet((*server)->port(), "/metrics")->body.find("fulcrum_things_total 6\n"),
            std::string::npos);
  EXPECT_EQ(HttpGet((*server)->port(), "/")->code, 404);
  (*server)->Stop();
  EXPECT_FALSE(HttpGet((*server)->port(), "/metrics").ok());
}

TEST(MetricsTest, BadHost_InvalidArgument) {
  MetricsRegistry registry;
  EXPECT_EQ(MetricsHttpServer::Start(&registry, "not-an-ip", 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace fulcrum
