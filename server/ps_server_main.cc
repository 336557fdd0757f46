// ps_server: serves one shard of a Fulcrum model and, as coordinator, the job.
//
//   ps_server --port=50051 --model=mlp --mode=sync --num_workers=2 --epochs=5
//
// Progress lines and the final "result:" line go to stdout, logs to stderr.
#include <signal.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/internal/parse.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/base/log.h"
#include "common/base/process.h"
#include "common/eval_format.h"
#include "common/model_spec.h"
#include "common/rpc/security_flags.h"
#include "server/job_spec.h"
#include "server/ps_server.h"
#include "server/serving/model_server.h"
#include "server/store/optimizer.h"

ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, port, 50051, "Port to listen on; 0 picks a free port.");
ABSL_FLAG(int, num_shards, 1,
          "Parameter-server shards in the job (processes holding a part of the "
          "model each; shard 0 is the coordinator).");
ABSL_FLAG(int, shard_index, 0,
          "This process's shard, 0..num_shards-1. Shards other than 0 register "
          "with --coordinator and take the job from it (model, mode and "
          "optimizer flags are the coordinator's).");
ABSL_FLAG(std::string, coordinator, "",
          "Shards other than 0: host:port of shard 0, the coordinator (comma-separated: the "
          "coordinator and its backup). Shard 0: makes this process the backup of the "
          "coordinator at that address.");
ABSL_FLAG(std::string, coordinator_backup, "",
          "Shard 0 (the coordinator): host:port of its backup. Workers are told it; and if that "
          "backup serves the job when this process starts (it took over), this process becomes "
          "its backup.");
ABSL_FLAG(int, failover_after_ms, 500,
          "Replicated shards: starting a second ps_server for the same --shard_index makes it "
          "that shard's backup, which takes over when its primary has been silent this long "
          "(and the coordinator cannot reach it either).");
ABSL_FLAG(std::string, advertise, "",
          "Shards other than 0: host:port where workers and the coordinator "
          "reach this shard. Default: --host:<port>, or this machine's "
          "hostname:<port> when --host is 0.0.0.0.");
ABSL_FLAG(std::string, unix_socket, "",
          "Also listen on this Unix domain socket path (workers on the same "
          "machine: --coordinator=unix:PATH).");
ABSL_FLAG(std::string, port_file, "",
          "If set, the bound port is written to this file once serving "
          "(atomically, by rename), for launchers that use --port=0.");
ABSL_FLAG(std::string, model, "softmax",
          "Model to train: softmax or mlp (Fashion-MNIST), sparse_lr (libsvm "
          "data, workers' --train_file/--test_file). Ignored with --job.");
ABSL_FLAG(std::string, serve, "",
          "Serve a model instead of training one: the checkpoint folders of a training job "
          "(DIR,DIR,...: every shard's --checkpoint_dir, its backup's too). The process loads "
          "the newest checkpoint, applies each delta committed after it, and answers "
          "ModelServing lookups (proto/serving.proto) read only, on --port with the same TLS "
          "and token flags.");
ABSL_FLAG(int, serve_poll_ms, 100, "--serve: how often the folder is looked at for news.");
ABSL_FLAG(int, serve_max_ids, 1 << 20, "--serve: ids one Lookup may ask for.");
ABSL_FLAG(std::string, job, "",
          "Job definition file: a JobSpec (proto/job.proto) in protobuf text "
          "format, or its JSON mapping when the name ends in .json "
          "(server/jobs/ has the built-in models'). The flags that describe a "
          "job (--mode, --optimizer, --learning_rate, --momentum, --l1, --l2, "
          "--batch_size, --epochs, --seed, --num_workers, "
          "--partitions_per_worker, --gradient_compression, --topk_ratio, "
          "--overlap_communication) override its fields when set to other "
          "than their defaults, and give the fields it leaves unset their "
          "defaults.");
ABSL_FLAG(std::string, mode, "sync",
          "Consistency: sync (BSP rounds), async (apply each push) or ssp:S "
          "(stale synchronous: at most S partitions ahead of the slowest "
          "training worker).");
