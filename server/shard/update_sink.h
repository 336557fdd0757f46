// The updates a parameter shard admits, as data, and the UpdateSink it hands
// them to in admission order. The shard knows nothing of where they go or
// how they travel: the replication log (server/replication/replication_log.h) encodes
// them for the shard's backup; a shard without a backup hands them to
// NoUpdateSink(), which keeps nothing.
#ifndef FULCRUM_SERVER_SHARD_UPDATE_SINK_H_
#define FULCRUM_SERVER_SHARD_UPDATE_SINK_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/worker_identity.h"
#include "server/shard/membership.h"
#include "server/store/parameter_store.h"

namespace fulcrum {

// A decoded gradient for one slice.
struct SliceGradient {
  SliceRef slice;
  absl::Span<const float> values;
};

// Gradients for rows of a sparse table (keys.size() * dim floats).
struct SparseGradient {
  std::string table;
  absl::Span<const uint64_t> keys;
  absl::Span<const float> values;
};

// Rows a primary removed from one sparse table.
struct TableEviction {
  std::string table;
  std::vector<uint64_t> keys;
};

// A push as the shard admitted it (the gradients are the caller's: valid
// for the duration of the call that hands it over).
struct AdmittedPush {
  WorkerIdentity worker;
  uint64_t request_id = 0;
  int64_t clock = 0;
  absl::Span<const SliceGradient> dense;
  absl::Span<const SparseGradient> sparse;
};

// Where a shard's admitted updates go, each numbered in admission order:
// the shard reserves a number under its own lock (Reserve), so numbers
// follow admission, and gives the update right after, outside that lock
// (Put*). A call that changed the shard answers only once its update is
// safe (AwaitSafe). Sequence 0 means "nothing to record": Put* ignore it
// and AwaitSafe returns OK at once.
//
// Thread-safe. A sink outlives the shards that use it.
class UpdateSink {
 public:
  virtual ~UpdateSink() = default;

  // The next sequence number, or 0 when nothing is recorded (no backup).
  // Called under the shard's lock.
  virtual uint64_t Reserve() = 0;
  // The newest sequence reserved (0: none).
  virtual uint64_t last_reserved() const = 0;
  // The content of reserved `sequence`. Every reserved sequence must be
  // given its update, or the updates after it wait forever.
  virtual void PutPush(uint64_t sequence, const AdmittedPush& push) = 0;
  // A sync round closed: the shard's version is `version` from here on.
  virtual void PutRoundClosed(uint64_t sequence, int64_t version) = 0;
  // The primary evicted these rows (a backup evicts the same).
  virtual void PutEviction(uint64_t sequence, absl::Span<const TableEviction> evicted) = 0;
  // The shard's workers changed to `membership`.
  virtual void PutMembership(uint64_t sequence, const WorkerMembership& membership) = 0;
  // OK once update `sequence` is safe (at once for 0); UNAVAILABLE saying
  // why past `deadline`, or when it never will be (the worker retries).
  virtual absl::Status AwaitSafe(uint64_t sequence, absl::Time deadline) = 0;
  // Starts recording from the shard's state as of now (the caller holds the
  // shard's lock, with no admitted update half applied): the sequence that
  // state is at. Updates put before it belong to that state.
  virtual uint64_t Attach() = 0;
};

// The sink of a shard without a backup: records nothing, every update is
// safe at once. Attach returns 0. A process-wide instance.
UpdateSink* NoUpdateSink();

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_SHARD_UPDATE_SINK_H_
