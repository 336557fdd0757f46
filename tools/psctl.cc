// psctl: operator CLI for a running Fulcrum job.
//
//   psctl status --coordinator=HOST:PORT [--json]
//   psctl watch  --coordinator=HOST:PORT [--interval=1]
//   psctl stop   --coordinator=HOST:PORT
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/model_spec.h"
#include "common/rpc/channel.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/health_check.h"
#include "common/rpc/security.h"
#include "common/rpc/security_flags.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/coordinator.grpc.pb.h"
#include "proto/job.pb.h"
#include "proto/serving.grpc.pb.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051",
          "host:port of the coordinating ps_server (comma-separated: the coordinator and its "
          "backup; the one serving the job is used).");
ABSL_FLAG(bool, json, false, "status: print JSON instead of a table.");
ABSL_FLAG(double, interval, 1.0, "watch: seconds between updates.");
ABSL_FLAG(double, timeout, 5, "Deadline of a call, seconds.");

namespace fulcrum {
namespace {

constexpr char kUsage[] =
    "psctl: operate a Fulcrum job.\n"
    "\n"
    "  psctl status --coordinator=HOST:PORT [--json]\n"
    "      the job's state, progress and workers\n"
    "  psctl watch --coordinator=HOST:PORT [--interval=SECONDS]\n"
    "      the status, redrawn as it changes, until the job ends\n"
    "  psctl stop --coordinator=HOST:PORT\n"
    "      end the job: workers finish their step and exit\n"
    "  psctl checkpoint --coordinator=HOST:PORT\n"
    "      write a checkpoint now (the server needs --checkpoint_dir)\n"
    "  psctl health --coordinator=HOST:PORT\n"
    "      exit 0 if the server's grpc.health.v1 service says SERVING\n"
    "  psctl serving --coordinator=HOST:PORT [--json]\n"
    "      what a serving process (ps_server --serve) serves: its checkpoint, tables, tensors";

std::string ModeLabel(const JobStatus& s) {
  if (s.mode() == SSP) return absl::StrFormat("ssp:%d", s.staleness());
  return ConsistencyModeName(s.mode());
}

std::string WorkerStateLabel(WorkerState state) {
  switch (state) {
    case ACTIVE:
      return "active";
    case EVALUATING_MODEL:
      return "evaluating";
    case IDLE:
      return "idle";
    case DEAD:
      return "dead";
    case LEFT:
      return "left";
    default:
      return "-";
  }
}

std::string FormatTable(const JobStatus& s) {
  std::string out;
  absl::StrAppendFormat(&out, "job        %s\n", JobState_Name(s.state()));
  absl::StrAppendFormat(&out, "model      %s   mode %s   optimizer %s\n",
                        s.model().empty() ? "-" : s.model(), ModeLabel(s), s.optimizer());
  for (const std::string& own : s.own_optimizers()) {
    absl::StrAppendFormat(&out, "           own optimizer %s\n", own);
  }
  absl::StrAppendFormat(&out, "workers    %d live, %d dead (job started with %d)\n",
                        s.live_workers(), s.dead_workers(), s.expected_workers());
  absl::StrAppendFormat(&out,
                        "progress   epoch %d/%d   partitions left in epoch %d/%d   round %d\n",
                        std::min(s.epoch() + 1, s.epochs()), s.epochs(),
                        s.partitions_left_in_epoch(), s.partitions_per_epoch(), s.round());
  absl::StrAppendFormat(&out, "           examples %d   %.0f examples/s   loss %.4f\n",
                        s.examples_seen(), s.examples_per_second(), s.loss());
  if (s.mode() != ASYNC) {
    absl::StrAppendFormat(&out, "waiting    %.1f s in pulls (all workers)\n", s.wait_seconds());
  }
  if (s.last_eval().examples() > 0) {
    absl::StrAppendFormat(&out, "test       accuracy %.4f   loss %.4f   (%s epoch %d)\n",
                          s.last_eval().test_accuracy(), s.last_eval().test_loss(),
                          s.last_eval().final() ? "final, after" : "after", s.last_eval().epoch());
    std::map<std::string, double> metrics(s.last_eval().metrics().begin(),
                                          s.last_eval().metrics().end());
    for (const auto& [name, value] : metrics) {
      absl::StrAppendFormat(&out, "           %s %.6g\n", name, value);
    }
  } else {
    absl::StrAppendFormat(&out, "test       no evaluation yet\n");
  }
  absl::StrAppendFormat(&out, "elapsed    %.1f s\n", s.elapsed_seconds());
  if (s.has_last_checkpoint()) {
    const CheckpointInfo& c = s.last_checkpoint();
    absl::StrAppendFormat(
        &out, "checkpoint %s   version %d   %s   %d bytes in %.3f s\n", c.path(), c.round(),
        absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixSeconds(c.unix_seconds()),
                         absl::LocalTimeZone()),
        c.bytes(), c.duration_seconds());
  } else {
    absl::StrAppendFormat(&out, "checkpoint none written by this server\n");
  }
  if (s.checkpoint_failures() > 0) {
    absl::StrAppendFormat(&out, "           %d failed; last: %s\n", s.checkpoint_failures(),
                          s.last_checkpoint_error());
  }
  for (const SparseTableStatus& t : s.sparse_tables()) {
    absl::StrAppendFormat(&out, "table      %s   dim %d   %d of %d rows   %d bytes (%.0f B/row)\n",
                          t.name(), t.dim(), t.rows(), t.max_rows(), t.bytes(), t.bytes_per_row());
    if (t.admitted() + t.refused() + t.evicted() + t.counter_bytes() > 0) {
      absl::StrAppendFormat(&out, "           admitted %d   refused %d   evicted %d", t.admitted(),
                            t.refused(), t.evicted());
      if (t.counter_bytes() > 0) {
        absl::StrAppendFormat(&out, "   counters %d bytes", t.counter_bytes());
      }
      if (t.pending_ids() > 0) absl::StrAppendFormat(&out, " (%d ids pending)", t.pending_ids());
      if (t.bloom_false_positive_rate() > 0) {
        absl::StrAppendFormat(&out, " (false positives %.2g)", t.bloom_false_positive_rate());
      }
      out += "\n";
    }
  }
  if (s.has_restored_from()) {
    absl::StrAppendFormat(&out, "restored   from %s at version %d\n", s.restored_from().path(),
                          s.restored_from().round());
  }
  out += "\n";
  absl::StrAppendFormat(&out, "%-5s %-22s %-5s %-8s %-10s %-6s %-10s %-11s %-10s %-9s %-9s %s\n",
                        "SHARD", "ADDRESS", "UP", "TENSORS", "ELEMENTS", "TABLES", "ROWS", "BYTES",
                        "VERSION", "PUSHES/S", "PULLS/S", "BACKUP");
  for (const ShardStatus& sh : s.shards()) {
    std::string backup = sh.backup_address().empty() && sh.backup_up() ? "(joining)"
                         : sh.backup_address().empty()                 ? "-"
                                                                       : sh.backup_address();
    if (!sh.backup_address().empty() && !sh.backup_up()) backup += " (DOWN)";
    if (sh.failovers() > 0) absl::StrAppend(&backup, ", ", sh.failovers(), " failover(s)");
    absl::StrAppendFormat(
        &out, "%-5d %-22s %-5s %-8d %-10d %-6d %-10d %-11d %-10d %-9.0f %-9.0f %s\n", sh.index(),
        sh.address().empty() ? "(coordinator)" : sh.address(), sh.up() ? "yes" : "NO", sh.tensors(),
        sh.elements(), sh.tables(), sh.rows(), sh.bytes(), sh.version(), sh.pushes_per_second(),
        sh.pulls_per_second(), backup);
  }
  out += "\n";
  absl::StrAppendFormat(&out, "%-4s %-20s %-10s %-10s %-6s %-8s %-9s %-8s %-8s %-8s %s\n", "ID",
                        "NAME", "STATE", "PARTITION", "DONE", "STEPS", "EXAMPLES", "LOSS", "EX/S",
                        "WAIT", "HEARTBEAT");
  for (const WorkerStatus& w : s.workers()) {
    const std::string partition =
        w.has_partition() ? absl::StrFormat("e%d:%d/%d", w.partition().epoch() + 1,
                                            w.partition().index(), w.partition().count())
                          : "-";
    absl::StrAppendFormat(&out, "%-4d %-20s %-10s %-10s %-6d %-8d %-9d %-8.4f %-8.0f %-8s %s\n",
                          w.worker_id(), w.name().substr(0, 20), WorkerStateLabel(w.state()),
                          partition, w.partitions_completed(), w.steps(), w.examples_seen(),
                          w.loss(), w.examples_per_second(),
                          absl::StrFormat("%.1fs", w.wait_seconds()),
                          absl::StrFormat("%.1fs ago", w.seconds_since_heartbeat()));
  }
  return out;
}

void SetDeadline(grpc::ClientContext* context);

// The channel to the coordinator with the TLS flags, or exits with a message.
// A replicated coordinator ("HOST:PORT,HOST:PORT"): the first process that
// serves the job (its backup answers UNAVAILABLE until it takes over), or
// the first one if none does.
std::shared_ptr<grpc::Channel> Channel() {
  absl::StatusOr<ClientSecurityOptions> security = ClientSecurityFromFlags();
  if (!security.ok()) {
    std::fprintf(stderr, "psctl: %s\n", std::string(security.status().message()).c_str());
    std::exit(2);
  }
  const std::vector<std::string> addresses = absl::StrSplit(absl::GetFlag(FLAGS_coordinator), ',');
  std::shared_ptr<grpc::Channel> first;
  for (const std::string& address : addresses) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = OpenChannel(address, *security);
    if (!channel.ok()) {
      std::fprintf(stderr, "psctl: %s\n", std::string(channel.status().message()).c_str());
      std::exit(2);
    }
    if (addresses.size() == 1) return *channel;
    if (first == nullptr) first = *channel;
    grpc::ClientContext context;
    SetDeadline(&context);
    JobStatus status;
    if (Coordinator::NewStub(*channel)->GetStatus(&context, GetStatusRequest(), &status).ok()) {
      return *channel;
    }
  }
  return first;
}

