#include "server/serving/serving_model.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"
#include "common/shard_map.h"
#include "server/checkpoint/checkpoint.h"
#include "server/store/optimizer.h"

namespace fulcrum {
namespace {

// A served table holds values only: rows without their optimizer slots.
SparseTable::RowSnapshot ValuesOnly(const SparseTable::RowSnapshot& row, uint32_t dim) {
  SparseTable::RowSnapshot out = row;
  out.data.resize(dim);
  return out;
}

}  // namespace

ServingModel::ServingModel(const ServingModelOptions& options)
    : options_(options),
      fs_(options.fs != nullptr ? options.fs : PosixFileSystem()),
      clock_(options.clock != nullptr ? options.clock : Clock::Real()) {}

absl::Status ServingModel::PlaceTensors(const CheckpointManifest& manifest, uint32_t index,
                                        const ShardSnapshot& part, Model* model) {
  const ShardMap shards(manifest.num_shards());
  for (const TensorSnapshot& t : part.tensors) {
    uint64_t elements = 1;
    for (int64_t d : t.shape) elements *= static_cast<uint64_t>(d);
    const ElementRange range = shards.DenseRange(elements, index);
    if (t.values.size() != range.size()) {
      return absl::DataLossError(absl::StrCat("shard ", index, "'s part of tensor ", t.name,
                                              " holds ", t.values.size(), " elements, not ",
                                              range.size()));
    }
    Tensor& whole = model->tensors[t.name];
    if (whole.values.empty()) {
      whole.shape = t.shape;
      whole.values.assign(elements, 0.0f);
    }
    if (whole.values.size() != elements) {
      return absl::DataLossError(
          absl::StrCat("the shards disagree on tensor ", t.name, "'s shape"));
    }
    std::copy(t.values.begin(), t.values.end(), whole.values.begin() + range.begin);
  }
  return absl::OkStatus();
}

std::string ServingModel::DirsText() const { return absl::StrJoin(options_.dirs, ", "); }

absl::StatusOr<std::string> ServingModel::PartFolder(const CheckpointManifest& manifest,
                                                     uint32_t index) const {
  std::string name;
  for (const CheckpointManifest::ShardFile& f : manifest.shards()) {
    if (f.shard_index() == index) name = f.file();
  }
  const std::string folder = CheckpointFolderName(manifest.sequence());
  for (const std::string& dir : options_.dirs) {
    const std::string path = absl::StrCat(dir, "/", folder);
    if (!name.empty() && fs_->Exists(absl::StrCat(path, "/", name))) return path;
  }
  return absl::NotFoundError(absl::StrCat("shard ", index, "'s part of checkpoint ",
                                          manifest.sequence(), " is in none of ", DirsText()));
}

absl::StatusOr<std::unique_ptr<ServingModel::Model>> ServingModel::LoadWhole(
    const CheckpointManifest& manifest) {
  auto model = std::make_unique<Model>();
  model->manifest = manifest;
  const JobSpec& job = manifest.coordinator().job();
  OptimizerConfig values_only;
  values_only.set_kind(SGD);
  for (const SparseTableSpec& spec : job.sparse_tables()) {
    SparseTableOptions options;
    options.name = spec.name();
    options.dim = spec.dim();
    options.initializer = spec.initializer();
    options.scale = spec.scale();
    options.seed = job.seed();
    options.max_rows = uint64_t{1} << 40;
    FULCRUM_ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> optimizer, CreateOptimizer(values_only));
    FULCRUM_ASSIGN_OR_RETURN(model->tables[spec.name()],
                             SparseTable::Create(options, std::move(optimizer)));
  }
  CheckpointStore store(CheckpointStoreOptions{"", 1, fs_});
  for (uint32_t index = 0; index < manifest.num_shards(); ++index) {
    FULCRUM_ASSIGN_OR_RETURN(const std::string path, PartFolder(manifest, index));
    FULCRUM_ASSIGN_OR_RETURN(ShardSnapshot part, store.LoadPartFrom(path, manifest, index));
    FULCRUM_RETURN_IF_ERROR(PlaceTensors(manifest, index, part, model.get()));
    for (const SparseTableSnapshot& t : part.tables) {
      auto it = model->tables.find(t.name);
      if (it == model->tables.end()) {
        return absl::DataLossError(
            absl::StrCat("checkpoint table ", t.name, " is not in the job its manifest names"));
      }
      std::vector<SparseTable::RowSnapshot> rows;
      rows.reserve(t.contents.rows.size());
      for (const auto& row : t.contents.rows) rows.push_back(ValuesOnly(row, t.dim));
      FULCRUM_RETURN_IF_ERROR(it->second->Upsert(rows));
    }
  }
  return model;
}

