// StepClocks: the clocks a worker's calls carry under the job's consistency
// mode — the one place the training loop asks instead of checking the mode.
#ifndef FULCRUM_WORKER_STEP_CLOCKS_H_
#define FULCRUM_WORKER_STEP_CLOCKS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "proto/job.pb.h"

namespace fulcrum {

// Per shard (shards count their rounds apart):
//   SYNC   the BSP round each shard is collecting. A step pushes round r and
//          its push-pull reads r + 1 (the round the push helps close). A new
//          partition first waits for the round after the last one this
//          worker pushed there (the shard still counts it in that round).
//   SSP    the worker's clock, its lease's, for every call of a partition.
//   ASYNC  -1: nothing to wait for.
// Not thread-safe (one training loop).
class StepClocks {
 public:
  explicit StepClocks(ConsistencyMode mode = ASYNC) : mode_(mode) {}

  // After (re)registration with the job: `shards` shards, nothing pushed.
  void Reset(ConsistencyMode mode, size_t shards) {
    mode_ = mode;
    last_pushed_.assign(shards, -1);
  }

  // A new partition, leased at ssp clock `lease_clock`.
  void StartPartition(int64_t lease_clock) {
    pull_.assign(last_pushed_.size(), mode_ == SSP ? lease_clock : -1);
    if (mode_ == SYNC) {
      for (size_t s = 0; s < pull_.size(); ++s) {
        if (last_pushed_[s] >= 0) pull_[s] = last_pushed_[s] + 1;
      }
    }
    rounds_.clear();
  }

  // What a pull from scratch waits for (a partition's first, or after a
  // shard restarted).
  const std::vector<int64_t>& Pull() const { return pull_; }
  // That pull was answered with each shard's round.
  void Pulled(const std::vector<int64_t>& rounds) {
    if (mode_ == SYNC && rounds_.empty()) rounds_ = rounds;
  }

  // What this step's push carries.
  const std::vector<int64_t>& Push() const { return mode_ == SYNC ? rounds_ : pull_; }
  // What the next step's pull, sent with this step's push, waits for.
  std::vector<int64_t> NextPull() const {
    std::vector<int64_t> next = Push();
    if (mode_ == SYNC) {
      for (int64_t& r : next) ++r;
    }
    return next;
  }

  // The step's push was taken: sync moves on to the next round.
  void StepDone() {
    if (mode_ != SYNC) return;
    last_pushed_ = rounds_;
    for (int64_t& r : rounds_) ++r;
    pull_ = rounds_;
  }

  // Shards restarted from a checkpoint (their rounds start over), as any
  // call saw it (a step's, or an evaluation's): the step is redone from a
  // fresh pull that waits for nothing, at every shard's current round, and
  // pushes each of them that round (a shard this step's push already reached,
  // `pushed`, acknowledges and ignores the second push of its round). Waiting
  // there for the round after this step's push instead would wait on workers
  // who in turn wait for this worker's push to the restarted shard. The next
  // partition starts at the restarted shards' current rounds.
  void Restarted(const std::vector<int>& restarted_shards, bool pushed) {
    if (mode_ != SYNC) return;
    const size_t shards = last_pushed_.size();
    pull_.resize(shards, -1);  // also outside a partition (an evaluation saw it)
    std::vector<bool> restarted(shards, false);
    for (int s : restarted_shards) {
      if (s >= 0 && static_cast<size_t>(s) < shards) restarted[s] = true;
    }
    for (size_t s = 0; s < shards; ++s) {
      if (restarted[s]) {
        last_pushed_[s] = -1;
      } else if (pushed && !rounds_.empty()) {
        last_pushed_[s] = rounds_[s];
      }
      pull_[s] = -1;
    }
    rounds_.clear();
  }

  // Whether pushes may be in flight while the next step computes (only
  // async tolerates the extra staleness).
  bool MayOverlap() const { return mode_ == ASYNC; }

 private:
  ConsistencyMode mode_;
  std::vector<int64_t> pull_;
  std::vector<int64_t> rounds_;       // sync: the rounds being collected
  std::vector<int64_t> last_pushed_;  // sync: per shard, the last round pushed (-1: none)
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_STEP_CLOCKS_H_
