// feature_lifecycle: the figures of a sparse table's feature life, in one
// process (no network: what the table and the checkpoints cost).
//   memory   Zipf(--zipf) ids over a universe of --universe streamed in
//            pushes of --batch through a table capped at --cap rows that
//            evicts the least recently updated: resident memory when the
//            cap is first reached and at the end, bytes per row against
//            values + slots, eviction time.
//   delta    a table filled to --cap rows checkpointed whole, then
//            --train_seconds of pushes at --ids_per_second, then a delta:
//            its bytes against the whole one's; and how long pushes waited
//            while the whole checkpoint was taken (the longest, p99).
//   serving  a serving model following a training shard's checkpoints
//            (one a second, deltas) while pushes go on: lookups of
//            --lookup_ids ids per call, p50/p99 latency and calls/s, and
//            each checkpoint's staleness (commit to served).
//
//   bazel build -c opt //bench:feature_lifecycle
//   bazel-bin/bench/feature_lifecycle --run=memory [--cap=10000000 --ids=100000000]
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/file_system.h"
#include "common/shard_map.h"
#include "server/checkpoint/checkpoint.h"
#include "server/checkpoint/shard_part_writer.h"
#include "server/serving/model_server.h"
#include "server/serving/serving_model.h"
#include "server/shard/parameter_shard.h"
#include "worker/serving_client.h"

ABSL_FLAG(std::string, run, "memory", "memory, delta or serving.");
ABSL_FLAG(double, zipf, 1.05, "Zipf exponent of id popularity.");
ABSL_FLAG(double, universe, 1e8, "Distinct ids the stream draws from.");
ABSL_FLAG(double, ids, 1e8, "memory: ids streamed.");
ABSL_FLAG(int64_t, cap, 10000000, "Rows the table holds (max_rows).");
ABSL_FLAG(int, dim, 16, "Floats per row.");
ABSL_FLAG(int, batch, 4096, "Ids per push.");
ABSL_FLAG(double, train_seconds, 60, "delta: seconds of pushes between the checkpoints.");
ABSL_FLAG(double, ids_per_second, 500000, "delta, serving: the pushes' rate, ids per second.");
ABSL_FLAG(int, lookup_ids, 512, "serving: ids per table lookup.");
ABSL_FLAG(int, lookups_per_call, 26,
          "serving: table lookups per call (a DLRM's 26 tables; here all of the one table): "
          "one LookupBatch over gRPC, or as many Lookup calls of the model.");
ABSL_FLAG(double, serving_seconds, 30, "serving: how long lookups run.");
ABSL_FLAG(bool, grpc, true,
          "serving: look up through a serving process's gRPC service on 127.0.0.1 (the "
          "ModelServer of ps_server --serve, in this process) instead of calling the model.");
ABSL_FLAG(std::string, dir, "/tmp/fulcrum_feature_lifecycle", "delta, serving: checkpoints.");

namespace fulcrum {
namespace {

// Zipf ranks by the continuous inverse CDF, spread over the id space.
class ZipfIds {
 public:
  ZipfIds(double exponent, double universe, uint64_t seed)
      : s_(exponent), n_(universe), rng_(seed) {}
  uint64_t Next() {
    const double u = uniform_(rng_);
    const double a = 1 - s_;
    const double rank = std::pow((std::pow(n_, a) - 1) * u + 1, 1 / a);
    return Mix64(static_cast<uint64_t>(rank));
  }

 private:
  const double s_, n_;
  std::mt19937_64 rng_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
};

double ResidentBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      double kb = 0;
      absl::SimpleAtod(line.substr(6, line.size() - 9), &kb);
      return kb * 1024;
    }
  }
  return 0;
}

