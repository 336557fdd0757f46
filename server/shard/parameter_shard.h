// ParameterShard: one ps_server's part of the model, served under a
// consistency mode. Transport-neutral: the gRPC ParameterService adapts it.
#ifndef FULCRUM_SERVER_SHARD_PARAMETER_SHARD_H_
#define FULCRUM_SERVER_SHARD_PARAMETER_SHARD_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/base/clock.h"
#include "common/worker_identity.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "server/shard/consistency_policy.h"
#include "server/shard/membership.h"
#include "server/shard/update_sink.h"
#include "server/store/parameter_store.h"
#include "server/store/sparse_table.h"

namespace fulcrum {

// A shard's progress, returned with every pull and push.
struct ShardVersion {
  int64_t version = 0;      // sync: rounds applied; async/ssp: pushes applied
  int64_t round = 0;        // sync: the round being collected (== version)
  double wait_seconds = 0;  // how long this call waited for its round/clock
};

// Rows of a sparse table to read into `out` (keys.size() * dim floats).
struct SparseRead {
  std::string table;
  absl::Span<const uint64_t> keys;
  absl::Span<float> out;
  bool create = true;  // false: missing rows read as initial values, not stored
};

// A sparse table's state for a checkpoint.
struct SparseTableSnapshot {
  std::string name;
  uint32_t dim = 0;
  uint32_t slots = 0;  // optimizer slots per row
  // Rows with their ages, the table's update count, its feature counters
  // and admission counts.
  SparseTable::Contents contents;
};

// A shard's state for a checkpoint: whole, or a delta (the dense tensors
// whole, the sparse tables' rows changed and keys removed since a mark).
struct ShardSnapshot {
  int64_t version = 0;  // rounds (sync) or pushes (async, ssp)
  std::vector<TensorSnapshot> tensors;
  std::vector<SparseTableSnapshot> tables;
  // A delta's checkpoints, oldest first: the whole one it builds on, then
  // each delta after it. Empty: a whole snapshot.
  std::vector<uint64_t> delta_chain;
};

// Where a snapshot left each sparse table (see SparseTable::Mark).
using ShardMark = std::vector<std::pair<std::string, SparseTable::Mark>>;

// Applies `delta` to `base` (the state `delta` was taken after): tensors and
// version replaced, each table's delta applied; `base` takes its chain.
// FAILED_PRECONDITION if their tables differ.
absl::Status ApplyShardDelta(ShardSnapshot* base, const ShardSnapshot& delta);

// What a backup starts from: the primary's whole state as of operation
// `sequence` of its ReplicationLog (operations after it follow).
struct ReplicaState {
  uint64_t sequence = 0;
  // SYNC: at a round boundary (no push of the round being collected in it).
  ShardSnapshot snapshot;
  WorkerMembership membership;
  // Each worker's recent push request ids, oldest first: a push retried at
  // the backup once it took over is applied once.
  std::vector<std::pair<uint64_t, std::vector<uint64_t>>> recent_requests;
  // Pushes accepted so far (ShardStats::pushes), which the backup goes on
  // counting from.
  int64_t pushes = 0;
};

// Whether a shard serves workers.
enum class ShardServing {
  kServing,   // a primary (or an unreplicated shard)
  kBackup,    // mirrors its primary through ApplyReplicaOp; workers get UNAVAILABLE
  kReplaced,  // its backup took over; workers get UNAVAILABLE
};

// Counters for status and metrics.
struct ShardStats {
  int64_t pushes = 0;
  int64_t pulls = 0;
  int64_t duplicate_pushes = 0;
  int64_t rounds = 0;
  // Time pulls spent waiting for a round, slower workers or the job start
  // (as the shard's clock measures it).
  double pull_wait_seconds = 0;
  // Pulls waiting for one of those now.
  int waiting_pulls = 0;
  // Calls from workers this shard does not know yet, waiting out the
  // membership grace now.
  int waiting_for_membership = 0;
};

// Where a shard sits among the job's shards (common/shard_map.h).
struct ShardRole {
  uint32_t index = 0;
  uint32_t count = 1;
  // How long a call from a worker the shard does not know yet (not admitted,
  // or pushing without being active) waits for the membership to catch up
  // before FAILED_PRECONDITION. Zero on the coordinator's own shard, whose
  // membership changes before workers hear of them; remote shards learn them
  // a network hop later.
  absl::Duration membership_grace = absl::ZeroDuration();
};

// Thread-safe. Membership comes from the coordinator: an admitted worker may
// pull; an active one (holding a training lease) may also push, and is who
// sync rounds and ssp clocks wait for.
//
// ASYNC applies each push to the store at once. SYNC (BSP) sums the pushes of
// round r; when every active worker has pushed r, the mean is applied once,
// the round becomes r + 1 and pulls waiting for r + 1 wake; sync pulls read
// under the round lock's reader side, so they always see a whole round. A
// worker activated while round r is being collected takes part in r (whose
// parameters are those at its start: it joins at the round boundary). SSP
// applies pushes at once, but a pull at clock c waits until every active
// worker's clock is at least c - staleness. Until the membership says the job started, pulls wait
// (the job waits for its first workers).
//
// Replicated (EnableReplication): the shard numbers every update it admits —
// a push, a membership change — to an UpdateSink (server/shard/update_sink.h; the
// replication log), in admission order, and answers a push only once the sink
// says it is safe (its backup has it). The backup, another
// ParameterShard in another process, starts from StartReplica's state and
// applies the operations in that order (ApplyReplicaOp), so it holds the same
// values, optimizer slots, rounds and retried-request ids; it serves no
// worker until Promote.
class ParameterShard {
 public:
  // `store` and `tables` are owned. `staleness` is used in SSP mode only.
  // `store` must hold the dense part `role` owns. `clock` (not owned)
  // measures how long pulls wait; the waits themselves end at real-time
  // deadlines.
  ParameterShard(std::unique_ptr<ParameterStore> store, ConsistencyMode mode, int64_t staleness = 0,
                 std::vector<std::unique_ptr<SparseTable>> tables = {}, const ShardRole& role = {},
                 const Clock* clock = Clock::Real());
  ParameterShard(const ParameterShard&) = delete;
  ParameterShard& operator=(const ParameterShard&) = delete;
  // Stops the evictor.
  ~ParameterShard();