std::unique_ptr<Coordinator::Stub> Connect() { return Coordinator::NewStub(Channel()); }

// The deadline of a unary call (the channel carries the token).
void SetDeadline(grpc::ClientContext* context) {
  SetTimeout(absl::Seconds(absl::GetFlag(FLAGS_timeout)), context);
}

// `--json` output: every field, under its proto name. Exit status.
int PrintJson(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) return 1;
  std::printf("%s", json.c_str());
  return 0;
}

int Failed(const char* what, const grpc::Status& rpc) {
  std::fprintf(stderr, "psctl: %s %s failed: %s\n", what, absl::GetFlag(FLAGS_coordinator).c_str(),
               FromGrpcStatus(rpc).ToString().c_str());
  return 1;
}

int Status() {
  auto stub = Connect();
  grpc::ClientContext context;
  SetDeadline(&context);
  JobStatus status;
  grpc::Status rpc = stub->GetStatus(&context, GetStatusRequest(), &status);
  if (!rpc.ok()) return Failed("status from", rpc);
  if (absl::GetFlag(FLAGS_json)) return PrintJson(status);
  std::printf("%s", FormatTable(status).c_str());
  return 0;
}

int Watch() {
  auto stub = Connect();
  grpc::ClientContext context;  // no deadline: the stream lasts the job
  WatchStatusRequest request;
  request.set_interval_seconds(absl::GetFlag(FLAGS_interval));
  std::unique_ptr<grpc::ClientReader<JobStatus>> reader = stub->WatchStatus(&context, request);
  JobStatus status;
  bool any = false;
  while (reader->Read(&status)) {
    any = true;
    // Clear the screen and redraw from the top.
    std::printf("\033[H\033[2J%s", FormatTable(status).c_str());
    std::fflush(stdout);
  }
  grpc::Status rpc = reader->Finish();
  if (!rpc.ok()) return Failed("watch of", rpc);
  if (!any) std::printf("psctl: no status received\n");
  return 0;
}

