// pushpull: a load generator against a real ps_server process on 127.0.0.1.
// For each message size, C clients push, then pull, then push-pull (both in
// one call) slices of a dense tensor for a fixed time; also sparse pushes of
// K keys x dim 8. Prints, per run:
// MB/s, calls/s, p50/p99/p999 latency and the server's CPU seconds per GB
// moved (from /proc/<pid>/stat).
//
//   bazel build -c opt //server:ps_server //bench:pushpull
//   bazel-bin/bench/pushpull --clients=1,8 --seconds=3
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "bench/ps_process.h"
#include "common/base/process.h"
#include "common/payload.h"
#include "common/rpc/channel.h"
#include "common/rpc/wire.h"
#include "common/shard_map.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/job.pb.h"
#include "proto/parameter_service.grpc.pb.h"

ABSL_FLAG(std::string, ps_server, "bazel-bin/server/ps_server", "ps_server binary.");
ABSL_FLAG(std::string, target, "",
          "Address of a running ps_server (--model=bench --mode=async) instead "
          "of starting one; then no server CPU is reported. unix:/path works.");
ABSL_FLAG(std::string, clients, "1,8", "Concurrent clients, comma-separated runs.");
ABSL_FLAG(std::string, sizes, "1024,65536,1048576,4194304,16777216",
          "Dense message sizes in bytes.");
ABSL_FLAG(std::string, sparse_keys, "1024,16384", "Keys per sparse push (dim 8).");
ABSL_FLAG(double, seconds, 3, "Seconds per run.");
ABSL_FLAG(std::string, replication, "none",
          "none: one ps_server (the coordinator) serves the calls. off: a coordinator and "
          "shard 1, the dense calls going to shard 1's half of the tensor. on: the same with a "
          "backup of shard 1, so every push is replicated before it is answered. Without "
          "--target only.");
ABSL_FLAG(std::string, read_replies, "in_place",
          "How pulled values reach the client's tensor, as a worker reads them: "
          "in_place (straight from gRPC's slices, common/rpc/wire.h) or "
          "protobuf (parse the reply, then decode its payload).");

namespace fulcrum {
namespace {

// A unary call with pre-built request bytes on `queue` (one per client),
// waited for here; the reply's bytes.
bool RawCall(grpc::GenericStub* stub, grpc::CompletionQueue* queue, const std::string& method,
             const grpc::ByteBuffer& request, grpc::ByteBuffer* reply) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  std::unique_ptr<grpc::ClientAsyncResponseReader<grpc::ByteBuffer>> call =
      stub->PrepareUnaryCall(&context, method, request, queue);
  call->StartCall();
  grpc::Status status;
  call->Finish(reply, &status, nullptr);
  void* tag = nullptr;
  bool ok = false;
  return queue->Next(&tag, &ok) && status.ok();
}

// The same, the reply parsed as Response.
template <typename Response>
bool RawCall(grpc::GenericStub* stub, grpc::CompletionQueue* queue, const std::string& method,
             const grpc::ByteBuffer& request, Response* response) {
  grpc::ByteBuffer reply;
  return RawCall(stub, queue, method, request, &reply) &&
         grpc::SerializationTraits<Response>::Deserialize(&reply, response).ok();
}

// A pull's (or push-pull's) values read into `values` as --read_replies says.
template <typename Response>
bool ReadValues(grpc::ByteBuffer* reply, bool in_place, std::vector<float>* values) {
  Response response;
  std::vector<bool> read_in_place;
  const std::vector<absl::Span<float>> out = {absl::MakeSpan(*values)};
  if (in_place) {
    absl::Status s;
    if constexpr (std::is_same_v<Response, PullResponse>) {
      s = ReadPullResponse(reply, out, &response, &read_in_place);
    } else {
      s = ReadPushPullResponse(reply, out, &response, &read_in_place);
    }
    return s.ok() && read_in_place.size() == 1 && read_in_place[0];
  }
  if (!grpc::SerializationTraits<Response>::Deserialize(reply, &response).ok()) return false;
  const PullResponse* pull;
  if constexpr (std::is_same_v<Response, PullResponse>) {
    pull = &response;
  } else {
    pull = &response.pull();
  }
  return pull->dense_size() == 1 &&
         DecodeFloat32(pull->dense(0).encoding(), pull->dense(0).data(), out[0], false).ok();
}

double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  std::getline(in, line);
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(line.substr(close + 2), ' ');
  long utime = 0, stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return 0;
  }
  return double(utime + stime) / sysconf(_SC_CLK_TCK);
}

struct Run {
  std::string what;
  int clients;
  double seconds, bytes;
  std::vector<double> latencies;  // seconds
  double server_cpu;
  double backup_cpu = -1;  // --replication=on: the backup's
};