  // Fails waiting and future calls with UNAVAILABLE.
  void Shutdown();

  // A primary whose tables evict: runs an eviction pass now (in ASYNC and
  // SSP the evictor thread runs them when a push finds one due, and once a
  // second; SYNC at a round's close) and waits until its backup has it. For tests and tools that
  // need the table settled; pushes go on meanwhile.
  absl::Status EvictNow();

  // Replication (a shard with a backup). Call before serving; `sink` is not
  // owned and must outlive the shard. Every admitted update goes to `sink`
  // in admission order, and a push is answered only once the sink has it
  // safe (UNAVAILABLE past `timeout`: the worker retries, and the retry is
  // answered when it is).
  void EnableReplication(UpdateSink* sink, absl::Duration timeout);
  // A primary: its state for a new backup, once no admitted update is half
  // applied (SYNC: at a round boundary; pushes wait meanwhile), with the
  // sink attached from that point (UpdateSink::Attach). DEADLINE_EXCEEDED if that takes past
  // `deadline`; UNAVAILABLE when shutting down or not serving.
  absl::StatusOr<ReplicaState> StartReplica(absl::Time deadline);
  // Serving -> backup (a process the coordinator made the backup). Workers
  // get UNAVAILABLE; membership comes only through the replicated operations.
  void BecomeBackup();
  // A backup: replaces its state with the primary's.
  absl::Status InstallReplica(const ReplicaState& state);
  // A backup: applies the primary's operation `op` (the next in sequence;
  // one already applied is ignored). FAILED_PRECONDITION for a gap or when not
  // a backup; returns the last sequence applied.
  absl::StatusOr<uint64_t> ApplyReplicaOp(const ReplicaOp& op);
  // A backup takes over: it serves workers from now on.
  void Promote();
  // A primary whose backup took over: workers get UNAVAILABLE from now on.
  void StepDown();
  // A backup: the workers whose calls it refused at or after `since` (their
  // calls to the primary had failed): witnesses that the primary is gone
  // for them too.
  absl::flat_hash_set<uint64_t> WorkersRefusedSince(absl::Time since) const {
    return refused_while_backup_.Since(since);
  }
  ShardServing serving() const;
  // UNAVAILABLE (saying why) unless the shard serves workers. A backup
  // notes the call of `worker` (WorkersRefusedSince): a worker's client
  // calls the backup only when its call to the primary failed.
  absl::Status CheckServingFor(const WorkerIdentity& worker);

  // Whether the job has started here (its membership said so).
  bool started() const;

  // Takes the coordinator's membership (see WorkerMembership) unless it is
  // older than what the shard has (same coordinator incarnation, lower
  // version): workers removed or deactivated may complete the current sync
  // round and wake ssp waiters; a new coordinator incarnation renumbers
  // workers (its ids are other workers than the old ones'). The job, once
  // started, stays started. Returns the version the shard has.
  uint64_t ApplyMembership(const WorkerMembership& membership);

