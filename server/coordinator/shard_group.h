// ShardGroup: the job's parameter-server shards as the coordinator sees them —
// its own shard, in process, and the others, which register with it over
// gRPC (Coordinator.RegisterShard) when they start and then every heartbeat
// interval, reporting their counters.
//
// Membership (who may pull, who is training and at what clock, whether the
// job runs) changes on the coordinator's shard at once, and reaches every
// other shard as a whole Membership message with a version: one sender thread
// per remote shard sends the newest state whenever the shard is behind (after
// a change, after the shard restarted, after a failed send). A shard applies
// the difference with what it has, so messages may be coalesced or retried
// freely. Remote shards give a worker they do not know yet a grace period
// (ShardRole::membership_grace), which covers the hop.
//
// Thread-safe. `local` is not owned and must outlive the group; from
// construction it follows this coordinator incarnation's membership (worker
// ids of other incarnations are refused).
#ifndef FULCRUM_SERVER_COORDINATOR_SHARD_GROUP_H_
#define FULCRUM_SERVER_COORDINATOR_SHARD_GROUP_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"
#include "proto/checkpoint.pb.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "proto/shard_control.pb.h"
#include "server/coordinator/remote_shard.h"
#include "server/job_spec.h"
#include "server/shard/membership.h"
#include "server/shard/parameter_shard.h"

namespace fulcrum {

struct ShardGroupOptions {
  // Shards in the job, the coordinator's own (index 0) included.
  uint32_t num_shards = 1;
  // The coordinator process's incarnation (a restarted coordinator's
  // membership replaces whatever a shard had).
  uint64_t incarnation = 0;
  // This coordinator process's own id (told to the shards that report).
  uint64_t process_incarnation = 0;
  // The job remote shards are given when they register.
  Job job;
  // A shard silent this long is shown down.
  absl::Duration report_timeout = absl::Seconds(5);
  // How long a shard's primary gets to answer before its backup takes over
  // (or a new process takes its place).
  absl::Duration probe_timeout = absl::Milliseconds(500);
  // Deadline of each membership call to a remote shard.
  absl::Duration rpc_timeout = absl::Seconds(2);
  // How the coordinator reaches the other shards (GrpcRemoteShards in
  // ps_server); needed when num_shards > 1.
  RemoteShardFactory connect;
  // The time source. Not owned.
  const Clock* clock = Clock::Real();
  // A process for shard 0 (the coordinator's backup) registered or reported
  // (address, process id; "" and 0 when dropped): the coordinator's own
  // replicator follows it.
  std::function<void(const std::string& address, uint64_t process)> coordinator_backup;
};

class ShardGroup {
 public:
  ShardGroup(const ShardGroupOptions& options, ParameterShard* local);
  // Stops.
  ~ShardGroup();
  ShardGroup(const ShardGroup&) = delete;
  ShardGroup& operator=(const ShardGroup&) = delete;

  // Ends the sender threads (no more membership reaches remote shards).
  // Idempotent.
  void Stop();

  // Membership changes, on every shard: the job starts (pulls may proceed);
  // a worker registers (admitted: it may pull), takes a training lease
  // (active at its ssp clock: it may push, rounds and ssp pulls wait for
  // it), gives it back, is declared dead. Each makes a new version of the
  // membership (WorkerMembership), applied to the local shard at once and
  // sent to the others.
  void Start();
  void AdmitWorker(uint64_t worker_id);
  void ActivateWorker(uint64_t worker_id, int64_t clock);
  void DeactivateWorker(uint64_t worker_id);
  void RemoveWorker(uint64_t worker_id);
  // The slowest active worker's ssp clock (the largest int64 when none).
  int64_t SlowestActiveClock() const;
  // The membership as it is now (replicated to the coordinator's backup).
  Membership MembershipNow() const;
  // A backup taking over as this coordinator incarnation: the replicated
  // membership, under a version past any the dead coordinator may have sent
  // without replicating, made current on every shard.
  void TakeOverMembership(const Membership& membership);