absl::Status ServingModel::ApplyDelta(const CheckpointManifest& manifest, bool* touched) {
  *touched = false;
  CheckpointStore store(CheckpointStoreOptions{"", 1, fs_});
  // Every part read and verified before any is applied.
  std::vector<ShardSnapshot> parts;
  for (uint32_t index = 0; index < manifest.num_shards(); ++index) {
    FULCRUM_ASSIGN_OR_RETURN(const std::string path, PartFolder(manifest, index));
    FULCRUM_ASSIGN_OR_RETURN(ShardSnapshot part, store.ReadPart(path, manifest, index));
    for (const SparseTableSnapshot& t : part.tables) {
      if (model_->tables.count(t.name) == 0) {
        return absl::DataLossError(absl::StrCat("delta table ", t.name, " is not served"));
      }
    }
    parts.push_back(std::move(part));
  }
  *touched = true;
  for (uint32_t index = 0; index < parts.size(); ++index) {
    FULCRUM_RETURN_IF_ERROR(PlaceTensors(manifest, index, parts[index], model_.get()));
    for (const SparseTableSnapshot& t : parts[index].tables) {
      SparseTable& table = *model_->tables.at(t.name);
      table.Evict(t.contents.removed);
      std::vector<SparseTable::RowSnapshot> rows;
      rows.reserve(t.contents.rows.size());
      for (const auto& row : t.contents.rows) rows.push_back(ValuesOnly(row, t.dim));
      FULCRUM_RETURN_IF_ERROR(table.Upsert(rows));
    }
  }
  model_->manifest = manifest;
  return absl::OkStatus();
}

absl::StatusOr<bool> ServingModel::Follow() {
  absl::MutexLock follow(&follow_mu_);
  // The newest complete checkpoint in any of the folders.
  std::string newest;
  uint64_t newest_sequence = 0;
  for (const std::string& dir : options_.dirs) {
    if (!fs_->Exists(dir)) continue;
    CheckpointStore store(CheckpointStoreOptions{dir, 1, fs_});
    absl::StatusOr<std::vector<std::string>> complete = store.ListComplete();
    if (!complete.ok() || complete->empty()) continue;
    const std::string name = complete->back().substr(complete->back().find_last_of('/') + 1);
    uint64_t sequence = 0;
    if (!absl::SimpleAtoi(name.substr(name.find('-') + 1), &sequence)) continue;
    if (sequence > newest_sequence) {
      newest_sequence = sequence;
      newest = complete->back();
    }
  }
  if (newest.empty()) {
    return absl::NotFoundError(absl::StrCat("no complete checkpoint in ", DirsText()));
  }
  CheckpointStore store(CheckpointStoreOptions{"", 1, fs_});
  absl::StatusOr<CheckpointManifest> manifest = store.ReadManifest(newest);
  const uint64_t served = checkpoint();
  absl::Status status = manifest.status();
  bool changed = false;
  {
    // One that failed is not retried (nor logged again) until a newer one.
    absl::MutexLock lock(&mu_);
    if (status.ok() && manifest->sequence() == failed_sequence_) return false;
  }
  if (status.ok() && manifest->sequence() > served) {
    // In place if every part continues the served checkpoint.
    bool continues = served != 0;
    for (const CheckpointManifest::ShardFile& file : manifest->shards()) {
      continues = continues && file.delta_chain_size() > 0 &&
                  file.delta_chain(file.delta_chain_size() - 1) == served;
    }
    {
      absl::MutexLock lock(&mu_);
      continues =
          continues && model_ != nullptr && model_->manifest.num_shards() == manifest->num_shards();
    }
    if (continues) {
      absl::MutexLock lock(&mu_);
      bool touched = false;
      status = ApplyDelta(*manifest, &touched);
      if (status.ok()) {
        ++deltas_applied_;
        loaded_at_ = clock_->Now();
        changed = true;
      } else if (touched) {
        // Half applied: nothing is served until a whole one loads (the next
        // Follow loads one: sequence 0 continues nothing).
        model_.reset();
      }
    } else {
      absl::StatusOr<std::unique_ptr<Model>> whole = LoadWhole(*manifest);
      status = whole.status();
      if (whole.ok()) {
        absl::MutexLock lock(&mu_);
        model_ = *std::move(whole);
        ++whole_loads_;
        loaded_at_ = clock_->Now();
        changed = true;
      }
    }
  }
  if (!status.ok()) {
    FULCRUM_LOG(WARNING) << "serving: checkpoint " << newest << " did not load: " << status;
    absl::MutexLock lock(&mu_);
    last_error_ = absl::StrCat(newest, ": ", status.message());
    if (manifest.ok()) failed_sequence_ = manifest->sequence();
    return status;
  }
  if (changed) {
    FULCRUM_LOG(INFO) << "serving checkpoint " << newest << " (version " << manifest->round()
                      << ")";
  }
  return changed;
}

