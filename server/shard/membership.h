// WorkerMembership: which workers a shard serves — the value the coordinator
// keeps (ShardGroup), sends to the other shards as a Membership message, and
// every shard applies.
#ifndef FULCRUM_SERVER_SHARD_MEMBERSHIP_H_
#define FULCRUM_SERVER_SHARD_MEMBERSHIP_H_

#include <algorithm>
#include <cstdint>
#include <limits>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/worker_identity.h"
#include "proto/shard_control.pb.h"

namespace fulcrum {

// The workers one coordinator incarnation admitted (they may pull) and those
// of them holding a training lease (active: they may push, sync rounds wait
// for them, ssp pulls wait on their clocks). A plain value; not synchronised.
struct WorkerMembership {
  // The coordinator whose ids these are; 0 before any coordinator.
  uint64_t coordinator_incarnation = 0;
  // Increases with every change within one incarnation.
  uint64_t version = 0;
  // The job is running: pulls may proceed.
  bool started = false;
  absl::flat_hash_set<uint64_t> admitted;
  // Active workers and their ssp clocks; each is also admitted.
  absl::flat_hash_map<uint64_t, int64_t> active;

  // Whether `worker` was admitted by this coordinator incarnation.
  bool Admits(const WorkerIdentity& worker) const {
    return worker.coordinator_incarnation == coordinator_incarnation &&
           admitted.contains(worker.id);
  }
  bool IsActive(uint64_t id) const { return active.contains(id); }

  // The slowest active worker's clock; the largest int64 when none is active.
  int64_t SlowestActiveClock() const {
    int64_t slowest = std::numeric_limits<int64_t>::max();
    for (const auto& [id, clock] : active) slowest = std::min(slowest, clock);
    return slowest;
  }

  // Changes (the version is the caller's to bump). Activating a worker that
  // is not admitted does nothing.
  void Admit(uint64_t id) { admitted.insert(id); }
  void Activate(uint64_t id, int64_t clock) {
    if (admitted.contains(id)) active[id] = clock;
  }
  void Deactivate(uint64_t id) { active.erase(id); }
  void Remove(uint64_t id) {
    admitted.erase(id);
    active.erase(id);
  }

  Membership ToProto() const {
    Membership m;
    m.set_coordinator_incarnation(coordinator_incarnation);
    m.set_version(version);
    m.set_started(started);
    for (uint64_t id : admitted) m.add_admitted(id);
    for (const auto& [id, clock] : active) {
      Membership::Active* a = m.add_active();
      a->set_worker_id(id);
      a->set_clock(clock);
    }
    return m;
  }
  // Active entries of workers not admitted are dropped.
  static WorkerMembership FromProto(const Membership& m) {
    WorkerMembership out;
    out.coordinator_incarnation = m.coordinator_incarnation();
    out.version = m.version();
    out.started = m.started();
    out.admitted.insert(m.admitted().begin(), m.admitted().end());
    for (const Membership::Active& a : m.active()) out.Activate(a.worker_id(), a.clock());
    return out;
  }
};

// When each worker (by id) was last seen: a standby's record of the workers
// whose calls it refused, which are the workers that could not get an
// answer from the process it stands by for. Thread-safe.
class WorkerSightings {
 public:
  void Note(uint64_t worker_id) {
    absl::MutexLock lock(&mu_);
    last_[worker_id] = absl::Now();
  }
  // The workers seen at or after `since`.
  absl::flat_hash_set<uint64_t> Since(absl::Time since) const {
    absl::MutexLock lock(&mu_);
    absl::flat_hash_set<uint64_t> workers;
    for (const auto& [worker, at] : last_) {
      if (at >= since) workers.insert(worker);
    }
    return workers;
  }

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, absl::Time> last_ ABSL_GUARDED_BY(mu_);
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_SHARD_MEMBERSHIP_H_