ABSL_FLAG(std::string, optimizer, "",
          "Server-side optimizer: sgd, momentum, adagrad, adam or ftrl. Default: "
          "the job file's (softmax: adagrad, mlp: adam, sparse_lr: ftrl).");
ABSL_FLAG(double, learning_rate, 0,
          "Learning rate; 0 = the job file's rate with its optimizer (softmax "
          "0.01, mlp 0.0003), else the optimizer's default (0.001 adam, 0.01 "
          "otherwise).");
ABSL_FLAG(double, momentum, 0.9, "Momentum optimizer's velocity decay.");
ABSL_FLAG(double, l1, -1, "FTRL L1 strength; -1: the job file's (sparse_lr 0.1).");
ABSL_FLAG(double, l2, -1, "FTRL L2 strength; -1: the job file's (sparse_lr 0.1).");
ABSL_FLAG(int, batch_size, 64, "Examples per worker mini-batch.");
ABSL_FLAG(std::string, gradient_compression, "none",
          "How workers send dense gradients: none (float32), fp16 (IEEE half: "
          "half the bytes), int8 (per-256-element scale: a quarter) or topk (the "
          "--topk_ratio largest magnitudes with their indices; the rest is kept on "
          "the worker and added to its next gradient).");
ABSL_FLAG(double, topk_ratio, 0.01,
          "With --gradient_compression=topk: the share of each tensor's gradient "
          "sent per step, in (0, 1].");
ABSL_FLAG(bool, overlap_communication, false,
          "async mode, dense models: workers compute a step while the previous "
          "step's push-pull is in flight (one step more staleness). Pays where the "
          "network, not the CPU, is the bottleneck: on a 2-core machine shared with "
          "the server it measured no faster (bench/FIGURES.md).");
ABSL_FLAG(int, epochs, 0,
          "Passes over the training set; 0 = the job file's (softmax 15, mlp 10, "
          "sparse_lr 5).");
ABSL_FLAG(uint64_t, seed, 1, "Seed for initialisation and shuffling.");
ABSL_FLAG(int, num_workers, 2, "Workers the job waits for before it starts; more may join later.");
ABSL_FLAG(int, partitions_per_worker, 4,
          "Each epoch is cut into partitions_per_worker * num_workers "
          "partitions, leased one at a time, so faster workers take more.");
ABSL_FLAG(double, heartbeat_interval, 1.0, "Seconds between worker heartbeats (told to workers).");
ABSL_FLAG(double, worker_timeout, 5.0,
          "Seconds of silence after which a worker is declared dead and its "
          "partition goes back to the pool.");
ABSL_FLAG(int64_t, stripe_elements, 65536, "Elements per lock stripe inside a tensor.");
ABSL_FLAG(double, status_interval, 2.0,
          "Seconds between progress lines on stdout; 0 disables them.");
ABSL_FLAG(std::string, checkpoint_dir, "", "Folder for checkpoints; empty: none are written.");
ABSL_FLAG(std::string, checkpoint_every, "",
          "Periodic checkpoints: a duration (\"30s\", \"5m\") or a number of "
          "shard versions (\"500steps\": rounds in sync mode, pushes "
          "otherwise). Empty: only on demand (psctl checkpoint) and when the "
          "job ends.");
ABSL_FLAG(int, keep_checkpoints, 3,
          "Complete checkpoints kept on disk (and those their deltas build on).");
ABSL_FLAG(int, checkpoint_full_every, 8,
          "Every this-many-th checkpoint is whole; the others hold the dense tensors and "
          "only the sparse rows changed or evicted since the checkpoint before. 1: every "
          "checkpoint whole.");
ABSL_FLAG(std::string, restore, "",
          "Empty: resume from the newest complete checkpoint in "
          "--checkpoint_dir that verifies (falling back to older ones), or "
          "start fresh if there is none. \"none\": start fresh. A path: "
          "that checkpoint folder.");
ABSL_FLAG(int, debug_replication_delay_ms, 0,
          "Test hook: a backup shard waits this long before applying each batch of its "
          "primary's updates.");
ABSL_FLAG(int, debug_checkpoint_delay_ms, 0,
          "Test hook: pause this long halfway through writing each "
          "checkpoint file.");