  // Reads `slices` into `out` (one span per slice, sized like it). With
  // clock >= 0, sync mode waits until round >= clock (but an active worker
  // that has not pushed the current round gets it at once: the version says
  // which round was read) and ssp mode until the slowest active worker's
  // clock >= clock - staleness. DEADLINE_EXCEEDED past
  // `deadline`, FAILED_PRECONDITION for a worker not admitted (unknown, dead,
  // or registered with another coordinator incarnation than the one whose
  // membership this shard has), UNAVAILABLE while the shard has no
  // membership at all (the worker retries; it is not stale), NOT_FOUND or INVALID_ARGUMENT for a
  // bad slice or a slice or key another shard owns (then nothing is read). Sparse rows are read
  // with the slices (and created on first read); NOT_FOUND for an unknown table, RESOURCE_EXHAUSTED
  // if a table is full.
  absl::StatusOr<ShardVersion> Pull(const WorkerIdentity& worker, int64_t clock,
                                    const std::vector<SliceRef>& slices,
                                    absl::Span<const absl::Span<float>> out, absl::Time deadline,
                                    absl::Span<const SparseRead> sparse = {});

  // Applies (async, ssp) or accumulates (sync) `gradients` as one update:
  // every slice is validated first and on any error nothing is applied.
  // FAILED_PRECONDITION for a worker not active; ABORTED in sync mode for a
  // clock other than the current round (pull again at the current round). In
  // sync mode a worker's second push for the round is acknowledged and
  // ignored (its first stands): a worker redoing a step after another shard
  // restarted pushes every shard's current round again. A push whose
  // non-zero request_id this worker already used is acknowledged and ignored.
  // Sparse gradients go with the dense ones; a table without room for the
  // rows they would create fails the whole push with RESOURCE_EXHAUSTED.
  absl::StatusOr<ShardVersion> Push(const WorkerIdentity& worker, uint64_t request_id,
                                    int64_t clock, const std::vector<SliceGradient>& gradients,
                                    absl::Span<const SparseGradient> sparse = {});

  // Whether calls from `worker` would be served now, without waiting for
  // membership, the job's start, a round or slower workers: a Push (`push`:
  // the worker must hold a lease) and/or a Pull for `clock` (-1: none, or
  // one that does not wait). A hint for choosing a thread: the answer may change
  // at once (towards true, but for an eviction, which fails fast).
  bool ReadyFor(const WorkerIdentity& worker, bool push, int64_t clock) const;

  // Sync: taken under the round lock, so it sits exactly at a round
  // boundary (sums of the round being collected are not in it). Async/ssp:
  // taken while pushes go on; each stripe is consistent, and the version is
  // the one read at the start (the snapshot holds at least those pushes).
  // With `since`, a delta (its chain left for the caller to fill); with
  // `mark`, where the snapshot left the tables, for a later delta.
  ShardSnapshot Snapshot(const ShardMark* since = nullptr, ShardMark* mark = nullptr) const;
  // The same with the shard's lock held (either side).
  ShardSnapshot SnapshotLocked(const ShardMark* since = nullptr, ShardMark* mark = nullptr) const
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // The tables' eviction logs before `mark` are no longer needed.
  void ForgetEvictionsBefore(const ShardMark& mark);
  // Replaces values, slots and version (see ParameterStore::Restore). The
  // round being collected starts empty.
  absl::Status Restore(const ShardSnapshot& snapshot);

  ShardVersion version() const;
  ShardStats stats() const;
  // Null for an unknown name.
  SparseTable* sparse_table(const std::string& name) const;
  std::vector<SparseTableStatus> SparseStatus() const;
  ConsistencyMode mode() const { return policy_->mode(); }
  const ShardRole& role() const { return role_; }
  const ParameterStore& store() const { return *store_; }

 private:
  // The last request ids of each worker's accepted pushes, so a retried push
  // is applied once. Not synchronised: the shard guards it with mu_.
  class RecentRequests {
   public:
    bool Contains(uint64_t worker_id, uint64_t request_id) const;
    void Insert(uint64_t worker_id, uint64_t request_id);
    std::vector<std::pair<uint64_t, std::vector<uint64_t>>> Export() const;

   private:
    static constexpr size_t kPerWorker = 64;
    absl::flat_hash_map<uint64_t, std::deque<uint64_t>> ids_;
  };