void Print(const Run& r) {
  std::vector<double> l = r.latencies;
  std::sort(l.begin(), l.end());
  auto pct = [&](double q) {
    return l.empty() ? 0.0 : l[std::min(l.size() - 1, size_t(q * l.size()))];
  };
  std::printf(
      "%-26s clients=%-2d %9.1f MB/s %9.0f calls/s  p50=%8.1fus p99=%8.1fus "
      "p999=%8.1fus  server_cpu=%s\n",
      r.what.c_str(), r.clients, r.bytes / r.seconds / 1e6, l.size() / r.seconds, pct(0.5) * 1e6,
      pct(0.99) * 1e6, pct(0.999) * 1e6,
      r.server_cpu >= 0 ? absl::StrFormat("%.2fs/GB", r.server_cpu / (r.bytes / 1e9)).c_str()
                        : "-");
  if (r.backup_cpu >= 0)
    std::printf("%62s backup_cpu=%.2fs/GB\n", "", r.backup_cpu / (r.bytes / 1e9));
  std::fflush(stdout);
}

int Main() {
  std::string target = absl::GetFlag(FLAGS_target);
  std::vector<int> clients_runs, sizes, key_runs;
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_clients), ',')) {
    int v;
    if (absl::SimpleAtoi(s, &v) && v > 0) clients_runs.push_back(v);
  }
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',')) {
    int v;
    if (absl::SimpleAtoi(s, &v) && v >= 4 && v <= (16 << 20)) sizes.push_back(v);
  }
  for (absl::string_view s : absl::StrSplit(absl::GetFlag(FLAGS_sparse_keys), ',')) {
    int v;
    if (absl::SimpleAtoi(s, &v) && v > 0) key_runs.push_back(v);
  }
  const int max_clients = *std::max_element(clients_runs.begin(), clients_runs.end());
  const std::string read_replies = absl::GetFlag(FLAGS_read_replies);
  if (read_replies != "in_place" && read_replies != "protobuf") {
    std::fprintf(stderr, "pushpull: --read_replies must be in_place or protobuf, not '%s'\n",
                 read_replies.c_str());
    return 2;
  }
  const bool in_place = read_replies == "in_place";
  const std::string replication = absl::GetFlag(FLAGS_replication);
  if (replication != "none" && replication != "off" && replication != "on") {
    std::fprintf(stderr, "pushpull: --replication must be none, off or on, not '%s'\n",
                 replication.c_str());
    return 2;
  }
  const bool sharded = replication != "none";
  // The process the dense calls go to (its CPU is measured), and where.
  Subprocess coordinator_process, shard_process, backup_process;
  Subprocess& server_process = sharded ? shard_process : coordinator_process;
  std::string data_target;
  // The part of bench/w the calls touch: all of it, or shard 1's half.
  ElementRange range{0, uint64_t{1} << 22};
  if (target.empty()) {
    std::vector<std::string> flags = {"--model=bench",
                                      "--mode=async",
                                      absl::StrCat("--num_workers=", max_clients),
                                      "--worker_timeout=100000",
                                      "--heartbeat_interval=1000",
                                      "--partitions_per_worker=4"};
    if (sharded) flags.push_back("--num_shards=2");
    absl::StatusOr<std::string> address =
        StartPsServer(absl::GetFlag(FLAGS_ps_server), flags, &coordinator_process);
    if (!address.ok()) {
      std::fprintf(stderr, "pushpull: %s\n", address.status().ToString().c_str());
      return 1;
    }
    target = *address;
    data_target = target;
    if (sharded) {
      const std::vector<std::string> shard_flags = {"--num_shards=2", "--shard_index=1",
                                                    "--coordinator=" + target};
      absl::StatusOr<std::string> shard =
          StartPsServer(absl::GetFlag(FLAGS_ps_server), shard_flags, &shard_process);
      // The same command again: the coordinator makes it shard 1's backup.
      absl::Status backup = absl::OkStatus();
      if (shard.ok() && replication == "on") {
        backup =
            StartPsServer(absl::GetFlag(FLAGS_ps_server), shard_flags, &backup_process).status();
      }
      if (!shard.ok() || !backup.ok()) {
        std::fprintf(stderr, "pushpull: %s\n",
                     (shard.ok() ? backup : shard.status()).ToString().c_str());
        return 1;
      }
      data_target = *shard;
      range = ShardMap(2).DenseRange(range.end, 1);
    }
  } else if (sharded) {
    std::fprintf(stderr, "pushpull: --replication needs the ps_servers started here\n");
    return 2;
  } else {
    data_target = target;
  }
  // One channel per client, each a worker holding a training lease.
  std::vector<std::unique_ptr<ParameterService::Stub>> stubs;
  // Dense pushes go as the worker sends them: request bytes around the
  // caller's floats (common/rpc/wire.h), through a generic stub.
  std::vector<std::unique_ptr<grpc::GenericStub>> generic_stubs;
  std::vector<std::unique_ptr<grpc::CompletionQueue>> queues;
  std::vector<uint64_t> ids;
  uint64_t incarnation = 0;  // the coordinator's, which issued the ids
  for (int i = 0; i < max_clients; ++i) {
    auto channel = grpc::CreateCustomChannel(data_target, grpc::InsecureChannelCredentials(),
                                             DefaultChannelArguments());
    auto coordinator =
        Coordinator::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    RegisterWorkerRequest r;
    r.set_worker_name(absl::StrCat("pushpull-", i));
    RegisterWorkerResponse reg;
    const grpc::Status registered = coordinator->RegisterWorker(&c, r, &reg);
    if (!registered.ok()) {
      std::fprintf(stderr, "pushpull: cannot register with %s: %s\n", target.c_str(),
                   registered.error_message().c_str());
      return 1;
    }
    ids.push_back(reg.worker_id());
    incarnation = reg.incarnation();
    stubs.push_back(ParameterService::NewStub(channel));
    generic_stubs.push_back(std::make_unique<grpc::GenericStub>(channel));
    queues.push_back(std::make_unique<grpc::CompletionQueue>());
  }
  for (int i = 0; i < max_clients; ++i) {
    auto coordinator =
        Coordinator::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
    grpc::ClientContext c;
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    AcquirePartitionRequest r;
    r.set_worker_id(ids[i]);
    r.set_coordinator_incarnation(incarnation);
    AcquirePartitionResponse lease;
    grpc::Status leased = coordinator->AcquirePartition(&c, r, &lease);
    if (!leased.ok() || lease.kind() != AcquirePartitionResponse::TRAIN) {
      std::fprintf(stderr,
                   "pushpull: client %d got no training lease (%s); is the "
                   "server running --model=bench --mode=async?\n",
                   i, leased.error_message().c_str());
      return 1;
    }
  }
  if (replication == "on") {
    // Calls start once shard 1 has its backup, holding the primary's state.
    auto coordinator =
        Coordinator::NewStub(grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
    bool paired = false;
    for (int i = 0; i < 300 && !paired; ++i) {
      grpc::ClientContext c;
      c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
      JobStatus status;
      paired = coordinator->GetStatus(&c, GetStatusRequest(), &status).ok() &&
               status.shards_size() == 2 && status.shards(1).backup_up();
      if (!paired) absl::SleepFor(absl::Milliseconds(100));
    }
    if (!paired) {
      std::fprintf(stderr, "pushpull: shard 1's backup did not join\n");
      return 1;
    }
    absl::SleepFor(absl::Seconds(2));  // the snapshot's transfer (8 MB)
  }
  std::printf("pushpull against %s (%s; replication %s)\n", data_target.c_str(),
              server_process.running() ? "ps_server started here" : "external ps_server",
              replication.c_str());

  auto run = [&](const std::string& what, int clients, auto call) {
    std::vector<std::vector<double>> lat(clients);
    std::vector<double> bytes(clients, 0);
    std::atomic<bool> stop{false};
    const double cpu0 = server_process.running() ? CpuSeconds(server_process.pid()) : -1;
    const double backup_cpu0 = backup_process.running() ? CpuSeconds(backup_process.pid()) : -1;
    const absl::Time start = absl::Now();
    std::vector<std::thread> threads;
    for (int t = 0; t < clients; ++t) {
      threads.emplace_back([&, t] {
        while (!stop) {
          const absl::Time a = absl::Now();
          const double b = call(t);
          if (b < 0) break;
          lat[t].push_back(absl::ToDoubleSeconds(absl::Now() - a));
          bytes[t] += b;
        }
      });
    }
    absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
    stop = true;
    for (auto& th : threads) th.join();
    Run r;
    r.what = what;
    r.clients = clients;
    r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
    r.bytes = 0;
    for (int t = 0; t < clients; ++t) {
      r.bytes += bytes[t];
      r.latencies.insert(r.latencies.end(), lat[t].begin(), lat[t].end());
    }
    r.server_cpu = server_process.running() ? CpuSeconds(server_process.pid()) - cpu0 : -1;
    if (backup_process.running()) r.backup_cpu = CpuSeconds(backup_process.pid()) - backup_cpu0;
    Print(r);
  };

  for (int size : sizes) {
    const uint64_t n = size / 4;
    if (n > range.size()) continue;  // larger than shard 1's half
    const std::vector<float> gradient(n, 1e-6f);
    // Each client's tensor the pulled values land in.
    std::vector<std::vector<float>> pulled(max_clients, std::vector<float>(n));
    for (int clients : clients_runs) {
      run(absl::StrCat("push ", size, "B"), clients, [&](int t) -> double {
        PushRequest req;
        req.mutable_header()->set_worker_id(ids[t]);
        req.mutable_header()->set_coordinator_incarnation(incarnation);
        DenseValues* v = req.add_dense();
        v->mutable_slice()->set_tensor("bench/w");
        v->mutable_slice()->set_offset(range.begin + (uint64_t(t) * n) % (range.size() - n + 1));
        v->mutable_slice()->set_length(n);
        v->set_encoding(FLOAT32);
        PushResponse resp;
        return RawCall(generic_stubs[t].get(), queues[t].get(), "/fulcrum.ParameterService/Push",
                       PushBytes(&req, {absl::MakeConstSpan(gradient)}), &resp)
                   ? double(size)
                   : -1.0;
      });
      run(absl::StrCat("pull ", size, "B"), clients, [&](int t) -> double {
        PullRequest req;
        req.mutable_header()->set_worker_id(ids[t]);
        req.mutable_header()->set_coordinator_incarnation(incarnation);
        req.mutable_header()->set_clock(-1);
        DenseSlice* s = req.add_dense();
        s->set_tensor("bench/w");
        s->set_offset(range.begin + (uint64_t(t) * n) % (range.size() - n + 1));
        s->set_length(n);
        grpc::ByteBuffer reply;
        bool own_buffer = false;
        grpc::ByteBuffer request;
        grpc::SerializationTraits<PullRequest>::Serialize(req, &request, &own_buffer).IgnoreError();
        return RawCall(generic_stubs[t].get(), queues[t].get(), "/fulcrum.ParameterService/Pull",
                       request, &reply) &&
                       ReadValues<PullResponse>(&reply, in_place, &pulled[t])
                   ? double(size)
                   : -1.0;
      });
      // A worker's step: the gradient out and the fresh slice back in one
      // call; MB/s counts both directions.
      run(absl::StrCat("pushpull ", size, "B"), clients, [&](int t) -> double {
        PushPullRequest req;
        const uint64_t offset = range.begin + (uint64_t(t) * n) % (range.size() - n + 1);
        PushRequest* push = req.mutable_push();
        push->mutable_header()->set_worker_id(ids[t]);
        push->mutable_header()->set_coordinator_incarnation(incarnation);
        DenseValues* v = push->add_dense();
        v->mutable_slice()->set_tensor("bench/w");
        v->mutable_slice()->set_offset(offset);
        v->mutable_slice()->set_length(n);
        v->set_encoding(FLOAT32);
        PullRequest* pull = req.mutable_pull();
        pull->mutable_header()->set_worker_id(ids[t]);
        pull->mutable_header()->set_coordinator_incarnation(incarnation);
        pull->mutable_header()->set_clock(-1);
        DenseSlice* s = pull->add_dense();
        s->set_tensor("bench/w");
        s->set_offset(offset);
        s->set_length(n);
        grpc::ByteBuffer reply;
        return RawCall(generic_stubs[t].get(), queues[t].get(),
                       "/fulcrum.ParameterService/PushPull",
                       PushPullBytes(&req, {absl::MakeConstSpan(gradient)}), &reply) &&
                       ReadValues<PushPullResponse>(&reply, in_place, &pulled[t])
                   ? 2.0 * size
                   : -1.0;
      });
    }
  }
  // Sparse keys spread over every shard: measured against one ps_server only.
  if (sharded) key_runs.clear();
  for (int k : key_runs) {
    for (int clients : clients_runs) {
      std::vector<std::mt19937_64> rngs;
      for (int t = 0; t < clients; ++t) rngs.emplace_back(t + 1);
      std::string grads;
      EncodeFloat32(std::vector<float>(size_t(k) * 8, 1e-3f), &grads);
      run(absl::StrCat("sparse push ", k, "x8"), clients, [&](int t) -> double {
        PushRequest req;
        req.mutable_header()->set_worker_id(ids[t]);
        req.mutable_header()->set_coordinator_incarnation(incarnation);
        SparseValues* v = req.add_sparse();
        v->set_table("bench/emb");
        for (int i = 0; i < k; ++i) v->add_keys(rngs[t]() % (1 << 20));
        v->set_encoding(FLOAT32);
        v->set_data(grads);
        grpc::ClientContext c;
        c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
        PushResponse resp;
        return stubs[t]->Push(&c, req, &resp).ok() ? double(k) * (8 * 4 + 8) : -1.0;
      });
    }
  }
  for (Subprocess* p : {&backup_process, &shard_process, &coordinator_process}) {
    if (!p->running()) continue;
    p->Signal(SIGTERM);
    p->Wait(absl::Seconds(30)).IgnoreError();  // else killed on destruction
  }
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  fulcrum::TuneMutexes();
  fulcrum::KeepFreedMemory();
  absl::ParseCommandLine(argc, argv);
  return fulcrum::Main();
}