ABSL_FLAG(int, metrics_port, -1,
          "Serve Prometheus metrics at http://HOST:PORT/metrics (same host as "
          "--host); -1: off, 0: a free port (logged).");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: require client certificates it signed (mutual TLS).");
ABSL_FLAG(int, max_message_mb, 256,
          "Largest gRPC message accepted or sent, MiB (RESOURCE_EXHAUSTED "
          "beyond).");
ABSL_FLAG(uint64_t, max_tensor_elements, uint64_t{1} << 31,
          "Largest tensor the server creates, in elements.");
ABSL_FLAG(uint64_t, max_sparse_rows, uint64_t{1} << 26,
          "Rows a sparse table may hold (RESOURCE_EXHAUSTED beyond).");
ABSL_FLAG(int, max_workers, 1024, "Live workers accepted at once (RESOURCE_EXHAUSTED beyond).");
ABSL_FLAG(bool, exit_when_done, false,
          "Exit once the job has finished (after its final evaluation) "
          "instead of serving status until stopped.");

namespace fulcrum {
namespace {

absl::Status WritePortFile(const std::string& path, int port) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << "\n";
    if (!out.good()) {
      return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::UnavailableError(absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  return absl::OkStatus();
}

// Parses --checkpoint_every: "30s"-style durations or "<N>steps".
absl::Status ParseCheckpointEvery(absl::string_view text, ServerOptions* options) {
  if (text.empty()) return absl::OkStatus();
  int64_t steps = 0;
  absl::string_view number = text;
  if (absl::ConsumeSuffix(&number, "steps") && absl::SimpleAtoi(number, &steps) && steps > 0) {
    options->checkpoint_every_steps = steps;
    return absl::OkStatus();
  }
  absl::Duration every;
  if (absl::ParseDuration(text, &every) && every > absl::ZeroDuration()) {
    options->checkpoint_every = every;
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError("expected a positive duration such as 30s or 5m, or <N>steps");
}

// Whether flag `name` sets the job: given (on the command line or in a
// --flagfile) even at its default value — `--job=F --mode=sync` overrides a
// file saying ASYNC — unless that default is the "the job's own" sentinel
// (0 or empty: `--epochs=0` keeps the file's epochs). Abseil's only way to
// ask whether a flag was given is internal to its parser.
bool Changed(absl::string_view name) {
  const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
  if (flag == nullptr || !absl::flags_internal::WasPresentOnCommandLine(name)) return false;
  const std::string value = flag->CurrentValue();
  const bool sentinel = value.empty() || value == "0";
  return value != flag->DefaultValue() || !sentinel;
}

// The job: from --job's file with the job flags that were changed applied
// over it, or from --model and every job flag. INVALID_ARGUMENT naming the
// flag (or the file and its field).
absl::StatusOr<JobSpec> JobFromFlags() {
  // The job file: --job's, or the one shipped for --model.
  JobSpec job;
  const std::string job_file = absl::GetFlag(FLAGS_job);
  if (!job_file.empty()) {
    if (Changed("model")) {
      return absl::InvalidArgumentError("--model and --job: the job file names its model");
    }
    absl::StatusOr<JobSpec> read = ReadJobFile(job_file);
    if (!read.ok()) {
      return absl::Status(read.status().code(), absl::StrCat("--job: ", read.status().message()));
    }
    job = *std::move(read);
  } else {
    absl::StatusOr<JobSpec> builtin = BuiltinJob(absl::GetFlag(FLAGS_model));
    if (!builtin.ok())
      return absl::InvalidArgumentError(absl::StrCat("--model: ", builtin.status().message()));
    job = *std::move(builtin);
  }
  // A flag given on the command line overrides the file; a field the file
  // leaves unset takes the flag's default.
  auto apply = [&](absl::string_view name, bool file_sets) { return Changed(name) || !file_sets; };
  auto bad = [](absl::string_view flag, auto&&... why) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": ", why...));
  };