int Health() {
  absl::Status serving = CheckServing(Channel(), absl::Seconds(absl::GetFlag(FLAGS_timeout)));
  if (!serving.ok()) {
    std::fprintf(stderr, "psctl: health of %s: %s\n", absl::GetFlag(FLAGS_coordinator).c_str(),
                 serving.ToString().c_str());
    return 1;
  }
  std::printf("SERVING\n");
  return 0;
}

int Checkpoint() {
  auto stub = Connect();
  grpc::ClientContext context;
  SetTimeout(absl::Seconds(120), &context);
  CheckpointInfo info;
  grpc::Status rpc = stub->Checkpoint(&context, CheckpointRequest(), &info);
  if (!rpc.ok()) return Failed("checkpoint of", rpc);
  std::printf("checkpoint %s at version %lld: %llu bytes in %.3f s\n", info.path().c_str(),
              static_cast<long long>(info.round()), static_cast<unsigned long long>(info.bytes()),
              info.duration_seconds());
  return 0;
}

// `psctl serving`: a serving process's ServingStatus.
int Serving() {
  auto stub = ModelServing::NewStub(Channel());
  grpc::ClientContext context;
  SetDeadline(&context);
  ServingStatus s;
  grpc::Status rpc = stub->GetServingStatus(&context, ServingStatusRequest(), &s);
  if (!rpc.ok()) return Failed("serving status of", rpc);
  if (absl::GetFlag(FLAGS_json)) return PrintJson(s);
  std::printf("serving    %s\n", s.folder().c_str());
  if (s.checkpoint() == 0) {
    std::printf("checkpoint none loaded yet%s%s\n", s.last_error().empty() ? "" : ": ",
                s.last_error().c_str());
    return 0;
  }
  std::printf("checkpoint %llu   model %s   version %lld   taken %.1f s before it was served\n",
              static_cast<unsigned long long>(s.checkpoint()), s.model().c_str(),
              static_cast<long long>(s.round()),
              s.loaded_unix_seconds() - s.checkpoint_unix_seconds());
  std::printf("           %llu whole loads, %llu deltas applied, %llu lookups\n",
              static_cast<unsigned long long>(s.whole_loads()),
              static_cast<unsigned long long>(s.deltas_applied()),
              static_cast<unsigned long long>(s.lookups()));
  if (!s.last_error().empty()) std::printf("last error %s\n", s.last_error().c_str());
  for (const ServingStatus::Table& t : s.tables()) {
    std::printf("table      %s   dim %u   %llu rows\n", t.name().c_str(), t.dim(),
                static_cast<unsigned long long>(t.rows()));
  }
  for (const ServingStatus::Tensor& t : s.tensors()) {
    std::printf("tensor     %s   [%s]\n", t.name().c_str(), absl::StrJoin(t.shape(), ", ").c_str());
  }
  return 0;
}

int Stop() {
  auto stub = Connect();
  grpc::ClientContext context;
  SetDeadline(&context);
  StopResponse response;
  grpc::Status rpc = stub->Stop(&context, StopRequest(), &response);
  if (!rpc.ok()) return Failed("stop of", rpc);
  std::printf("job stopped\n");
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(fulcrum::kUsage);
  fulcrum::ListSecurityFlagsInHelp(__FILE__);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::fprintf(stderr, "%s\n", fulcrum::kUsage);
    return 2;
  }
  const std::string command = args[1];
  if (command == "status") return fulcrum::Status();
  if (command == "watch") return fulcrum::Watch();
  if (command == "stop") return fulcrum::Stop();
  if (command == "checkpoint") return fulcrum::Checkpoint();
  if (command == "health") return fulcrum::Health();
  if (command == "serving") return fulcrum::Serving();
  std::fprintf(stderr, "psctl: unknown command '%s'\n\n%s\n", command.c_str(), fulcrum::kUsage);
  return 2;
}
