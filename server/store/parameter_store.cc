#include "server/store/parameter_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/model_spec.h"
#include "common/shard_map.h"
#include "server/store/initializer.h"

namespace fulcrum {

// One lock-striped range of a tensor: its values, optimizer slots and (sync
// mode) the pending gradient sum, all guarded by one mutex.
struct ParameterStore::Stripe {
  mutable absl::Mutex mu;
  std::vector<float> values ABSL_GUARDED_BY(mu);
  std::vector<std::vector<float>> slots ABSL_GUARDED_BY(mu);
  // Empty until the first Accumulate.
  std::vector<float> pending ABSL_GUARDED_BY(mu);
  bool has_pending ABSL_GUARDED_BY(mu) = false;
  // Optimizer steps applied to this stripe (Adam's t).
  int64_t updates ABSL_GUARDED_BY(mu) = 0;

  void ApplyLocked(const Optimizer& optimizer, size_t begin, const float* grad, size_t n)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    float* slot_ptrs[4];
    for (size_t i = 0; i < slots.size(); ++i) slot_ptrs[i] = &slots[i][begin];
    ++updates;
    optimizer.Apply(&values[begin], grad, absl::MakeConstSpan(slot_ptrs, slots.size()), n, updates);
  }
};

struct ParameterStore::Tensor {
  TensorSpec spec;
  uint64_t total = 0;  // elements of the whole tensor
  uint64_t begin = 0;  // first element this shard owns
  uint64_t size = 0;   // elements this shard owns
  std::vector<std::unique_ptr<Stripe>> stripes;
  // The optimizer updating it: its own (TensorSpec.optimizer), or the
  // store's.
  std::unique_ptr<Optimizer> own_optimizer;
  const Optimizer* optimizer = nullptr;
};

ParameterStore::ParameterStore(const ParameterStoreOptions& options,
                               std::unique_ptr<Optimizer> optimizer)
    : options_(options), optimizer_(std::move(optimizer)) {}

ParameterStore::~ParameterStore() = default;

absl::StatusOr<std::unique_ptr<ParameterStore>> ParameterStore::Create(
    const ParameterStoreOptions& options, std::unique_ptr<Optimizer> optimizer,
    const std::vector<TensorSpec>& tensors) {
  if (optimizer == nullptr) {
    return absl::InvalidArgumentError("parameter store needs an optimizer");
  }
  if (options.stripe_elements == 0) {
    return absl::InvalidArgumentError("stripe_elements must be positive");
  }
  if (optimizer->num_slots() > 4) {
    return absl::InternalError("optimizers have at most 4 slots");
  }
  if (options.num_shards == 0 || options.shard_index >= options.num_shards) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", options.shard_index, " of ", options.num_shards, " does not exist"));
  }
  const ShardMap shard_map(options.num_shards);
  std::unique_ptr<ParameterStore> store(new ParameterStore(options, std::move(optimizer)));
  for (const TensorSpec& spec : tensors) {
    if (spec.name().empty()) {
      return absl::InvalidArgumentError("tensor with an empty name");
    }
    for (int64_t d : spec.shape()) {
      if (d <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor ", spec.name(), ": dimensions must be positive"));
      }
    }
    const int64_t size = ElementCount(spec);
    if (size <= 0) {
      return absl::InvalidArgumentError(absl::StrCat("tensor ", spec.name(), " has no elements"));
    }
    if (static_cast<uint64_t>(size) > options.max_tensor_elements) {
      return absl::ResourceExhaustedError(
          absl::StrCat("tensor ", spec.name(), " has ", size, " elements, over the limit of ",
                       options.max_tensor_elements, " (--max_tensor_elements)"));
    }
    if (store->tensors_.contains(spec.name())) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate tensor ", spec.name()));
    }
    std::vector<float> initial(size);
    FULCRUM_RETURN_IF_ERROR(InitializeTensor(spec, options.seed, absl::MakeSpan(initial)));

    auto tensor = std::make_unique<Tensor>();
    tensor->spec = spec;
    tensor->total = size;
    const ElementRange owned = shard_map.DenseRange(size, options.shard_index);
    tensor->begin = owned.begin;
    tensor->size = owned.size();
    if (spec.has_optimizer()) {
      absl::StatusOr<std::unique_ptr<Optimizer>> own = CreateOptimizer(spec.optimizer());
      if (!own.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("tensor ", spec.name(), "'s optimizer: ", own.status().message()));
      }
      if ((*own)->num_slots() > 4) return absl::InternalError("optimizers have at most 4 slots");
      tensor->own_optimizer = *std::move(own);
    }
    tensor->optimizer =
        tensor->own_optimizer != nullptr ? tensor->own_optimizer.get() : store->optimizer_.get();
    const Optimizer& opt = *tensor->optimizer;
    for (uint64_t begin = 0; begin < tensor->size; begin += options.stripe_elements) {
      const uint64_t n = std::min<uint64_t>(options.stripe_elements, tensor->size - begin);
      auto stripe = std::make_unique<Stripe>();
      absl::MutexLock lock(&stripe->mu);
      stripe->values.assign(initial.begin() + owned.begin + begin,
                            initial.begin() + owned.begin + begin + n);
      stripe->slots.resize(opt.num_slots());
      float* slot_ptrs[4];
      for (int i = 0; i < opt.num_slots(); ++i) {
        stripe->slots[i].resize(n);
        slot_ptrs[i] = stripe->slots[i].data();
      }
      opt.InitSlots(absl::MakeConstSpan(slot_ptrs, opt.num_slots()), n);
      tensor->stripes.push_back(std::move(stripe));
    }
    store->total_elements_ += tensor->size;
    store->names_.push_back(spec.name());
    store->tensors_.emplace(spec.name(), std::move(tensor));
  }
  return store;
}