absl::Status ServingModel::LookupLocked(const std::string& table, absl::Span<const uint64_t> ids,
                                        uint32_t dim, std::vector<float>* rows,
                                        std::vector<bool>* found) {
  if (model_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("no checkpoint served yet: none complete in ", DirsText()));
  }
  auto it = model_->tables.find(table);
  if (it == model_->tables.end()) {
    std::string known;
    for (const auto& [name, t] : model_->tables) {
      absl::StrAppend(&known, known.empty() ? "" : ", ", name);
    }
    return absl::NotFoundError(
        absl::StrCat("no sparse table '", table, "' (the model has: ", known, ")"));
  }
  SparseTable& t = *it->second;
  if (dim != 0 && dim != t.dim()) {
    return absl::InvalidArgumentError(
        absl::StrCat("table ", table, " has rows of ", t.dim(), " floats, not ", dim));
  }
  rows->resize(ids.size() * t.dim());
  FULCRUM_RETURN_IF_ERROR(t.Pull(ids, absl::MakeSpan(*rows), /*create=*/false, found));
  lookups_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status ServingModel::Lookup(const std::string& table, absl::Span<const uint64_t> ids,
                                  uint32_t dim, std::vector<float>* rows, std::vector<bool>* found,
                                  uint64_t* checkpoint) {
  absl::ReaderMutexLock lock(&mu_);
  FULCRUM_RETURN_IF_ERROR(LookupLocked(table, ids, dim, rows, found));
  *checkpoint = model_->manifest.sequence();
  return absl::OkStatus();
}

absl::Status ServingModel::LookupBatch(const LookupBatchRequest& request,
                                       LookupBatchResponse* response) {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<float> rows;
  std::vector<bool> found;
  for (int i = 0; i < request.lookups_size(); ++i) {
    const LookupRequest& lookup = request.lookups(i);
    absl::Status status =
        LookupLocked(lookup.table(), absl::MakeConstSpan(lookup.ids().data(), lookup.ids_size()),
                     lookup.dim(), &rows, &found);
    if (!status.ok()) {
      return absl::Status(status.code(), absl::StrCat("lookup ", i, ": ", status.message()));
    }
    LookupResponse* result = response->add_results();
    result->set_dim(lookup.ids_size() == 0 ? lookup.dim() : rows.size() / lookup.ids_size());
    result->set_rows(reinterpret_cast<const char*>(rows.data()), rows.size() * sizeof(float));
    result->mutable_found()->Reserve(found.size());
    for (bool f : found) result->add_found(f);
    result->set_checkpoint(model_->manifest.sequence());
  }
  response->set_checkpoint(model_ == nullptr ? 0 : model_->manifest.sequence());
  return absl::OkStatus();
}

absl::Status ServingModel::ReadTensors(const std::vector<std::string>& names,
                                       ReadTensorsResponse* out) {
  absl::ReaderMutexLock lock(&mu_);
  if (model_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("no checkpoint served yet: none complete in ", DirsText()));
  }
  std::vector<std::string> wanted = names;
  if (wanted.empty()) {
    for (const auto& [name, t] : model_->tensors) wanted.push_back(name);
  }
  for (const std::string& name : wanted) {
    auto it = model_->tensors.find(name);
    if (it == model_->tensors.end()) {
      return absl::NotFoundError(absl::StrCat("no dense tensor '", name, "'"));
    }
    ServedTensor* t = out->add_tensors();
    t->set_name(name);
    for (int64_t d : it->second.shape) t->add_shape(d);
    t->set_values(reinterpret_cast<const char*>(it->second.values.data()),
                  it->second.values.size() * sizeof(float));
  }
  out->set_checkpoint(model_->manifest.sequence());
  return absl::OkStatus();
}

ServingStatus ServingModel::Status() const {
  ServingStatus s;
  s.set_folder(DirsText());
  absl::ReaderMutexLock lock(&mu_);
  s.set_deltas_applied(deltas_applied_);
  s.set_whole_loads(whole_loads_);
  s.set_last_error(last_error_);
  s.set_lookups(lookups_.load());
  if (model_ == nullptr) return s;
  const CheckpointManifest& m = model_->manifest;
  s.set_model(m.coordinator().job().model());
  s.set_checkpoint(m.sequence());
  s.set_round(m.round());
  s.set_checkpoint_unix_seconds(m.unix_seconds());
  s.set_loaded_unix_seconds(absl::ToDoubleSeconds(loaded_at_ - absl::UnixEpoch()));
  for (const auto& [name, table] : model_->tables) {
    ServingStatus::Table* t = s.add_tables();
    t->set_name(name);
    t->set_dim(table->dim());
    t->set_rows(table->rows());
  }
  for (const auto& [name, tensor] : model_->tensors) {
    ServingStatus::Tensor* t = s.add_tensors();
    t->set_name(name);
    for (int64_t d : tensor.shape) t->add_shape(d);
  }
  return s;
}

uint64_t ServingModel::checkpoint() const {
  absl::ReaderMutexLock lock(&mu_);
  return model_ == nullptr ? 0 : model_->manifest.sequence();
}

absl::Time ServingModel::checkpoint_time() const {
  absl::ReaderMutexLock lock(&mu_);
  return model_ == nullptr ? absl::InfinitePast()
                           : absl::UnixEpoch() + absl::Seconds(model_->manifest.unix_seconds());
}

}  // namespace fulcrum