std::unique_ptr<ParameterShard> MakeShard(int64_t cap, int dim) {
  OptimizerConfig config;
  config.set_kind(ADAGRAD);
  config.set_learning_rate(0.05f);
  TensorSpec dense;
  dense.set_name("top");
  dense.add_shape(1024);
  auto store = ParameterStore::Create({}, *CreateOptimizer(config), {dense});
  SparseTableOptions options;
  options.name = "emb";
  options.dim = dim;
  options.max_rows = cap;
  options.initializer = UNIFORM;
  options.scale = 0.01f;
  options.eviction.set_when_full(FeatureEviction::LEAST_RECENTLY_UPDATED);
  std::vector<std::unique_ptr<SparseTable>> tables;
  tables.push_back(*SparseTable::Create(options, *CreateOptimizer(config)));
  auto shard = std::make_unique<ParameterShard>(std::move(*store), ASYNC, 0, std::move(tables));
  WorkerMembership m;
  m.coordinator_incarnation = 1;
  m.version = 1;
  m.started = true;
  m.Admit(1);
  m.Activate(1, 0);
  shard->ApplyMembership(m);
  return shard;
}

// One push of `keys` (gradients of 0.01) to the shard.
void Push(ParameterShard& shard, const std::vector<uint64_t>& keys, int dim) {
  static thread_local std::vector<float> values;
  values.assign(keys.size() * dim, 0.01f);
  std::vector<SparseGradient> sparse = {{"emb", keys, values}};
  absl::StatusOr<ShardVersion> pushed = shard.Push(WorkerIdentity{1, 1}, 0, 0, {}, sparse);
  if (!pushed.ok()) {
    std::fprintf(stderr, "push failed: %s\n", pushed.status().ToString().c_str());
    std::exit(1);
  }
}

int RunMemory() {
  const int64_t cap = absl::GetFlag(FLAGS_cap);
  const int dim = absl::GetFlag(FLAGS_dim);
  const int batch = absl::GetFlag(FLAGS_batch);
  const double total = absl::GetFlag(FLAGS_ids);
  const double before = ResidentBytes();
  auto shard = MakeShard(cap, dim);
  const SparseTable& table = *shard->sparse_table("emb");
  ZipfIds ids(absl::GetFlag(FLAGS_zipf), absl::GetFlag(FLAGS_universe), 1);
  std::vector<uint64_t> keys(batch);
  double at_cap = 0, peak = 0;
  uint64_t streamed = 0;
  const absl::Time start = absl::Now();
  absl::Duration to_cap;
  while (streamed < total) {
    for (uint64_t& k : keys) k = ids.Next();
    Push(*shard, keys, dim);
    streamed += keys.size();
    if (streamed % (batch * 256) == 0) {
      const double rss = ResidentBytes();
      peak = std::max(peak, rss);
      if (at_cap == 0 && table.counters().evicted > 0) {
        at_cap = rss;
        to_cap = absl::Now() - start;
      }
    }
  }
  const double end = ResidentBytes();
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const double payload = double(dim) * 4 * 2;  // values + Adagrad's slot
  std::printf(
      "memory: %.3g ids (Zipf %.2f over %.3g) in pushes of %d through a cap of %lld rows "
      "(dim %d, Adagrad)\n",
      total, absl::GetFlag(FLAGS_zipf), absl::GetFlag(FLAGS_universe), batch,
      static_cast<long long>(cap), dim);
  std::printf(
      "  %.1f s (%.2f M ids/s); cap reached after %.1f s; rows made %llu, evicted %llu, "
      "rows now %llu\n",
      seconds, total / seconds / 1e6, absl::ToDoubleSeconds(to_cap),
      static_cast<unsigned long long>(table.counters().admitted),
      static_cast<unsigned long long>(table.counters().evicted),
      static_cast<unsigned long long>(table.rows()));
  std::printf(
      "  resident: %.0f MB at start, %.0f MB when the cap was reached, %.0f MB at the end "
      "(%+.1f%%), peak %.0f MB\n",
      before / 1e6, at_cap / 1e6, end / 1e6, 100 * (end - at_cap) / at_cap, peak / 1e6);
  std::printf(
      "  bytes per row at the end: %.1f resident, against %.0f of values + slots "
      "(%.2fx)\n",
      (end - before) / table.rows(), payload, (end - before) / table.rows() / payload);
  return 0;
}