  // The push behind Push and ApplyReplicaOp (`replayed`: a backup applying
  // its primary's admitted push: no membership check, nothing replicated).
  absl::StatusOr<ShardVersion> PushInternal(const WorkerIdentity& worker, uint64_t request_id,
                                            int64_t clock,
                                            const std::vector<SliceGradient>& gradients,
                                            absl::Span<const SparseGradient> sparse, bool replayed);
  // Takes `membership` (see ApplyMembership); false if it was not newer.
  bool ApplyMembershipLocked(const WorkerMembership& membership) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // UNAVAILABLE unless the shard serves workers.
  absl::Status CheckServingLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Waits up to the membership grace for the worker to be admitted by the
  // coordinator incarnation this shard follows (and, with `active`, to be
  // active in a started job). FAILED_PRECONDITION otherwise.
  absl::Status CheckMemberLocked(const WorkerIdentity& worker, bool active, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // INVALID_ARGUMENT for a key another shard owns.
  absl::Status CheckKeysOwned(const std::string& table, absl::Span<const uint64_t> keys) const;
  absl::Status ValidateAll(const std::vector<SliceGradient>& gradients,
                           absl::Span<const SparseGradient> sparse) const;
  // Sync mode: adds sparse gradients into the round's sums.
  void AccumulateSparse(absl::Span<const SparseGradient> sparse);
  // Sync mode: applies the round's sparse sums times `scale`.
  void ApplySparseSums(float scale) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An eviction pass of a primary (ASYNC, SSP): chooses the rows while
  // pushes go on, then removes those not updated since in batches, each
  // with pushes held off (no admitted push half applied) and recorded as an
  // operation. One pass at a time. Returns the last batch's replication
  // sequence (0: none).
  uint64_t EvictDueRows() ABSL_LOCKS_EXCLUDED(mu_);
  // The evictor thread: a pass when a push finds one due, else each second.
  void EvictorLoop();
  // SYNC, at a round's close: evicts what each table has due and records
  // it; its sequence.
  uint64_t EvictDueRowsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Records evictions as one operation of the replicated order (a backup
  // evicts exactly those keys); its sequence (0: nothing to record).
  uint64_t RecordEvictionsLocked(absl::Span<const TableEviction> evicted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::unique_ptr<ParameterStore> store_;
  // The mode's decisions and state (rounds, version); see its thread-safety.
  const std::unique_ptr<ConsistencyPolicy> policy_;
  const ShardRole role_;
  const Clock* const clock_;
  // Immutable after construction.
  absl::flat_hash_map<std::string, std::unique_ptr<SparseTable>> tables_;
  // Sync mode: per table, the sums of the round being collected.
  struct SparseSums {
    absl::Mutex mu;
    absl::flat_hash_map<uint64_t, std::vector<float>> sums ABSL_GUARDED_BY(mu);
  };
  absl::flat_hash_map<std::string, std::unique_ptr<SparseSums>> sparse_sums_;

  // Guards the membership and the policy's round state; sync rounds apply
  // under it (exclusive), reads of whole rounds take its reader side.
  mutable absl::Mutex mu_;
  RecentRequests recent_requests_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Worker ids in it and in recent_requests_ (and the policy's) are its
  // coordinator incarnation's.
  WorkerMembership membership_ ABSL_GUARDED_BY(mu_);
  // Whether any coordinator's membership was applied (the coordinator's own
  // shard: from the start; another: once the coordinator reached it).
  bool has_membership_ ABSL_GUARDED_BY(mu_) = false;
  double pull_wait_seconds_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_pulls_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_for_membership_ ABSL_GUARDED_BY(mu_) = 0;

  // Where admitted updates go (not owned): the replication log once
  // EnableReplication is called; until then a sink that keeps nothing.
  UpdateSink* updates_ = NoUpdateSink();
  absl::Duration replication_timeout_ = absl::Seconds(10);
  ShardServing serving_ ABSL_GUARDED_BY(mu_) = ShardServing::kServing;
  // SYNC: the replication sequence of the newest round closed (0: none).
  // A pull answers with a round's parameters only once the backup has its
  // close: a worker must never hold a round its shard's backup would not
  // (after a takeover the shards' rounds would disagree).
  uint64_t last_close_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  WorkerSightings refused_while_backup_;
  // Set by Promote: the first push applied after is logged (bench/failover.sh
  // times a takeover by it).
  std::atomic<bool> log_first_push_{false};
  // ASYNC/SSP: pushes admitted (under mu_) and not yet applied (which
  // happens without it).
  std::atomic<int> unapplied_pushes_{0};
  // Whether a table has admission or eviction.
  bool has_lifecycle_ = false;
  // One eviction pass at a time.
  absl::Mutex eviction_pass_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  // The evictor thread (ASYNC and SSP shards with such a table) and what
  // wakes it.
  absl::Mutex evictor_mu_;
  bool eviction_wanted_ ABSL_GUARDED_BY(evictor_mu_) = false;
  bool evictor_stop_ ABSL_GUARDED_BY(evictor_mu_) = false;
  std::thread evictor_;
  // The replication sequence of the newest eviction recorded (0: none).
  std::atomic<uint64_t> last_eviction_sequence_{0};
  // A backup: the last replicated operation applied (ops apply one at a time).
  absl::Mutex replay_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  uint64_t replica_applied_ ABSL_GUARDED_BY(replay_mu_) = 0;

  // Counters; updated without mu_.
  std::atomic<int64_t> pushes_{0};
  std::atomic<int64_t> pulls_{0};
  std::atomic<int64_t> duplicate_pushes_{0};
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_SHARD_PARAMETER_SHARD_H_
