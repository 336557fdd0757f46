// psctl: operator CLI for a running Fulcrum job.
//
//   psctl status --coordinator=HOST:PORT [--json]
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "common/model_spec.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "proto/fulcrum.grpc.pb.h"

ABSL_FLAG(std::string, coordinator, "127.0.0.1:50051",
          "host:port of the coordinating ps_server.");
ABSL_FLAG(bool, json, false, "Print the status as JSON instead of a table.");
ABSL_FLAG(double, timeout, 5, "Deadline of the call, seconds.");

namespace fulcrum {
namespace {

constexpr char kUsage[] =
    "psctl: operate a Fulcrum job.\n"
    "\n"
    "  psctl status --coordinator=HOST:PORT [--json]\n"
    "      the job's state, progress and workers";

void PrintTable(const JobStatus& s) {
  std::printf("job        %s\n", JobState_Name(s.state()).c_str());
  std::printf("model      %s   mode %s   optimizer %s\n", s.model().c_str(),
              ConsistencyModeName(s.mode()).c_str(), s.optimizer().c_str());
  std::printf("workers    %u of %u registered\n", s.registered_workers(),
              s.expected_workers());
  std::printf("progress   epoch %u/%u   round %lld   examples %llu   %.0f examples/s\n",
              std::min(s.epoch() + 1, s.epochs()), s.epochs(),
              static_cast<long long>(s.round()),
              static_cast<unsigned long long>(s.examples_seen()),
              s.examples_per_second());
  std::printf("loss       %.4f\n", s.loss());
  if (s.last_eval().examples() > 0) {
    std::printf("test       accuracy %.4f   loss %.4f   (%s epoch %u)\n",
                s.last_eval().test_accuracy(), s.last_eval().test_loss(),
                s.last_eval().final() ? "final, after" : "after",
                s.last_eval().epoch());
  } else {
    std::printf("test       no evaluation yet\n");
  }
  std::printf("elapsed    %.1f s\n\n", s.elapsed_seconds());
  std::printf("%-4s %-22s %-9s %-6s %-8s %-10s %-8s %-10s %-9s\n", "ID", "NAME",
              "PARTITION", "EPOCH", "STEP", "EXAMPLES", "LOSS", "EX/S",
              "LAST SEEN");
  for (const WorkerStatus& w : s.workers()) {
    std::string state = w.training_done() ? "done" : "";
    std::printf("%-4llu %-22s %-9s %-6u %-8lld %-10llu %-8.4f %-10.0f %-9s %s%s\n",
                static_cast<unsigned long long>(w.worker_id()),
                w.name().substr(0, 22).c_str(),
                absl::StrFormat("%u/%u", w.partition().index(),
                                w.partition().count())
                    .c_str(),
                w.epoch() + (w.training_done() ? 0 : 1),
                static_cast<long long>(w.step()),
                static_cast<unsigned long long>(w.examples_seen()), w.loss(),
                w.examples_per_second(),
                absl::StrFormat("%.1fs ago", w.seconds_since_report()).c_str(),
                state.c_str(), w.evaluator() ? " evaluator" : "");
  }
}

int Status() {
  const std::string address = absl::GetFlag(FLAGS_coordinator);
  auto channel =
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  std::unique_ptr<Coordinator::Stub> stub = Coordinator::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(
      absl::Now() + absl::Seconds(absl::GetFlag(FLAGS_timeout))));
  JobStatus status;
  grpc::Status rpc = stub->GetStatus(&context, GetStatusRequest(), &status);
  if (!rpc.ok()) {
    std::fprintf(stderr, "psctl: status from %s failed: %s\n", address.c_str(),
                 FromGrpcStatus(rpc).ToString().c_str());
    return 1;
  }
  if (absl::GetFlag(FLAGS_json)) {
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.always_print_primitive_fields = true;
    options.preserve_proto_field_names = true;
    google::protobuf::util::MessageToJsonString(status, &json, options);
    std::printf("%s", json.c_str());
    return 0;
  }
  PrintTable(status);
  return 0;
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(fulcrum::kUsage);
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    std::fprintf(stderr, "%s\n", fulcrum::kUsage);
    return 2;
  }
  const std::string command = args[1];
  if (command == "status") return fulcrum::Status();
  std::fprintf(stderr, "psctl: unknown command '%s'\n\n%s\n", command.c_str(),
               fulcrum::kUsage);
  return 2;
}