  if (apply("mode", job.mode() != CONSISTENCY_UNSPECIFIED)) {
    absl::StatusOr<Consistency> consistency = ParseConsistency(absl::GetFlag(FLAGS_mode));
    if (!consistency.ok()) {
      return bad(absl::StrCat("--mode=", absl::GetFlag(FLAGS_mode)),
                 consistency.status().message());
    }
    job.set_mode(consistency->mode);
    job.set_staleness(consistency->staleness);
  }

  OptimizerConfig& optimizer = *job.mutable_optimizer();
  const OptimizerKind file_kind = optimizer.kind();
  if (Changed("optimizer")) {
    absl::StatusOr<OptimizerKind> parsed = ParseOptimizerKind(absl::GetFlag(FLAGS_optimizer));
    if (!parsed.ok()) return bad("--optimizer", parsed.status().message());
    optimizer.set_kind(*parsed);
  }
  if (Changed("learning_rate")) {
    optimizer.set_learning_rate(absl::GetFlag(FLAGS_learning_rate));
  } else if (optimizer.kind() != file_kind) {
    optimizer.clear_learning_rate();  // the file's rate went with its optimizer
  }
  if (apply("momentum", optimizer.momentum() != 0)) {
    optimizer.set_momentum(absl::GetFlag(FLAGS_momentum));
  }
  if (Changed("l1")) optimizer.set_l1(static_cast<float>(std::max(0.0, absl::GetFlag(FLAGS_l1))));
  if (Changed("l2")) optimizer.set_l2(static_cast<float>(std::max(0.0, absl::GetFlag(FLAGS_l2))));

  if (apply("batch_size", job.batch_size() != 0)) {
    if (absl::GetFlag(FLAGS_batch_size) <= 0) return bad("--batch_size", "must be positive");
    job.set_batch_size(absl::GetFlag(FLAGS_batch_size));
  }
  if (apply("epochs", job.epochs() != 0)) {
    const int epochs = absl::GetFlag(FLAGS_epochs);
    if (epochs < 0) return bad("--epochs", "must not be negative");
    job.set_epochs(epochs);  // 0: Job::Complete's default
  }
  if (apply("num_workers", job.num_workers() != 0)) {
    if (absl::GetFlag(FLAGS_num_workers) <= 0) return bad("--num_workers", "must be positive");
    job.set_num_workers(absl::GetFlag(FLAGS_num_workers));
  }
  if (apply("partitions_per_worker", job.partitions_per_epoch() != 0)) {
    const int per_worker = absl::GetFlag(FLAGS_partitions_per_worker);
    if (per_worker <= 0) return bad("--partitions_per_worker", "must be positive");
    job.set_partitions_per_epoch(per_worker * std::max<uint32_t>(1, job.num_workers()));
  }
  if (apply("seed", job.seed() != 0)) job.set_seed(absl::GetFlag(FLAGS_seed));
  if (apply("gradient_compression", job.gradient_encoding() != ENCODING_UNSPECIFIED)) {
    const std::string compression = absl::GetFlag(FLAGS_gradient_compression);
    if (compression == "none") {
      job.clear_gradient_encoding();
    } else if (compression == "fp16") {
      job.set_gradient_encoding(FLOAT16);
    } else if (compression == "int8") {
      job.set_gradient_encoding(INT8_BLOCK);
    } else if (compression == "topk") {
      job.set_gradient_encoding(INDEXED_NONZEROS);
    } else {
      return bad("--gradient_compression", "must be none, fp16, int8 or topk");
    }
  }
  if (job.gradient_encoding() == INDEXED_NONZEROS && apply("topk_ratio", job.topk_ratio() != 0)) {
    job.set_topk_ratio(static_cast<float>(absl::GetFlag(FLAGS_topk_ratio)));
  }
  if (apply("overlap_communication", job.overlap_communication())) {
    job.set_overlap_communication(absl::GetFlag(FLAGS_overlap_communication));
  }
  return job;
}

// The TLS and token flags: what this process serves with (`server`, its
// `auth_token`) and, returned, what it dials other ps_servers with. Exits 2
// naming the flag of a file it cannot read.
ClientSecurityOptions SecurityFromFlags(ServerSecurityOptions* server, std::string* auth_token) {
  absl::StatusOr<ClientSecurityOptions> peers = ClientSecurityFromFlags();
  if (!peers.ok()) {
    std::fprintf(stderr, "ps_server: %s\n", std::string(peers.status().message()).c_str());
    std::exit(2);
  }
  server->tls_cert = peers->tls_cert;
  server->tls_key = peers->tls_key;
  server->tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  *auth_token = peers->auth_token;
  return *std::move(peers);
}

// --serve: the read-only serving process.
int RunServing() {
  ModelServerOptions options;
  options.dirs = absl::StrSplit(absl::GetFlag(FLAGS_serve), ',', absl::SkipEmpty());
  options.listen_address = absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  SecurityFromFlags(&options.security, &options.auth_token);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.metrics_host = absl::GetFlag(FLAGS_host);
  if (absl::GetFlag(FLAGS_serve_poll_ms) <= 0 || absl::GetFlag(FLAGS_serve_max_ids) <= 0) {
    std::fprintf(stderr, "ps_server: --serve_poll_ms and --serve_max_ids must be positive\n");
    return 2;
  }
  options.poll = absl::Milliseconds(absl::GetFlag(FLAGS_serve_poll_ms));
  options.max_ids = static_cast<uint32_t>(absl::GetFlag(FLAGS_serve_max_ids));
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_mb) << 20;
  absl::StatusOr<std::unique_ptr<ModelServer>> server = ModelServer::Create(options);
  if (!server.ok()) {
    std::fprintf(stderr, "ps_server: %s\n", server.status().ToString().c_str());
    return 2;
  }
  absl::Status started = (*server)->Start();
  if (!started.ok()) {
    std::fprintf(stderr, "ps_server: %s\n", started.ToString().c_str());
    return 1;
  }
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    absl::Status written = WritePortFile(absl::GetFlag(FLAGS_port_file), (*server)->bound_port());
    if (!written.ok()) {
      std::fprintf(stderr, "ps_server: --port_file: %s\n", written.ToString().c_str());
      return 1;
    }
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  sigwait(&set, &sig);
  FULCRUM_LOG(INFO) << "signal " << sig << ": shutting down";
  (*server)->Shutdown();
  return 0;
}