  // Waits until every remote shard has acknowledged the membership as it is
  // now; UNAVAILABLE naming a shard that did not within `timeout` (a dead
  // shard, or one that has not reported to a coordinator that just took
  // over: the worker retries).
  absl::Status AwaitAcknowledged(absl::Duration timeout);

  // A remote shard's start or heartbeat. FAILED_PRECONDITION for an index or
  // count that does not fit the job.
  //
  // Index 0 is the coordinator's own shard: another process for it becomes
  // the coordinator's backup (one at a time; a second is refused while the
  // first reports), which takes the coordinator's shard and job state from
  // it and takes over when it falls silent (server/ps_server.h).
  //
  // Replicas: a process starting for an index whose primary answers (a probe
  // within probe_timeout) becomes its backup (role BACKUP; one at a time),
  // otherwise the primary (restoring the committed checkpoint), unless a live
  // backup is about to take over (UNAVAILABLE: retry). A primary's reports
  // are answered with its backup's address. A report from a process that no
  // longer holds its role (replaced primary, dropped backup) is refused with
  // FAILED_PRECONDITION: it must stop serving. Such a process may register
  // again (ready false, backup true) to become the backup of a live primary.
  absl::StatusOr<RegisterShardResponse> RegisterShard(const RegisterShardRequest& request);
  // The backup of a shard whose primary went silent asks to take over: OK
  // when it is that shard's backup and the primary does not answer; then
  // workers and membership go to it. FAILED_PRECONDITION otherwise.
  absl::Status PromoteBackup(const PromoteBackupRequest& request);
  // The primary of a shard cannot reach its backup: OK when the caller is the
  // primary (the backup is dropped, the primary goes on alone);
  // FAILED_PRECONDITION when its backup took over. Shard 0 (the coordinator's
  // own replicator): always OK.
  absl::Status DropBackup(const DropBackupRequest& request);

  // The newest committed checkpoint (written, or restored from): shards
  // record it, and a shard starting up restores its part of it.
  void SetCommitted(const CheckpointManifest& manifest);

  // OK once every remote shard has registered ready; UNAVAILABLE naming the
  // missing ones otherwise (workers cannot train yet).
  absl::Status CheckAllReady() const;
  // Where workers reach each shard, by index; "" for the coordinator's own
  // unless options.coordinator_address names it (workers use the address
  // they registered at). Empty when there is one shard and no name.
  std::vector<std::string> WorkerAddresses() const;
  // Where workers reach each shard's backup, by index ("": none); the same
  // length as WorkerAddresses.
  std::vector<std::string> BackupAddresses() const;
  // The coordinator's backup's address ("" when it has none).
  std::string coordinator_backup_address() const;
  // The newest committed checkpoint (sequence 0: none).
  CheckpointManifest committed() const;
  // Where workers reach the coordinator's own shard. The lists workers get
  // name it ("" otherwise: the address they registered at) once the
  // coordinator is replicated — a backup registered, or `now` (a backup
  // that took over: workers must leave the old address).
  void NameCoordinator(const std::string& address, bool now);
  // Where the coordinator serves, once named ("" before).
  std::string coordinator_address() const;
  // Every other shard's processes (primaries and backups) that have
  // registered.
  std::vector<std::string> OtherShardAddresses() const;
  // The other shards' primaries and backups, for the coordinator's backup.
  std::vector<ShardPair> Pairs() const;
  // A backup taking over the job: knows the shards' processes as its
  // coordinator did (before any registers here), so their reports are
  // taken as from the processes they are, a backup's included.
  void TakeOverPairs(const std::vector<ShardPair>& pairs);
  // Waits until every registered remote shard has reported after `since`
  // (and so heard the job state of then); false at the deadline.
  bool WaitUntilReportedSince(absl::Time since, absl::Time deadline) const;
  // Every shard's status, by index.
  std::vector<ShardStatus> Status() const;

