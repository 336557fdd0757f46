// ParameterStore: the named dense float32 tensors of one shard, with their
// optimizer slots, cut into lock-striped ranges.
#ifndef FULCRUM_SERVER_STORE_PARAMETER_STORE_H_
#define FULCRUM_SERVER_STORE_PARAMETER_STORE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "proto/job.pb.h"
#include "server/store/optimizer.h"

namespace fulcrum {

struct ParameterStoreOptions {
  // Elements per stripe; each stripe has its own mutex. Smaller stripes let
  // more concurrent pushes apply in parallel; larger ones cost fewer locks per
  // request. 65536 floats = 256 KB.
  size_t stripe_elements = 65536;
  // Largest tensor accepted, in elements (RESOURCE_EXHAUSTED beyond). The
  // default, 2^31, is 8 GiB of float32 values before optimizer slots.
  uint64_t max_tensor_elements = uint64_t{1} << 31;
  // Seed for random initializers; tensor i uses a stream derived from it and
  // the tensor's name, so the same seed gives the same model.
  uint64_t seed = 1;
  // This store's shard of every tensor (common/shard_map.h): it holds the
  // element range the shard owns, initialised as the same elements of the
  // whole tensor would be. Slices keep whole-tensor offsets; one outside the
  // owned range is INVALID_ARGUMENT.
  uint32_t shard_index = 0;
  uint32_t num_shards = 1;
};

// A contiguous element range [offset, offset + length) of a named tensor.
struct SliceRef {
  std::string tensor;
  uint64_t offset = 0;
  uint64_t length = 0;
};

// A copy of one tensor's state, for checkpoints.
struct TensorSnapshot {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> values;
  std::vector<std::vector<float>> slots;  // the optimizer's, each like values
  int64_t optimizer_steps = 0;            // updates applied (Adam's t)
};

// Thread-safe: every method may be called concurrently. The set of tensors is
// fixed at Create; values, optimizer slots and sync-mode gradient sums are
// guarded per stripe. A request touching several stripes locks them one at a
// time, so a concurrent reader may see an update applied to some stripes and
// not yet others (as in every asynchronous parameter server); callers that
// need whole-round snapshots (sync mode) serialise at a higher level.
class ParameterStore {
 public:
  // INVALID_ARGUMENT for duplicate names, empty or non-positive shapes, or an
  // unknown initializer.
  static absl::StatusOr<std::unique_ptr<ParameterStore>> Create(
      const ParameterStoreOptions& options, std::unique_ptr<Optimizer> optimizer,
      const std::vector<TensorSpec>& tensors);

  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;
  ~ParameterStore();

  // OK if `slice` names a tensor and lies inside this shard's range of it
  // with length > 0; NOT_FOUND for an unknown tensor, INVALID_ARGUMENT
  // otherwise (outside the tensor, or on another shard).
  absl::Status Validate(const SliceRef& slice) const;

  // Copies the slice's values into `out` (slice.length floats).
  absl::Status Read(const SliceRef& slice, absl::Span<float> out) const;

  // Applies the optimizer to the slice with gradient `grad` (slice.length).
  absl::Status ApplyGradient(const SliceRef& slice, absl::Span<const float> grad);

  // Adds `grad` into the slice's pending gradient sum (sync mode).
  absl::Status Accumulate(const SliceRef& slice, absl::Span<const float> grad);

  // Applies every pending sum, multiplied by `scale`, with the optimizer and
  // clears the sums. Ranges with nothing accumulated are untouched.
  void ApplyAccumulated(float scale);

  // Copies this shard's part of every tensor (values, slots, steps; `shape`
  // is the whole tensor's), stripe by stripe: each stripe
  // is consistent; the whole is too only if no update runs meanwhile.
  std::vector<TensorSnapshot> Snapshot() const;

  // Replaces the state with `tensors`, which must match this store's tensors
  // (names, shapes, slot counts) one for one: FAILED_PRECONDITION naming the
  // difference otherwise, and then nothing changes. Pending sync sums are
  // dropped.
  absl::Status Restore(const std::vector<TensorSnapshot>& tensors);

  // Tensor names in creation order, and their whole element counts.
  std::vector<std::string> TensorNames() const;
  absl::StatusOr<uint64_t> TensorSize(const std::string& name) const;
  // Float32 values this shard holds (not counting optimizer slots).
  uint64_t TotalElements() const { return total_elements_; }
  const Optimizer& optimizer() const { return *optimizer_; }

 private:
  struct Stripe;
  struct Tensor;

  ParameterStore(const ParameterStoreOptions& options, std::unique_ptr<Optimizer> optimizer);

  absl::StatusOr<const Tensor*> Find(const SliceRef& slice) const;
  // Find, and the gradient must be as long as the slice.
  absl::StatusOr<const Tensor*> FindForUpdate(const SliceRef& slice,
                                              absl::Span<const float> grad) const;

  // Calls fn(stripe, offset_in_stripe, offset_in_slice, count) for every
  // stripe the slice overlaps, in order.
  template <typename Fn>
  void ForEachStripe(const Tensor& tensor, const SliceRef& slice, Fn fn) const;

  const ParameterStoreOptions options_;
  const std::unique_ptr<Optimizer> optimizer_;
  // Immutable after Create, so read without a lock.
  absl::flat_hash_map<std::string, std::unique_ptr<Tensor>> tensors_;
  std::vector<std::string> names_;
  uint64_t total_elements_ = 0;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_STORE_PARAMETER_STORE_H_