// Pushes at `ids_per_second` until `stop`; each push's latency into
// `latencies` (seconds) while `record` is set.
void PushAtRate(ParameterShard& shard, int dim, double ids_per_second, std::atomic<bool>& stop,
                std::atomic<bool>& record, std::vector<double>& latencies, uint64_t seed,
                std::vector<std::pair<absl::Time, double>>* long_waits = nullptr) {
  ZipfIds ids(absl::GetFlag(FLAGS_zipf), absl::GetFlag(FLAGS_universe), seed);
  const int batch = absl::GetFlag(FLAGS_batch);
  std::vector<uint64_t> keys(batch);
  const absl::Duration every = absl::Seconds(batch / ids_per_second);
  absl::Time next = absl::Now();
  while (!stop) {
    for (uint64_t& k : keys) k = ids.Next();
    const absl::Time t0 = absl::Now();
    Push(shard, keys, dim);
    const double waited = absl::ToDoubleSeconds(absl::Now() - t0);
    if (record) latencies.push_back(waited);
    if (record && long_waits != nullptr && waited > 0.05) long_waits->emplace_back(t0, waited);
    next += every;
    const absl::Time now = absl::Now();
    if (next > now) absl::SleepFor(next - now);
    if (now - next > absl::Seconds(1)) next = now;  // behind: do not burst
  }
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

CheckpointManifest::ShardFile CommitPart(CheckpointStore& store, ShardPartWriter& writer,
                                         uint64_t sequence, uint64_t delta_of, const JobSpec& job) {
  absl::StatusOr<CheckpointManifest::ShardFile> file =
      CommitOneShardCheckpoint(store, writer, sequence, delta_of, job);
  if (!file.ok()) {
    std::fprintf(stderr, "checkpoint: %s\n", file.status().ToString().c_str());
    std::exit(1);
  }
  return *file;
}

JobSpec JobOf(int64_t cap, int dim) {
  JobSpec job;
  job.set_model("feature_lifecycle");
  SparseTableSpec* t = job.add_sparse_tables();
  t->set_name("emb");
  t->set_dim(dim);
  t->set_initializer(UNIFORM);
  t->set_scale(0.01f);
  t->set_max_rows(cap);
  TensorSpec* d = job.add_tensors();
  d->set_name("top");
  d->add_shape(1024);
  return job;
}

void Fill(ParameterShard& shard, int64_t rows, int dim) {
  const int batch = absl::GetFlag(FLAGS_batch);
  std::vector<uint64_t> keys(batch);
  uint64_t next = 1;
  while (shard.sparse_table("emb")->rows() < static_cast<uint64_t>(rows)) {
    for (uint64_t& k : keys) k = Mix64(next++);
    Push(shard, keys, dim);
  }
}

int RunDelta() {
  const int64_t cap = absl::GetFlag(FLAGS_cap);
  const int dim = absl::GetFlag(FLAGS_dim);
  const std::string dir = absl::GetFlag(FLAGS_dir);
  PosixFileSystem()->DeleteRecursively(dir).IgnoreError();
  auto shard = MakeShard(cap, dim);
  // Fill with the Zipf stream's own ids: its popular ids are rows already.
  {
    ZipfIds ids(absl::GetFlag(FLAGS_zipf), absl::GetFlag(FLAGS_universe), 7);
    std::vector<uint64_t> keys(absl::GetFlag(FLAGS_batch));
    while (shard->sparse_table("emb")->counters().evicted == 0) {
      for (uint64_t& k : keys) k = ids.Next();
      Push(*shard, keys, dim);
    }
  }
  CheckpointStore store(CheckpointStoreOptions{dir, 3, nullptr});
  ShardPartWriter writer(shard.get(), &store, 0, 1);
  const JobSpec job = JobOf(cap, dim);
  std::atomic<bool> stop{false}, record{true};
  std::vector<double> latencies;
  std::vector<std::pair<absl::Time, double>> long_waits;
  std::thread pusher([&] {
    PushAtRate(*shard, dim, absl::GetFlag(FLAGS_ids_per_second), stop, record, latencies, 11,
               &long_waits);
  });
  // Pushes alone first (evictions included), then during the checkpoint.
  absl::SleepFor(absl::Seconds(10));
  const size_t before = latencies.size();
  const std::vector<double> alone(latencies.begin(), latencies.end());
  const size_t long_before = long_waits.size();
  const absl::Time t0 = absl::Now();
  // The whole checkpoint by its phases (what ShardPartWriter::Write does).
  ShardMark mark;
  const ShardSnapshot snapshot = shard->Snapshot(nullptr, &mark);
  const absl::Time snapped = absl::Now();
  const std::string encoded = EncodeShardFile(snapshot, 0, 1);
  const absl::Time encoded_at = absl::Now();
  const CheckpointManifest::ShardFile whole = CommitPart(store, writer, 1, 0, job);
  const double whole_seconds = absl::ToDoubleSeconds(absl::Now() - encoded_at);
  record = false;
  std::vector<double> during(latencies.begin() + before, latencies.end());
  std::printf(
      "  pushes alone for 10 s: %zu, waited at most %.1f ms (p99 %.1f ms); waits over "
      "50 ms: %zu\n",
      alone.size(), 1e3 * Percentile(alone, 1.0), 1e3 * Percentile(alone, 0.99), long_before);
  std::printf(
      "  a whole snapshot took %.2f s, encoding it %.2f s; the writer's own snapshot, "
      "encoding and durable write %.2f s\n",
      absl::ToDoubleSeconds(snapped - t0), absl::ToDoubleSeconds(encoded_at - snapped),
      whole_seconds);
  for (size_t i = long_before; i < long_waits.size(); ++i) {
    std::printf("    a push waited %.0f ms from %+.2f s\n", 1e3 * long_waits[i].second,
                absl::ToDoubleSeconds(long_waits[i].first - t0));
  }
  const uint64_t evicted_before = shard->sparse_table("emb")->counters().evicted;
  const uint64_t made_before = shard->sparse_table("emb")->counters().admitted;
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_train_seconds)));
  const CheckpointManifest::ShardFile delta = CommitPart(store, writer, 2, 1, job);
  stop = true;
  pusher.join();
  std::printf(
      "delta: a table of %llu rows (cap %lld, dim %d, Adagrad), pushes of %d Zipf %.2f "
      "ids at %.0f ids/s\n",
      static_cast<unsigned long long>(shard->sparse_table("emb")->rows()),
      static_cast<long long>(cap), dim, absl::GetFlag(FLAGS_batch), absl::GetFlag(FLAGS_zipf),
      absl::GetFlag(FLAGS_ids_per_second));
  std::printf(
      "  whole checkpoint: %.1f MB; pushes during the three: %zu, waited at most "
      "%.1f ms (p99 %.1f ms, p50 %.2f ms)\n",
      whole.bytes() / 1e6, during.size(), 1e3 * Percentile(during, 1.0),
      1e3 * Percentile(during, 0.99), 1e3 * Percentile(during, 0.5));
  std::printf(
      "  delta after %.0f s of pushes: %.1f MB = %.1f%% of the whole one (%llu rows "
      "evicted and %llu made meanwhile)\n",
      absl::GetFlag(FLAGS_train_seconds), delta.bytes() / 1e6,
      100.0 * delta.bytes() / whole.bytes(),
      static_cast<unsigned long long>(shard->sparse_table("emb")->counters().evicted -
                                      evicted_before),
      static_cast<unsigned long long>(shard->sparse_table("emb")->counters().admitted -
                                      made_before));
  return 0;
}

