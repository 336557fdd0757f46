// ServingModel: a trained model as a training job's checkpoints say, read
// only: sparse tables' rows by id and dense tensors whole, following a
// checkpoint folder as deltas are committed to it.
#ifndef FULCRUM_SERVER_SERVING_SERVING_MODEL_H_
#define FULCRUM_SERVER_SERVING_SERVING_MODEL_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/base/clock.h"
#include "common/base/file_system.h"
#include "proto/checkpoint.pb.h"
#include "proto/serving.pb.h"
#include "server/shard/parameter_shard.h"
#include "server/store/sparse_table.h"

namespace fulcrum {

struct ServingModelOptions {
  // The checkpoint folders of a training job: each shard's --checkpoint_dir
  // (its backup's too, for after a takeover). A checkpoint's manifest and
  // each of its parts are read from whichever folder has them.
  std::vector<std::string> dirs;
  // Not owned; PosixFileSystem() and Clock::Real() unless a test gives its.
  FileSystem* fs = nullptr;
  const Clock* clock = nullptr;
};

// Thread-safe. Lookups read under a shared lock and see one checkpoint
// whole; Follow swaps in or applies the next under the exclusive side (a
// delta's rows, briefly; a whole checkpoint is built aside first).
class ServingModel {
 public:
  explicit ServingModel(const ServingModelOptions& options);

  // Catches up with the folder: the newest complete checkpoint if it is
  // newer than the one served. One whose every part is a delta on the one
  // served is applied in place; another is loaded whole (with its chain).
  // A checkpoint that does not load leaves the served one (the error is
  // returned and kept in status); NOT_FOUND while the folder has none.
  // Returns whether anything changed.
  absl::StatusOr<bool> Follow();

  // Rows of `table` for `ids` into `rows` (ids.size() * dim floats) and,
  // per id, whether it has a row. NOT_FOUND for an unknown table (or
  // nothing served yet: UNAVAILABLE), INVALID_ARGUMENT for a `dim` other
  // than the table's (0: any).
  absl::Status Lookup(const std::string& table, absl::Span<const uint64_t> ids, uint32_t dim,
                      std::vector<float>* rows, std::vector<bool>* found, uint64_t* checkpoint);
  // Several lookups from one checkpoint (LookupBatch in proto/serving.proto);
  // the first refused one fails the call, naming its position.
  absl::Status LookupBatch(const LookupBatchRequest& request, LookupBatchResponse* response);
  // Dense tensors by name (empty: all); NOT_FOUND naming an unknown one.
  absl::Status ReadTensors(const std::vector<std::string>& names, ReadTensorsResponse* out);
  ServingStatus Status() const;

  // The served checkpoint's sequence (0: none) and when it was taken.
  uint64_t checkpoint() const;
  absl::Time checkpoint_time() const;

 private:
  struct Tensor {
    std::vector<int64_t> shape;
    std::vector<float> values;
  };
  // A whole model from a checkpoint.
  struct Model {
    CheckpointManifest manifest;
    std::map<std::string, std::unique_ptr<SparseTable>> tables;
    std::map<std::string, Tensor> tensors;
  };

  absl::StatusOr<std::unique_ptr<Model>> LoadWhole(const CheckpointManifest& manifest);
  // Lookup with mu_ held (either side).
  absl::Status LookupLocked(const std::string& table, absl::Span<const uint64_t> ids, uint32_t dim,
                            std::vector<float>* rows, std::vector<bool>* found)
      ABSL_SHARED_LOCKS_REQUIRED(mu_);
  // Applies checkpoint `manifest` (every part a delta on the served one).
  // Every part is read and verified first; `touched` says whether a failure
  // came after the model began to change.
  absl::Status ApplyDelta(const CheckpointManifest& manifest, bool* touched)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The folder of checkpoint `manifest` that holds shard `index`'s part.
  absl::StatusOr<std::string> PartFolder(const CheckpointManifest& manifest, uint32_t index) const;
  // The folders, comma-separated, for messages.
  std::string DirsText() const;
  // Copies a shard part's dense tensors into `model`'s whole ones.
  static absl::Status PlaceTensors(const CheckpointManifest& manifest, uint32_t index,
                                   const ShardSnapshot& part, Model* model);

  const ServingModelOptions options_;
  FileSystem* const fs_;
  const Clock* const clock_;
  mutable absl::Mutex mu_;
  std::unique_ptr<Model> model_ ABSL_GUARDED_BY(mu_);
  absl::Time loaded_at_ ABSL_GUARDED_BY(mu_);
  uint64_t deltas_applied_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t whole_loads_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  uint64_t failed_sequence_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> lookups_{0};
  // One Follow at a time.
  absl::Mutex follow_mu_ ABSL_ACQUIRED_BEFORE(mu_);
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_SERVING_SERVING_MODEL_H_