  // The remote shards' primaries by index (index 0, the local shard, is
  // null); UNAVAILABLE naming the first shard not registered and ready.
  absl::StatusOr<std::vector<std::shared_ptr<RemoteShard>>> ReadyRemotes() const;

  uint32_t num_shards() const { return options_.num_shards; }
  ParameterShard* local() const { return local_; }

  // The coordinator's own shard's counters as a ShardStatus (rates unset).
  static ShardStatus Describe(const ParameterShard& shard);

 private:
  // Pushes/pulls per second from successive counter samples.
  struct Rate {
    absl::Time since;
    int64_t pushes = 0;
    int64_t pulls = 0;
    double pushes_per_second = 0;
    double pulls_per_second = 0;
    void Update(absl::Time now, int64_t pushes_now, int64_t pulls_now);
  };
  struct Remote {
    ShardStatus status;
    bool ready = false;
    absl::Time last_report;
    Rate rate;
    // Shared with calls in flight (a shard that moves gets a new one).
    std::shared_ptr<RemoteShard> connection;
    std::string connection_address;
    // The membership version this incarnation of the shard has acknowledged
    // (0: none yet).
    uint64_t acked = 0;
    // Counts the processes that have served the shard (a restart, a promoted
    // backup): an acknowledgement of a call made to an earlier one says
    // nothing of what the current one has.
    uint64_t process_generation = 0;
    // Another process serves the shard now: it knows no membership yet.
    void NewProcess() {
      acked = 0;
      ++process_generation;
    }
    std::thread sender;
    // The primary's own process id (RegisterShardRequest.process_incarnation;
    // 0: not known yet).
    uint64_t primary_process = 0;
    // Its backup; empty address: none.
    std::string backup_address;
    uint64_t backup_process = 0;
    absl::Time backup_last_report;
    uint64_t failovers = 0;
    // When its backup last took over.
    absl::Time promoted_at;
  };
  // Whether the primary of shard `index` answers a call now.
  bool PrimaryAnswers(uint32_t index);
  // Which role a process starting for shard `index` takes (see RegisterShard).
  // `backup_only`: a process that holds stale state (a replaced primary)
  // may only become a backup.
  absl::StatusOr<ReplicaRole> AssignRole(uint32_t index, uint64_t process,
                                         const std::string& address, bool backup_only);
  absl::StatusOr<RegisterShardResponse> BackupReport(const RegisterShardRequest& request,
                                                     uint64_t process);
  // The coordinator's processes, once it is named (see NameCoordinator).
  void AddCoordinatorAddressesLocked(RegisterShardResponse* response) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Shard 0's second process: the coordinator's backup.
  absl::StatusOr<RegisterShardResponse> CoordinatorBackupReport(const RegisterShardRequest& request,
                                                                uint64_t process);

  // Records a change: bumps the version, applies it to the local shard and
  // wakes the senders.
  void ChangedLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLoop(uint32_t index);

  const ShardGroupOptions options_;
  ParameterShard* const local_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  WorkerMembership membership_ ABSL_GUARDED_BY(mu_);
  // By shard index; [0] is unused (the local shard).
  std::vector<std::unique_ptr<Remote>> remotes_ ABSL_GUARDED_BY(mu_);
  mutable Rate local_rate_ ABSL_GUARDED_BY(mu_);
  CheckpointManifest committed_ ABSL_GUARDED_BY(mu_);
  std::string coordinator_address_ ABSL_GUARDED_BY(mu_);
  bool coordinator_named_ ABSL_GUARDED_BY(mu_) = false;
  // The coordinator's backup ("" and 0: none).
  std::string coordinator_backup_address_ ABSL_GUARDED_BY(mu_);
  uint64_t coordinator_backup_process_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time coordinator_backup_last_report_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_COORDINATOR_SHARD_GROUP_H_