int Run() {
  if (!absl::GetFlag(FLAGS_serve).empty()) return RunServing();
  ServerOptions options;
  options.listen_address = absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  absl::StatusOr<JobSpec> spec = JobFromFlags();
  if (!spec.ok()) {
    std::fprintf(stderr, "ps_server: %s\n", std::string(spec.status().message()).c_str());
    return 2;
  }
  // Completed and checked once, here: every part of the server shares it.
  absl::StatusOr<Job> job = Job::Complete(*std::move(spec));
  if (!job.ok()) {
    const std::string source = absl::GetFlag(FLAGS_job).empty()
                                   ? absl::StrCat("--model=", absl::GetFlag(FLAGS_model))
                                   : absl::StrCat("--job=", absl::GetFlag(FLAGS_job));
    std::fprintf(stderr, "ps_server: %s: %s\n", source.c_str(),
                 std::string(job.status().message()).c_str());
    return 2;
  }
  options.job = *std::move(job);
  if (absl::GetFlag(FLAGS_stripe_elements) <= 0) {
    std::fprintf(stderr, "ps_server: --stripe_elements must be positive\n");
    return 2;
  }
  const double heartbeat = absl::GetFlag(FLAGS_heartbeat_interval);
  const double timeout = absl::GetFlag(FLAGS_worker_timeout);
  absl::Status every = ParseCheckpointEvery(absl::GetFlag(FLAGS_checkpoint_every), &options);
  if (!every.ok()) {
    std::fprintf(stderr, "ps_server: --checkpoint_every=%s: %s\n",
                 absl::GetFlag(FLAGS_checkpoint_every).c_str(),
                 std::string(every.message()).c_str());
    return 2;
  }
  options.checkpoint_dir = absl::GetFlag(FLAGS_checkpoint_dir);
  options.keep_checkpoints = absl::GetFlag(FLAGS_keep_checkpoints);
  options.checkpoint_full_every = absl::GetFlag(FLAGS_checkpoint_full_every);
  options.restore = absl::GetFlag(FLAGS_restore);
  options.debug_replication_delay =
      absl::Milliseconds(std::max(0, absl::GetFlag(FLAGS_debug_replication_delay_ms)));
  options.debug_checkpoint_delay =
      absl::Milliseconds(std::max(0, absl::GetFlag(FLAGS_debug_checkpoint_delay_ms)));
  // --tls_cert/--tls_key serve TLS; with --tls_ca they are presented to
  // the other ps_servers too, and the token goes both ways.
  ClientSecurityOptions peers = SecurityFromFlags(&options.security, &options.auth_token);
  if (peers.tls_ca.empty()) {
    peers.tls_cert.clear();  // plaintext peers: the certificate only serves
    peers.tls_key.clear();
  }
  options.peer_security = std::move(peers);
  if (absl::GetFlag(FLAGS_max_message_mb) <= 0 || absl::GetFlag(FLAGS_max_message_mb) > 2047 ||
      absl::GetFlag(FLAGS_max_workers) <= 0) {
    std::fprintf(stderr,
                 "ps_server: --max_message_mb must be in [1, 2047] and --max_workers positive\n");
    return 2;
  }
  options.max_message_bytes = absl::GetFlag(FLAGS_max_message_mb) << 20;
  options.store.max_tensor_elements = absl::GetFlag(FLAGS_max_tensor_elements);
  options.max_workers = absl::GetFlag(FLAGS_max_workers);
  options.max_sparse_rows = std::max<uint64_t>(1, absl::GetFlag(FLAGS_max_sparse_rows));
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.unix_socket = absl::GetFlag(FLAGS_unix_socket);
  options.metrics_host = absl::GetFlag(FLAGS_host);
  if (!std::isfinite(heartbeat) || !std::isfinite(timeout)) {
    std::fprintf(stderr, "ps_server: --heartbeat_interval and --worker_timeout must be numbers\n");
    return 2;
  }
  options.heartbeat_interval = absl::Seconds(heartbeat);
  options.worker_timeout = absl::Seconds(timeout);
  options.store.stripe_elements = absl::GetFlag(FLAGS_stripe_elements);
  if (absl::GetFlag(FLAGS_num_shards) <= 0 || absl::GetFlag(FLAGS_shard_index) < 0 ||
      absl::GetFlag(FLAGS_shard_index) >= absl::GetFlag(FLAGS_num_shards)) {
    std::fprintf(stderr, "ps_server: --shard_index must be in [0, --num_shards)\n");
    return 2;
  }
  options.num_shards = absl::GetFlag(FLAGS_num_shards);
  options.shard_index = absl::GetFlag(FLAGS_shard_index);
  options.coordinator_address = absl::GetFlag(FLAGS_coordinator);
  options.coordinator_backup_address = absl::GetFlag(FLAGS_coordinator_backup);
  options.advertise_address = absl::GetFlag(FLAGS_advertise);
  options.failover_after = absl::Milliseconds(absl::GetFlag(FLAGS_failover_after_ms));

  // Ranges and combinations of the options are checked by the library
  // (ServerOptions::Validate), here as for a server embedded in a program.
  absl::StatusOr<std::unique_ptr<ParameterServer>> server = ParameterServer::Create(options);
  if (!server.ok()) {
    std::fprintf(stderr, "ps_server: %s\n", server.status().ToString().c_str());
    return 2;
  }
  ParameterServer& ps = **server;
  absl::Status started = ps.Start();
  if (!started.ok()) {
    std::fprintf(stderr, "ps_server: %s\n", started.ToString().c_str());
    return absl::IsInvalidArgument(started) || absl::IsNotFound(started) ? 2 : 1;
  }
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    absl::Status written = WritePortFile(absl::GetFlag(FLAGS_port_file), ps.bound_port());
    if (!written.ok()) {
      std::fprintf(stderr, "ps_server: --port_file: %s\n", written.ToString().c_str());
      ps.Shutdown();
      return 1;
    }
  }

  // SIGINT/SIGTERM shut down cleanly; signals are blocked in every thread and
  // taken by this one.
  absl::Notification stopping;
  std::thread signal_thread([&] {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    int sig = 0;
    sigwait(&set, &sig);
    if (!stopping.HasBeenNotified()) {
      FULCRUM_LOG(INFO) << "signal " << sig << ": shutting down";
      stopping.Notify();
    }
  });

  const double interval = absl::GetFlag(FLAGS_status_interval);
  const double worker_timeout = absl::GetFlag(FLAGS_worker_timeout);
  const bool exit_when_done = absl::GetFlag(FLAGS_exit_when_done);
  std::atomic<int> exit_code{0};
  std::thread monitor([&] {
    // Another shard serves until told to stop; the coordinator's backup
    // until then too, unless it takes over.
    JobCoordinator* coordinator = ps.coordinator();
    while (coordinator == nullptr) {
      if (stopping.HasBeenNotified()) return;
      if (ps.WaitUntilJobOver(absl::Now() + absl::Milliseconds(500))) {
        if (!exit_when_done) return;
        FULCRUM_LOG(INFO) << "the job is over; shard exits";
        stopping.Notify();
        kill(getpid(), SIGTERM);  // releases the signal thread
        return;
      }
      coordinator = ps.coordinator();
    }
    bool reported = false;
    int printed_evals = 0;
    while (!stopping.HasBeenNotified()) {
      const absl::Duration tick = interval > 0 ? absl::Seconds(interval) : absl::Milliseconds(500);
      const bool done = coordinator->WaitUntilDone(absl::Now() + tick);
      if (stopping.HasBeenNotified()) break;
      if (ps.superseded()) {
        FULCRUM_LOG(ERROR) << "the coordinator's backup took over the job while this process "
                              "could not reach it; this process exits (started again with "
                              "--coordinator_backup naming it, it becomes its backup)";
        exit_code = 3;
        stopping.Notify();
        kill(getpid(), SIGTERM);  // releases the signal thread
        break;
      }
      const JobStatus status = coordinator->GetStatus();
      // Every evaluation once, with the training time it was reported at
      // (bench/train.sh reads time-to-accuracy from these lines).
      for (; printed_evals < status.evaluations_size(); ++printed_evals) {
        const EvalResult& eval = status.evaluations(printed_evals);
        std::printf("epoch %u/%u %s:%s test_loss=%.4f elapsed=%.2fs\n", eval.epoch(),
                    status.epochs(), eval.final() ? "final model" : "done",
                    FormatEval(eval).c_str(), eval.test_loss(), eval.elapsed_seconds());
      }
      if (interval > 0 && (status.state() == RUNNING || status.state() == EVALUATING)) {
        std::printf("%s\n", coordinator->ProgressLine().c_str());
      }
      std::fflush(stdout);
      if (done && !reported) {
        reported = true;
        std::printf("%s\n", coordinator->ResultLine().c_str());
        std::fflush(stdout);
        if (exit_when_done) {
          // Let every worker hear that the job is over before going away.
          coordinator->WaitUntilWorkersLeft(absl::Now() + absl::Seconds(worker_timeout));
          // ... and every other shard (they exit then too).
          coordinator->WaitUntilShardsToldOver(absl::Now() + absl::Seconds(worker_timeout));
          stopping.Notify();
          kill(getpid(), SIGTERM);  // releases the signal thread
          break;
        }
      }
    }
  });

  stopping.WaitForNotification();
  ps.Shutdown();
  ps.Wait();
  monitor.join();
  signal_thread.join();
  return exit_code;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  // Block the shutdown signals before any thread starts so that only the
  // signal thread receives them.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  fulcrum::TuneMutexes();
  fulcrum::KeepFreedMemory();
  absl::SetProgramUsageMessage(
      "Fulcrum parameter server: serves a model shard and coordinates the job.\n"
      "Exit status: 0 stopped or done; 1 failed; 2 bad flags or job; 3 a coordinator whose\n"
      "backup took over the job (start it again with --coordinator_backup to rejoin).");
  fulcrum::ListSecurityFlagsInHelp(__FILE__);
  absl::ParseCommandLine(argc, argv);
  return fulcrum::Run();
}
