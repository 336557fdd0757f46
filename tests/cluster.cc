#include "tests/cluster.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/status_macros.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"

namespace fulcrum {

LocalCluster::LocalCluster(const std::string& name) : dir_(TestDir(name)) {}

LocalCluster::~LocalCluster() {
  if (!status_socket_.empty()) unlink(status_socket_.c_str());
  if (!backup_status_socket_.empty()) unlink(backup_status_socket_.c_str());
}

namespace {

// `launcher` followed by `argv`.
std::vector<std::string> Placed(const Placement& placement, std::vector<std::string> argv) {
  argv.insert(argv.begin(), placement.launcher.begin(), placement.launcher.end());
  return argv;
}

}  // namespace

// sun_path holds 108 bytes: a short path, not one under TEST_TMPDIR.
std::string LocalCluster::ShortSocketPath() {
  std::random_device random;
  return absl::StrCat("/tmp/fulcrum-", random(), ".sock");
}

std::string LocalCluster::address() const {
  return absl::StrCat(server_placement_.host, ":", port_);
}

absl::Status LocalCluster::StartServer(const std::vector<std::string>& flags,
                                       const Placement& placement) {
  server_placement_ = placement;
  std::vector<std::string> argv =
      Placed(placement, {RunfilePath("server/ps_server"), "--host=" + placement.host, "--port=0",
                         "--port_file=" + dir_ + "/port", "--status_interval=0"});
  unlink((dir_ + "/port").c_str());  // a port file of an earlier run in the folder
  if (!placement.launcher.empty()) {
    status_socket_ = ShortSocketPath();
    argv.push_back("--unix_socket=" + status_socket_);
  }
  argv.insert(argv.end(), flags.begin(), flags.end());
  absl::Status started = server_.Start(argv, dir_ + "/ps.out", dir_ + "/ps.err");
  if (!started.ok()) return started;
  absl::StatusOr<int> port = WaitForPortFile(dir_ + "/port", absl::Seconds(30));
  if (!port.ok()) {
    return absl::UnavailableError(absl::StrCat("ps_server did not start: ", ServerLog()));
  }
  port_ = *port;
  const std::string status_address = status_socket_.empty() ? address() : "unix:" + status_socket_;
  stub_ =
      Coordinator::NewStub(grpc::CreateChannel(status_address, grpc::InsecureChannelCredentials()));
  return absl::OkStatus();
}

absl::Status LocalCluster::RestartServer(const std::vector<std::string>& flags) {
  server_.Signal(SIGKILL);
  absl::StatusOr<int> code = server_.Wait(absl::Seconds(10));
  if (!code.ok()) return code.status();
  ++restarts_;
  std::vector<std::string> argv = Placed(
      server_placement_, {RunfilePath("server/ps_server"), "--host=" + server_placement_.host,
                          absl::StrCat("--port=", port_), "--status_interval=0"});
  if (!status_socket_.empty()) argv.push_back("--unix_socket=" + status_socket_);
  argv.insert(argv.end(), flags.begin(), flags.end());
  const std::string log = absl::StrCat(dir_, "/ps", restarts_);
  absl::Status started = server_.Start(argv, log + ".out", log + ".err");
  if (!started.ok()) return started;
  // Serving again once status answers.
  absl::StatusOr<JobStatus> up = WaitFor([](const JobStatus&) { return true; }, absl::Seconds(30));
  if (!up.ok()) {
    return absl::UnavailableError(
        absl::StrCat("restarted ps_server not serving: ", ReadFileOrEmpty(log + ".err")));
  }
  return absl::OkStatus();
}

std::string LocalCluster::shard_address(int index) const {
  const Shard& shard = shards_.at(index);
  return absl::StrCat(shard.host, ":", shard.port);
}

std::string LocalCluster::ShardLog(int index) const {
  const Shard& shard = shards_.at(index);
  return ReadFileOrEmpty(absl::StrCat(
      dir_, "/shard", index, shard.restarts > 0 ? absl::StrCat("-", shard.restarts) : "", ".err"));
}

absl::StatusOr<int> LocalCluster::StartShard(int index, int num_shards,
                                             const std::vector<std::string>& flags,
                                             const Placement& placement) {
  return StartShardProcess(index, index, num_shards, flags, placement);
}

absl::StatusOr<int> LocalCluster::StartBackup(int index, int num_shards,
                                              const std::vector<std::string>& flags,
                                              const Placement& placement) {
  return StartShardProcess(kBackupId + index, index, num_shards, flags, placement);
}

absl::StatusOr<int> LocalCluster::StartShardProcess(int id, int index, int num_shards,
                                                    const std::vector<std::string>& flags,
                                                    const Placement& placement) {
  Shard& shard = shards_[id];
  shard.process = std::make_unique<Subprocess>();
  shard.host = placement.host;
  shard.argv = Placed(
      placement, {RunfilePath("server/ps_server"), "--host=" + placement.host,
                  absl::StrCat("--shard_index=", index), absl::StrCat("--num_shards=", num_shards),
                  "--coordinator=" + address(), "--status_interval=0"});
  shard.argv.insert(shard.argv.end(), flags.begin(), flags.end());
  const std::string port_file = absl::StrCat(dir_, "/shard", id, ".port");
  unlink(port_file.c_str());
  std::vector<std::string> argv = shard.argv;
  argv.push_back("--port=0");
  argv.push_back("--port_file=" + port_file);
  const std::string log = absl::StrCat(dir_, "/shard", id);
  absl::Status started = shard.process->Start(argv, log + ".out", log + ".err");
  if (!started.ok()) return started;
  absl::StatusOr<int> port = WaitForPortFile(port_file, absl::Seconds(30));
  if (!port.ok()) {
    return absl::UnavailableError(
        absl::StrCat("shard process ", id, " (index ", index, ") did not start: ", ShardLog(id)));
  }
  shard.port = *port;
  return id;
}

absl::Status LocalCluster::RestartShard(int index, const std::vector<std::string>& extra_flags) {
  Shard& shard = shards_.at(index);
  shard.process->Signal(SIGKILL);
  absl::StatusOr<int> code = shard.process->Wait(absl::Seconds(10));
  if (!code.ok()) return code.status();
  ++shard.restarts;
  std::vector<std::string> argv = shard.argv;
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  const std::string port_file = absl::StrCat(dir_, "/shard", index, "-", shard.restarts, ".port");
  argv.push_back(absl::StrCat("--port=", shard.port));
  argv.push_back("--port_file=" + port_file);
  const std::string log = absl::StrCat(dir_, "/shard", index, "-", shard.restarts);
  FULCRUM_RETURN_IF_ERROR(shard.process->Start(argv, log + ".out", log + ".err"));
  absl::StatusOr<int> port = WaitForPortFile(port_file, absl::Seconds(30));
  if (!port.ok()) {
    return absl::UnavailableError(
        absl::StrCat("shard ", index, " did not restart: ", ShardLog(index)));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> LocalCluster::StartWorker(const std::string& name,
                                              const std::vector<std::string>& flags,
                                              const Placement& placement) {
  std::vector<std::string> named = {"--worker_name=" + name};
  named.insert(named.end(), flags.begin(), flags.end());
  return StartWorkerProgram("worker/worker", named, placement);
}

absl::StatusOr<int> LocalCluster::StartWorkerProgram(const std::string& program,
                                                     const std::vector<std::string>& flags,
                                                     const Placement& placement) {
  const int index = workers_.size();
  std::vector<std::string> argv = Placed(placement, {RunfilePath(program)});
  // The caller's --coordinator (say a unix: socket) replaces the TCP one.
  if (std::none_of(flags.begin(), flags.end(),
                   [](const std::string& f) { return absl::StartsWith(f, "--coordinator="); })) {
    argv.push_back("--coordinator=" + address());
  }
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto worker = std::make_unique<Subprocess>();
  const std::string log = absl::StrCat(dir_, "/worker", index);
  FULCRUM_RETURN_IF_ERROR(worker->Start(argv, log + ".out", log + ".err"));
  workers_.push_back(std::move(worker));
  return index;
}

absl::StatusOr<std::string> LocalCluster::RunJob(const std::string& job_file,
                                                 const std::vector<std::string>& server_flags,
                                                 const std::string& program,
                                                 const std::vector<std::string>& flags, int workers,
                                                 absl::Duration timeout) {
  std::vector<std::string> server = {"--job=" + RunfilePath(job_file), "--exit_when_done"};
  server.insert(server.end(), server_flags.begin(), server_flags.end());
  FULCRUM_RETURN_IF_ERROR(StartServer(server));
  std::vector<int> started;
  for (int i = 0; i < workers; ++i) {
    FULCRUM_ASSIGN_OR_RETURN(const int w, StartWorkerProgram(program, flags));
    started.push_back(w);
  }
  for (int w : started) {
    absl::StatusOr<int> code = WaitWorker(w, timeout);
    if (!code.ok() || *code != 0) {
      return absl::InternalError(absl::StrCat(
          "worker ", w, code.ok() ? absl::StrCat(" exited ", *code) : " did not finish", ":\n",
          WorkerLog(w), "\nps_server:\n", ServerLog()));
    }
  }
  absl::StatusOr<int> code = server_.Wait(absl::Seconds(60));
  if (!code.ok() || *code != 0) {
    return absl::InternalError(absl::StrCat("ps_server did not exit 0:\n", ServerLog()));
  }
  return ServerOut();
}

absl::StatusOr<int> LocalCluster::StartCoordinatorBackup(int num_shards,
                                                         const std::vector<std::string>& flags,
                                                         const Placement& placement) {
  std::vector<std::string> all = flags;
  if (!placement.launcher.empty()) {  // as for the server: status over a unix socket
    backup_status_socket_ = ShortSocketPath();
    all.push_back("--unix_socket=" + backup_status_socket_);
  }
  FULCRUM_ASSIGN_OR_RETURN(const int id,
                           StartShardProcess(kBackupId, 0, num_shards, all, placement));
  const std::string status_address =
      backup_status_socket_.empty() ? shard_address(id) : "unix:" + backup_status_socket_;
  backup_stub_ =
      Coordinator::NewStub(grpc::CreateChannel(status_address, grpc::InsecureChannelCredentials()));
  return id;
}

absl::StatusOr<JobStatus> LocalCluster::Status() const {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  JobStatus status;
  grpc::Status s = stub_->GetStatus(&context, GetStatusRequest(), &status);
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE && backup_stub_ != nullptr) {
    grpc::ClientContext retry;
    retry.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    s = backup_stub_->GetStatus(&retry, GetStatusRequest(), &status);
  }
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  return status;
}

absl::StatusOr<JobStatus> LocalCluster::WaitFor(const std::function<bool(const JobStatus&)>& done,
                                                absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  absl::StatusOr<JobStatus> status;
  while (absl::Now() < deadline) {
    status = Status();
    if (status.ok() && done(*status)) return status;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "condition not reached; last status: ",
      status.ok() ? status->ShortDebugString().substr(0, 2000) : status.status().ToString()));
}

JobStatus LocalCluster::FinishJob(const std::vector<int>& workers, absl::Duration timeout) {
  for (int i : workers) {
    absl::StatusOr<int> code = WaitWorker(i, timeout);
    if (!code.ok()) {
      // A hang: everything the processes said, and where the job stands.
      std::string logs;
      for (size_t w = 0; w < workers_.size(); ++w) {
        absl::StrAppend(&logs, "\nworker ", w, ":\n", WorkerLog(w));
      }
      for (const auto& [id, shard] : shards_) {
        absl::StrAppend(&logs, "\nshard process ", id, ":\n", ShardLog(id));
      }
      absl::StatusOr<JobStatus> now = Status();
      ADD_FAILURE() << "worker " << i << " still running\n"
                    << ServerLog() << logs << "\nstatus: "
                    << (now.ok() ? now->ShortDebugString() : now.status().ToString());
    }
    if (code.ok()) {
      EXPECT_EQ(*code, 0) << WorkerLog(i);
    }
  }
  absl::StatusOr<JobStatus> status =
      WaitFor([](const JobStatus& s) { return s.state() == FINISHED; }, absl::Seconds(30));
  EXPECT_TRUE(status.ok()) << status.status();
  return status.ok() ? *status : JobStatus();
}

absl::StatusOr<int> LocalCluster::WaitWorker(int i, absl::Duration timeout) {
  return workers_[i]->Wait(timeout);
}

std::string LocalCluster::WorkerLog(int i) const {
  return ReadFileOrEmpty(absl::StrCat(dir_, "/worker", i, ".err"));
}
std::string LocalCluster::ServerLog() const { return ReadFileOrEmpty(dir_ + "/ps.err"); }
std::string LocalCluster::ServerOut() const { return ReadFileOrEmpty(dir_ + "/ps.out"); }

absl::Status GenerateClickData(const std::string& out_dir, const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {RunfilePath("tools/gen_click_data"), "--out_dir=" + out_dir};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return RunToCompletion(argv, out_dir + ".gen", absl::Minutes(2)).status();
}

int MetricsPort(const std::string& log) {
  const size_t at = log.find("metrics at http://");
  if (at == std::string::npos) return 0;
  const size_t colon = log.find(':', at + 18);
  const size_t slash = log.find('/', colon);
  int port = 0;
  if (colon == std::string::npos || slash == std::string::npos ||
      !absl::SimpleAtoi(log.substr(colon + 1, slash - colon - 1), &port)) {
    return 0;
  }
  return port;
}

double ResultMetric(const std::string& out, const std::string& name) {
  const std::string prefix = name + "=";
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (!absl::StartsWith(line, "result:")) continue;
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      double v;
      if (absl::ConsumePrefix(&field, prefix) && absl::SimpleAtod(field, &v)) return v;
    }
  }
  return -1;
}

double ResultAccuracy(const std::string& out) { return ResultMetric(out, "test_accuracy"); }

const WorkerStatus* FindWorker(const JobStatus& status, const std::string& name, bool live_only) {
  const WorkerStatus* found = nullptr;
  for (const WorkerStatus& w : status.workers()) {
    if (w.name() != name) continue;
    if (live_only && (w.state() == DEAD || w.state() == LEFT)) continue;
    found = &w;
  }
  return found;
}

std::string CheckEachPartitionOncePerEpoch(const JobStatus& status) {
  std::map<std::pair<uint32_t, uint32_t>, int> count;
  for (const PartitionRecord& r : status.completed()) ++count[{r.epoch(), r.index()}];
  std::string problems;
  for (uint32_t e = 0; e < status.epochs(); ++e) {
    for (uint32_t p = 0; p < status.partitions_per_epoch(); ++p) {
      const int n = count[{e, p}];
      if (n != 1) absl::StrAppend(&problems, "epoch ", e, " partition ", p, ": ", n, "x; ");
    }
  }
  if (count.size() != status.epochs() * status.partitions_per_epoch()) {
    absl::StrAppend(&problems, "records outside the job's epochs/partitions; ");
  }
  return problems;
}

}  // namespace fulcrum