absl::StatusOr<const ParameterStore::Tensor*> ParameterStore::Find(const SliceRef& slice) const {
  auto it = tensors_.find(slice.tensor);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown tensor '", slice.tensor, "'"));
  }
  const Tensor* tensor = it->second.get();
  if (slice.length == 0) {
    return absl::InvalidArgumentError(absl::StrCat("empty slice of tensor ", slice.tensor));
  }
  if (slice.offset >= tensor->total || slice.length > tensor->total - slice.offset) {
    return absl::InvalidArgumentError(
        absl::StrCat("slice [", slice.offset, ", ", slice.offset + slice.length,
                     ") is outside tensor ", slice.tensor, " of ", tensor->total, " elements"));
  }
  if (slice.offset < tensor->begin || slice.offset + slice.length > tensor->begin + tensor->size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "slice [", slice.offset, ", ", slice.offset + slice.length, ") of ", slice.tensor,
        " is not on shard ", options_.shard_index, " of ", options_.num_shards, ", which holds [",
        tensor->begin, ", ", tensor->begin + tensor->size, ")"));
  }
  return tensor;
}

absl::StatusOr<const ParameterStore::Tensor*> ParameterStore::FindForUpdate(
    const SliceRef& slice, absl::Span<const float> grad) const {
  FULCRUM_ASSIGN_OR_RETURN(const Tensor* tensor, Find(slice));
  if (grad.size() != slice.length) {
    return absl::InvalidArgumentError(absl::StrCat("gradient for ", slice.tensor, " has ",
                                                   grad.size(), " elements, slice has ",
                                                   slice.length));
  }
  return tensor;
}

template <typename Fn>
void ParameterStore::ForEachStripe(const Tensor& tensor, const SliceRef& slice, Fn fn) const {
  // Stripes cut the owned range, so positions are relative to its start.
  const uint64_t width = options_.stripe_elements;
  const uint64_t first = slice.offset - tensor.begin;
  uint64_t pos = first;
  const uint64_t end = first + slice.length;
  while (pos < end) {
    const uint64_t index = pos / width;
    const uint64_t in_stripe = pos - index * width;
    const uint64_t n = std::min<uint64_t>(width - in_stripe, end - pos);
    fn(*tensor.stripes[index], in_stripe, pos - first, n);
    pos += n;
  }
}

absl::Status ParameterStore::Validate(const SliceRef& slice) const { return Find(slice).status(); }

absl::Status ParameterStore::Read(const SliceRef& slice, absl::Span<float> out) const {
  FULCRUM_ASSIGN_OR_RETURN(const Tensor* tensor, Find(slice));
  if (out.size() != slice.length) {
    return absl::InvalidArgumentError("output size differs from slice length");
  }
  ForEachStripe(*tensor, slice, [&](Stripe& stripe, uint64_t begin, uint64_t at, uint64_t n) {
    absl::MutexLock lock(&stripe.mu);
    std::copy_n(&stripe.values[begin], n, &out[at]);
  });
  return absl::OkStatus();
}

absl::Status ParameterStore::ApplyGradient(const SliceRef& slice, absl::Span<const float> grad) {
  FULCRUM_ASSIGN_OR_RETURN(const Tensor* tensor, FindForUpdate(slice, grad));
  ForEachStripe(*tensor, slice, [&](Stripe& stripe, uint64_t begin, uint64_t at, uint64_t n) {
    absl::MutexLock lock(&stripe.mu);
    stripe.ApplyLocked(*tensor->optimizer, begin, &grad[at], n);
  });
  return absl::OkStatus();
}