int RunServing() {
  const int64_t cap = absl::GetFlag(FLAGS_cap);
  const int dim = absl::GetFlag(FLAGS_dim);
  const std::string dir = absl::GetFlag(FLAGS_dir);
  PosixFileSystem()->DeleteRecursively(dir).IgnoreError();
  auto shard = MakeShard(cap, dim);
  Fill(*shard, cap / 2, dim);
  CheckpointStore store(CheckpointStoreOptions{dir, 3, nullptr});
  ShardPartWriter writer(shard.get(), &store, 0, 1);
  const JobSpec job = JobOf(cap, dim);
  CommitPart(store, writer, 1, 0, job);
  // The serving process's model and service (it follows every 100 ms).
  ModelServerOptions server_options;
  server_options.dirs = {dir};
  server_options.listen_address = "127.0.0.1:0";
  std::unique_ptr<ModelServer> server = *ModelServer::Create(server_options);
  if (!server->Start().ok()) return 1;
  ServingModel& model = server->model();
  ServingClientOptions client_options;
  client_options.address = absl::StrCat("127.0.0.1:", server->bound_port());
  std::unique_ptr<ServingClient> client = *ServingClient::Connect(client_options);
  const bool grpc = absl::GetFlag(FLAGS_grpc);
  std::atomic<bool> stop{false}, record{false};
  std::vector<double> unused;
  std::thread pusher([&] {
    PushAtRate(*shard, dim, absl::GetFlag(FLAGS_ids_per_second), stop, record, unused, 13);
  });
  // Checkpoints once a second (deltas, a whole one every 8th); the model
  // follows every 100 ms: staleness is commit to served.
  std::vector<double> staleness;
  std::thread checkpointer([&] {
    uint64_t sequence = 1;
    while (!stop) {
      absl::SleepFor(absl::Seconds(1));
      const uint64_t previous = sequence++;
      CommitPart(store, writer, sequence, sequence % 8 == 1 ? 0 : previous, job);
      const absl::Time committed = absl::Now();
      while (!stop && model.checkpoint() < sequence) absl::SleepFor(absl::Milliseconds(1));
      if (!stop) staleness.push_back(absl::ToDoubleSeconds(absl::Now() - committed));
    }
  });
  ZipfIds ids(absl::GetFlag(FLAGS_zipf), absl::GetFlag(FLAGS_universe), 17);
  std::vector<uint64_t> keys(absl::GetFlag(FLAGS_lookup_ids));
  std::vector<float> rows;
  std::vector<bool> found;
  std::vector<double> latencies;
  const absl::Time start = absl::Now();
  while (absl::Now() - start < absl::Seconds(absl::GetFlag(FLAGS_serving_seconds))) {
    uint64_t served = 0;
    const absl::Time t0 = absl::Now();
    absl::Status looked;
    if (grpc) {
      std::vector<TableLookup> batch(absl::GetFlag(FLAGS_lookups_per_call));
      for (TableLookup& lookup : batch) {
        for (uint64_t& k : keys) k = ids.Next();
        lookup = TableLookup{"emb", keys, static_cast<uint32_t>(dim)};
      }
      std::vector<TableRows> results;
      looked = client->LookupBatch(batch, &results, &served);
    } else {
      for (int i = 0; i < absl::GetFlag(FLAGS_lookups_per_call) && looked.ok(); ++i) {
        for (uint64_t& k : keys) k = ids.Next();
        looked = model.Lookup("emb", keys, dim, &rows, &found, &served);
      }
    }
    if (!looked.ok()) {
      std::fprintf(stderr, "lookup: %s\n", looked.ToString().c_str());
      return 1;
    }
    latencies.push_back(absl::ToDoubleSeconds(absl::Now() - t0));
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  stop = true;
  pusher.join();
  checkpointer.join();
  const ServingStatus status = model.Status();
  std::printf(
      "serving: calls of %d x %d ids (dim %d) from one thread%s while pushes of %.0f ids/s "
      "go on and a checkpoint is committed every second (table of %llu rows)\n",
      absl::GetFlag(FLAGS_lookups_per_call), absl::GetFlag(FLAGS_lookup_ids), dim,
      grpc ? " over gRPC (LookupBatch)" : " (the model called directly)",
      absl::GetFlag(FLAGS_ids_per_second),
      static_cast<unsigned long long>(shard->sparse_table("emb")->rows()));
  std::printf("  %zu calls in %.1f s: %.0f calls/s; latency p50 %.2f ms, p99 %.2f ms\n",
              latencies.size(), seconds, latencies.size() / seconds,
              1e3 * Percentile(latencies, 0.5), 1e3 * Percentile(latencies, 0.99));
  std::printf(
      "  %zu checkpoints followed (%llu deltas in place, %llu whole): staleness from "
      "commit to served p50 %.0f ms, max %.0f ms\n",
      staleness.size(), static_cast<unsigned long long>(status.deltas_applied()),
      static_cast<unsigned long long>(status.whole_loads()), 1e3 * Percentile(staleness, 0.5),
      1e3 * Percentile(staleness, 1.0));
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string run = absl::GetFlag(FLAGS_run);
  if (run == "memory") return fulcrum::RunMemory();
  if (run == "delta") return fulcrum::RunDelta();
  if (run == "serving") return fulcrum::RunServing();
  std::fprintf(stderr, "feature_lifecycle: --run must be memory, delta or serving\n");
  return 2;
}