absl::Status ParameterStore::Accumulate(const SliceRef& slice, absl::Span<const float> grad) {
  FULCRUM_ASSIGN_OR_RETURN(const Tensor* tensor, FindForUpdate(slice, grad));
  ForEachStripe(*tensor, slice, [&](Stripe& stripe, uint64_t begin, uint64_t at, uint64_t n) {
    absl::MutexLock lock(&stripe.mu);
    if (stripe.pending.empty()) {
      stripe.pending.assign(stripe.values.size(), 0.0f);
    }
    float* sum = &stripe.pending[begin];
    for (uint64_t i = 0; i < n; ++i) sum[i] += grad[at + i];
    stripe.has_pending = true;
  });
  return absl::OkStatus();
}

void ParameterStore::ApplyAccumulated(float scale) {
  for (const std::string& name : names_) {
    Tensor& tensor = *tensors_.at(name);
    for (auto& stripe_ptr : tensor.stripes) {
      Stripe& stripe = *stripe_ptr;
      absl::MutexLock lock(&stripe.mu);
      if (!stripe.has_pending) continue;
      for (float& g : stripe.pending) g *= scale;
      stripe.ApplyLocked(*tensor.optimizer, 0, stripe.pending.data(), stripe.pending.size());
      std::fill(stripe.pending.begin(), stripe.pending.end(), 0.0f);
      stripe.has_pending = false;
    }
  }
}

std::vector<TensorSnapshot> ParameterStore::Snapshot() const {
  std::vector<TensorSnapshot> out;
  out.reserve(names_.size());
  for (const std::string& name : names_) {
    const Tensor& tensor = *tensors_.at(name);
    TensorSnapshot snap;
    snap.name = name;
    snap.shape.assign(tensor.spec.shape().begin(), tensor.spec.shape().end());
    snap.values.reserve(tensor.size);
    snap.slots.resize(tensor.optimizer->num_slots());
    for (auto& slot : snap.slots) slot.reserve(tensor.size);
    for (const auto& stripe_ptr : tensor.stripes) {
      const Stripe& stripe = *stripe_ptr;
      absl::MutexLock lock(&stripe.mu);
      snap.values.insert(snap.values.end(), stripe.values.begin(), stripe.values.end());
      for (size_t i = 0; i < stripe.slots.size(); ++i) {
        snap.slots[i].insert(snap.slots[i].end(), stripe.slots[i].begin(), stripe.slots[i].end());
      }
      snap.optimizer_steps = std::max(snap.optimizer_steps, stripe.updates);
    }
    out.push_back(std::move(snap));
  }
  return out;
}

absl::Status ParameterStore::Restore(const std::vector<TensorSnapshot>& tensors) {
  if (tensors.size() != names_.size()) {
    return absl::FailedPreconditionError(absl::StrCat("checkpoint holds ", tensors.size(),
                                                      " tensors, the model has ", names_.size()));
  }
  for (size_t t = 0; t < tensors.size(); ++t) {
    const TensorSnapshot& snap = tensors[t];
    auto it = tensors_.find(snap.name);
    if (it == tensors_.end()) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint tensor ", snap.name, " is not in the model"));
    }
    const Tensor& tensor = *it->second;
    const std::vector<int64_t> shape(tensor.spec.shape().begin(), tensor.spec.shape().end());
    if (snap.shape != shape || snap.values.size() != tensor.size) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint tensor ", snap.name, " has another shape than the model's"));
    }
    if (snap.slots.size() != static_cast<size_t>(tensor.optimizer->num_slots())) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint tensor ", snap.name, " has ", snap.slots.size(), " optimizer slots; ",
          tensor.optimizer->Describe(), " needs ", tensor.optimizer->num_slots()));
    }
    for (const auto& slot : snap.slots) {
      if (slot.size() != tensor.size) {
        return absl::FailedPreconditionError(
            absl::StrCat("checkpoint tensor ", snap.name, " has a slot of the wrong size"));
      }
    }
  }
  for (const TensorSnapshot& snap : tensors) {
    Tensor& tensor = *tensors_.at(snap.name);
    uint64_t begin = 0;
    for (auto& stripe_ptr : tensor.stripes) {
      Stripe& stripe = *stripe_ptr;
      absl::MutexLock lock(&stripe.mu);
      const size_t n = stripe.values.size();
      std::copy_n(&snap.values[begin], n, stripe.values.begin());
      for (size_t i = 0; i < stripe.slots.size(); ++i) {
        std::copy_n(&snap.slots[i][begin], n, stripe.slots[i].begin());
      }
      stripe.updates = snap.optimizer_steps;
      stripe.pending.clear();
      stripe.has_pending = false;
      begin += n;
    }
  }
  return absl::OkStatus();
}

std::vector<std::string> ParameterStore::TensorNames() const { return names_; }

absl::StatusOr<uint64_t> ParameterStore::TensorSize(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat("unknown tensor '", name, "'"));
  }
  return it->second->total;
}

}  // namespace fulcrum
