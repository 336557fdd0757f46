#include "server/checkpoint/checkpoint.h"

#include <algorithm>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/base/crc32c.h"
#include "common/base/log.h"
#include "common/base/status_macros.h"

namespace fulcrum {
namespace {

constexpr absl::string_view kShardMagic = "FULCRUMS";
constexpr absl::string_view kManifestMagic = "FULCRUMM";
constexpr absl::string_view kManifestName = "MANIFEST";
constexpr absl::string_view kPrefix = "ckpt-";
// Bounds a corrupt header cannot push allocation past.
constexpr uint64_t kMaxElements = uint64_t{1} << 34;
constexpr uint32_t kMaxRank = 16;

template <typename T>
void Put(std::string* out, T value) {
  static_assert(std::is_trivially_copyable<T>::value, "");
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian hosts
  out->append(bytes, sizeof(T));
}

void PutString(std::string* out, absl::string_view s) {
  Put<uint32_t>(out, s.size());
  out->append(s.data(), s.size());
}

// Reads little-endian values from a buffer, failing with DATA_LOSS naming
// the file when it runs out.
class Reader {
 public:
  Reader(absl::string_view data, const std::string& path) : data_(data), path_(path) {}

  template <typename T>
  absl::Status Get(T* value) {
    if (data_.size() < sizeof(T)) return Truncated();
    std::memcpy(value, data_.data(), sizeof(T));
    data_.remove_prefix(sizeof(T));
    return absl::OkStatus();
  }
  absl::Status Bytes(size_t n, absl::string_view* out) {
    if (data_.size() < n) return Truncated();
    *out = data_.substr(0, n);
    data_.remove_prefix(n);
    return absl::OkStatus();
  }
  absl::Status String(std::string* out) {
    uint32_t n = 0;
    FULCRUM_RETURN_IF_ERROR(Get(&n));
    absl::string_view bytes;
    FULCRUM_RETURN_IF_ERROR(Bytes(n, &bytes));
    *out = std::string(bytes);
    return absl::OkStatus();
  }
  // A length-prefixed section followed by its CRC-32C.
  absl::Status Section(absl::string_view what, absl::string_view* out) {
    uint32_t n = 0;
    FULCRUM_RETURN_IF_ERROR(Get(&n));
    FULCRUM_RETURN_IF_ERROR(Bytes(n, out));
    uint32_t crc = 0;
    FULCRUM_RETURN_IF_ERROR(Get(&crc));
    if (Crc32c(*out) != crc) return Corrupt(absl::StrCat(what, " checksum mismatch"));
    return absl::OkStatus();
  }
  // The magic and the format version every Fulcrum checkpoint file starts
  // with.
  // with, the version in [oldest, newest] (into `version` if not null).
  absl::Status Preamble(absl::string_view magic, absl::string_view kind, uint32_t oldest,
                        uint32_t newest, uint32_t* version = nullptr) {
    absl::string_view found;
    FULCRUM_RETURN_IF_ERROR(Bytes(magic.size(), &found));
    if (found != magic) return Corrupt(absl::StrCat("not a Fulcrum ", kind, " (bad magic)"));
    uint32_t v = 0;
    FULCRUM_RETURN_IF_ERROR(Get(&v));
    if (v < oldest || v > newest) {
      return Corrupt(absl::StrCat("format version ", v, " is not a supported one (", oldest, " to ",
                                  newest, ")"));
    }
    if (version != nullptr) *version = v;
    return absl::OkStatus();
  }
  bool empty() const { return data_.empty(); }
  absl::Status Truncated() const { return absl::DataLossError(absl::StrCat(path_, ": truncated")); }
  absl::Status Corrupt(absl::string_view why) const {
    return absl::DataLossError(absl::StrCat(path_, ": ", why));
  }

 private:
  absl::string_view data_;
  const std::string& path_;
};

void PutSection(std::string* out, absl::string_view section) {
  Put<uint32_t>(out, section.size());
  out->append(section.data(), section.size());
  Put<uint32_t>(out, Crc32c(section));
}

std::string FolderName(uint64_t sequence) { return absl::StrFormat("%s%09d", kPrefix, sequence); }

std::string ShardFileName(uint32_t index, uint32_t count) {
  return absl::StrFormat("shard-%05d-of-%05d", index, count);
}

// The sequence number of a checkpoint folder name, or -1.
int64_t SequenceOf(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, kPrefix)) return -1;
  uint64_t seq;
  if (!absl::SimpleAtoi(name, &seq)) return -1;
  return static_cast<int64_t>(seq);
}

absl::StatusOr<CheckpointManifest> DecodeManifest(absl::string_view data, const std::string& path) {
  Reader reader(data, path);
  FULCRUM_RETURN_IF_ERROR(reader.Preamble(kManifestMagic, "manifest", kCheckpointFormatVersion,
                                          kCheckpointFormatVersion));
  absl::string_view body;
  FULCRUM_RETURN_IF_ERROR(reader.Section("manifest", &body));
  CheckpointManifest manifest;
  if (!manifest.ParseFromArray(body.data(), body.size())) {
    return reader.Corrupt("manifest does not parse");
  }
  return manifest;
}

}  // namespace

std::string CheckpointFolderName(uint64_t sequence) { return FolderName(sequence); }

std::string EncodeShardFile(const ShardSnapshot& shard, uint32_t shard_index, uint32_t num_shards) {
  std::string out(kShardMagic);
  Put<uint32_t>(&out, kShardFormatVersion);
  std::string header;
  Put<int64_t>(&header, shard.version);
  Put<uint32_t>(&header, shard_index);
  Put<uint32_t>(&header, num_shards);
  Put<uint32_t>(&header, shard.tensors.size());
  Put<uint32_t>(&header, shard.delta_chain.size());
  for (uint64_t sequence : shard.delta_chain) Put<uint64_t>(&header, sequence);
  PutSection(&out, header);
  for (const TensorSnapshot& t : shard.tensors) {
    std::string meta;
    PutString(&meta, t.name);
    Put<uint32_t>(&meta, t.shape.size());
    for (int64_t d : t.shape) Put<int64_t>(&meta, d);
    Put<uint32_t>(&meta, t.slots.size());
    Put<uint64_t>(&meta, t.values.size());
    Put<int64_t>(&meta, t.optimizer_steps);
    PutSection(&out, meta);
    const size_t data_start = out.size();
    out.append(reinterpret_cast<const char*>(t.values.data()), t.values.size() * 4);
    for (const auto& slot : t.slots) {
      out.append(reinterpret_cast<const char*>(slot.data()), slot.size() * 4);
    }
    Put<uint32_t>(&out, Crc32cExtend(0, out.data() + data_start, out.size() - data_start));
  }
  std::string count;
  Put<uint32_t>(&count, shard.tables.size());
  PutSection(&out, count);
  for (const SparseTableSnapshot& t : shard.tables) {
    std::string meta;
    PutString(&meta, t.name);
    Put<uint32_t>(&meta, t.dim);
    Put<uint32_t>(&meta, t.slots);
    Put<uint64_t>(&meta, t.contents.rows.size());
    PutSection(&out, meta);
    const size_t data_start = out.size();
    for (const SparseTable::RowSnapshot& row : t.contents.rows) {
      Put<uint64_t>(&out, row.key);
      Put<uint64_t>(&out, row.last_update);
      Put<uint32_t>(&out, row.last_update_seconds);
      Put<uint32_t>(&out, row.updates);
      out.append(reinterpret_cast<const char*>(row.data.data()), row.data.size() * 4);
    }
    Put<uint32_t>(&out, Crc32cExtend(0, out.data() + data_start, out.size() - data_start));
    std::string state;
    Put<uint64_t>(&state, t.contents.updates);
    Put<uint64_t>(&state, t.contents.counters.admitted);
    Put<uint64_t>(&state, t.contents.counters.refused);
    Put<uint64_t>(&state, t.contents.counters.evicted);
    const AdmissionCounts& pending = t.contents.pending;
    Put<uint64_t>(&state, pending.exact.size());
    for (const auto& [key, count] : pending.exact) {
      Put<uint64_t>(&state, key);
      Put<uint32_t>(&state, count);
    }
    Put<uint64_t>(&state, pending.halvings.size());
    for (uint64_t h : pending.halvings) Put<uint64_t>(&state, h);
    Put<uint64_t>(&state, pending.cells);
    Put<uint64_t>(&state, pending.blocks.size());
    for (const auto& [first, cells] : pending.blocks) {
      Put<uint64_t>(&state, first);
      Put<uint64_t>(&state, cells.size());
      state.append(reinterpret_cast<const char*>(cells.data()), cells.size());
    }
    Put<uint64_t>(&state, t.contents.removed.size());
    for (uint64_t key : t.contents.removed) Put<uint64_t>(&state, key);
    PutSection(&out, state);
  }
  return out;
}

absl::StatusOr<ShardSnapshot> DecodeShardFile(absl::string_view data, const std::string& path) {
  Reader reader(data, path);
  uint32_t format = 0;
  FULCRUM_RETURN_IF_ERROR(
      reader.Preamble(kShardMagic, "shard checkpoint", 2, kShardFormatVersion, &format));
  // Version 2 rows have no age; its tables no update count or counters.
  const uint64_t row_age_bytes = format >= 3 ? 16 : 0;
  absl::string_view header_bytes;
  FULCRUM_RETURN_IF_ERROR(reader.Section("header", &header_bytes));
  Reader header(header_bytes, path);
  ShardSnapshot shard;
  uint32_t shard_index = 0, num_shards = 0, num_tensors = 0;
  FULCRUM_RETURN_IF_ERROR(header.Get(&shard.version));
  FULCRUM_RETURN_IF_ERROR(header.Get(&shard_index));
  FULCRUM_RETURN_IF_ERROR(header.Get(&num_shards));
  FULCRUM_RETURN_IF_ERROR(header.Get(&num_tensors));
  if (format >= 3) {
    uint32_t chain = 0;
    FULCRUM_RETURN_IF_ERROR(header.Get(&chain));
    if (chain > 1024) return reader.Corrupt("implausible delta chain");
    shard.delta_chain.resize(chain);
    for (uint64_t& sequence : shard.delta_chain) FULCRUM_RETURN_IF_ERROR(header.Get(&sequence));
  }
  if (num_shards == 0 || shard_index >= num_shards) {
    return reader.Corrupt(
        absl::StrCat("shard ", shard_index, " of ", num_shards, " is not a valid shard"));
  }
  for (uint32_t i = 0; i < num_tensors; ++i) {
    absl::string_view meta_bytes;
    FULCRUM_RETURN_IF_ERROR(reader.Section("tensor metadata", &meta_bytes));
    Reader meta(meta_bytes, path);
    TensorSnapshot t;
    uint32_t rank = 0, slots = 0;
    uint64_t elements = 0;
    FULCRUM_RETURN_IF_ERROR(meta.String(&t.name));
    FULCRUM_RETURN_IF_ERROR(meta.Get(&rank));
    if (rank > kMaxRank) return reader.Corrupt("implausible tensor rank");
    t.shape.resize(rank);
    for (int64_t& d : t.shape) FULCRUM_RETURN_IF_ERROR(meta.Get(&d));
    FULCRUM_RETURN_IF_ERROR(meta.Get(&slots));
    FULCRUM_RETURN_IF_ERROR(meta.Get(&elements));
    FULCRUM_RETURN_IF_ERROR(meta.Get(&t.optimizer_steps));
    if (elements > kMaxElements || slots > 8) {
      return reader.Corrupt(absl::StrCat("implausible size for tensor ", t.name));
    }
    absl::string_view payload;
    FULCRUM_RETURN_IF_ERROR(reader.Bytes(elements * 4 * (1 + slots), &payload));
    uint32_t crc = 0;
    FULCRUM_RETURN_IF_ERROR(reader.Get(&crc));
    if (Crc32c(payload) != crc) {
      return reader.Corrupt(absl::StrCat("tensor ", t.name, " checksum mismatch"));
    }
    t.values.resize(elements);
    std::memcpy(t.values.data(), payload.data(), elements * 4);
    t.slots.resize(slots);
    for (uint32_t s = 0; s < slots; ++s) {
      t.slots[s].resize(elements);
      std::memcpy(t.slots[s].data(), payload.data() + (s + 1) * elements * 4, elements * 4);
    }
    shard.tensors.push_back(std::move(t));
  }
  absl::string_view count_bytes;
  FULCRUM_RETURN_IF_ERROR(reader.Section("sparse table count", &count_bytes));
  Reader count_reader(count_bytes, path);
  uint32_t num_tables = 0;
  FULCRUM_RETURN_IF_ERROR(count_reader.Get(&num_tables));
  for (uint32_t i = 0; i < num_tables; ++i) {
    absl::string_view meta_bytes;
    FULCRUM_RETURN_IF_ERROR(reader.Section("sparse table metadata", &meta_bytes));
    Reader meta(meta_bytes, path);
    SparseTableSnapshot t;
    uint64_t rows = 0;
    FULCRUM_RETURN_IF_ERROR(meta.String(&t.name));
    FULCRUM_RETURN_IF_ERROR(meta.Get(&t.dim));
    FULCRUM_RETURN_IF_ERROR(meta.Get(&t.slots));
    FULCRUM_RETURN_IF_ERROR(meta.Get(&rows));
    const uint64_t row_floats = uint64_t{t.dim} * (1 + t.slots);
    const uint64_t row_bytes = 8 + row_age_bytes + row_floats * 4;
    // Divided, not multiplied: a corrupt row count must not overflow past
    // the bound.
    if (t.dim == 0 || t.slots > 8 || row_floats > (1u << 20) ||
        rows > kMaxElements * 4 / row_bytes) {
      return reader.Corrupt(absl::StrCat("implausible size for sparse table ", t.name));
    }
    absl::string_view payload;
    FULCRUM_RETURN_IF_ERROR(reader.Bytes(rows * row_bytes, &payload));
    uint32_t crc = 0;
    FULCRUM_RETURN_IF_ERROR(reader.Get(&crc));
    if (Crc32c(payload) != crc) {
      return reader.Corrupt(absl::StrCat("sparse table ", t.name, " checksum mismatch"));
    }
    std::vector<SparseTable::RowSnapshot>& out_rows = t.contents.rows;
    out_rows.resize(rows);
    const char* p = payload.data();
    for (uint64_t r = 0; r < rows; ++r) {
      std::memcpy(&out_rows[r].key, p, 8);
      if (row_age_bytes > 0) {
        std::memcpy(&out_rows[r].last_update, p + 8, 8);
        std::memcpy(&out_rows[r].last_update_seconds, p + 16, 4);
        std::memcpy(&out_rows[r].updates, p + 20, 4);
      }
      out_rows[r].data.resize(row_floats);
      std::memcpy(out_rows[r].data.data(), p + 8 + row_age_bytes, row_floats * 4);
      p += row_bytes;
    }
    if (format >= 3) {
      absl::string_view state_bytes;
      FULCRUM_RETURN_IF_ERROR(reader.Section("sparse table state", &state_bytes));
      Reader state(state_bytes, path);
      SparseTable::Contents& c = t.contents;
      uint64_t exact = 0, halvings = 0, blocks = 0;
      FULCRUM_RETURN_IF_ERROR(state.Get(&c.updates));
      FULCRUM_RETURN_IF_ERROR(state.Get(&c.counters.admitted));
      FULCRUM_RETURN_IF_ERROR(state.Get(&c.counters.refused));
      FULCRUM_RETURN_IF_ERROR(state.Get(&c.counters.evicted));
      FULCRUM_RETURN_IF_ERROR(state.Get(&exact));
      if (exact > state_bytes.size() / 12) {
        return reader.Corrupt(absl::StrCat("implausible admission counts for ", t.name));
      }
      c.pending.exact.resize(exact);
      for (auto& [key, count] : c.pending.exact) {
        FULCRUM_RETURN_IF_ERROR(state.Get(&key));
        FULCRUM_RETURN_IF_ERROR(state.Get(&count));
      }
      FULCRUM_RETURN_IF_ERROR(state.Get(&halvings));
      if (halvings > state_bytes.size() / 8) {
        return reader.Corrupt(absl::StrCat("implausible admission halvings for ", t.name));
      }
      c.pending.halvings.resize(halvings);
      for (uint64_t& h : c.pending.halvings) FULCRUM_RETURN_IF_ERROR(state.Get(&h));
      FULCRUM_RETURN_IF_ERROR(state.Get(&c.pending.cells));
      if (c.pending.cells > (uint64_t{1} << 34)) {  // the job file's limit
        return reader.Corrupt(absl::StrCat("implausible admission cells for ", t.name));
      }
      FULCRUM_RETURN_IF_ERROR(state.Get(&blocks));
      if (blocks > state_bytes.size() / 16) {
        return reader.Corrupt(absl::StrCat("implausible admission cells for ", t.name));
      }
      c.pending.blocks.resize(blocks);
      for (auto& [first, cells] : c.pending.blocks) {
        uint64_t n = 0;
        FULCRUM_RETURN_IF_ERROR(state.Get(&first));
        FULCRUM_RETURN_IF_ERROR(state.Get(&n));
        absl::string_view cell_bytes;
        FULCRUM_RETURN_IF_ERROR(state.Bytes(n, &cell_bytes));
        if (first > c.pending.cells || n > c.pending.cells - first) {
          return reader.Corrupt(absl::StrCat("admission cells outside the table for ", t.name));
        }
        cells.assign(cell_bytes.begin(), cell_bytes.end());
      }
      uint64_t removed = 0;
      FULCRUM_RETURN_IF_ERROR(state.Get(&removed));
      if (removed > state_bytes.size() / 8) {
        return reader.Corrupt(absl::StrCat("implausible removed keys for ", t.name));
      }
      c.removed.resize(removed);
      for (uint64_t& key : c.removed) FULCRUM_RETURN_IF_ERROR(state.Get(&key));
      if (!state.empty()) return reader.Corrupt(absl::StrCat("trailing bytes in ", t.name));
    }
    shard.tables.push_back(std::move(t));
  }
  if (!reader.empty()) return reader.Corrupt("trailing bytes after the last table");
  return shard;
}

CheckpointStore::CheckpointStore(const CheckpointStoreOptions& options)
    : options_(options), fs_(options.fs != nullptr ? options.fs : PosixFileSystem()) {}

absl::Status CheckpointStore::WriteFileAtomically(const std::string& dir, const std::string& name,
                                                  absl::string_view data, bool slow) {
  const std::string tmp = absl::StrCat(dir, "/", name, ".tmp");
  FULCRUM_ASSIGN_OR_RETURN(std::unique_ptr<WritableFile> file, fs_->NewWritableFile(tmp));
  if (slow && options_.debug_write_delay > absl::ZeroDuration()) {
    FULCRUM_RETURN_IF_ERROR(file->Append(data.substr(0, data.size() / 2)));
    absl::SleepFor(options_.debug_write_delay);
    FULCRUM_RETURN_IF_ERROR(file->Append(data.substr(data.size() / 2)));
  } else {
    FULCRUM_RETURN_IF_ERROR(file->Append(data));
  }
  FULCRUM_RETURN_IF_ERROR(file->Sync());
  FULCRUM_RETURN_IF_ERROR(file->Close());
  FULCRUM_RETURN_IF_ERROR(fs_->Rename(tmp, absl::StrCat(dir, "/", name)));
  return fs_->SyncDir(dir);
}

absl::StatusOr<std::vector<std::string>> CheckpointStore::ListComplete() {
  FULCRUM_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(options_.dir));
  std::vector<std::pair<int64_t, std::string>> found;
  for (const std::string& name : names) {
    const int64_t seq = SequenceOf(name);
    const std::string path = absl::StrCat(options_.dir, "/", name);
    if (seq >= 0 && fs_->Exists(absl::StrCat(path, "/", kManifestName))) {
      found.emplace_back(seq, path);
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& [seq, path] : found) paths.push_back(path);
  return paths;
}

std::string CheckpointStore::PathOf(uint64_t sequence) const {
  return absl::StrCat(options_.dir, "/", FolderName(sequence));
}

absl::StatusOr<uint64_t> CheckpointStore::NextSequence() {
  FULCRUM_RETURN_IF_ERROR(fs_->CreateDir(options_.dir));
  FULCRUM_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(options_.dir));
  int64_t last = 0;
  for (const std::string& name : names) last = std::max(last, SequenceOf(name));
  return std::max(static_cast<uint64_t>(last + 1), start_after_ + 1);
}

absl::StatusOr<CheckpointManifest::ShardFile> CheckpointStore::WritePart(uint64_t sequence,
                                                                         const ShardSnapshot& shard,
                                                                         uint32_t index,
                                                                         uint32_t count) {
  FULCRUM_RETURN_IF_ERROR(fs_->CreateDir(options_.dir));
  const std::string path = PathOf(sequence);
  if (fs_->Exists(path)) FULCRUM_RETURN_IF_ERROR(fs_->DeleteRecursively(path));
  const std::string name = ShardFileName(index, count);
  const std::string bytes = EncodeShardFile(shard, index, count);
  absl::Status written = fs_->CreateDir(path);
  if (written.ok()) written = WriteFileAtomically(path, name, bytes, /*slow=*/true);
  if (written.ok()) written = fs_->SyncDir(options_.dir);
  if (!written.ok()) {
    Abandon(sequence);
    return written;
  }
  CheckpointManifest::ShardFile file;
  file.set_shard_index(index);
  file.set_file(name);
  file.set_bytes(bytes.size());
  file.set_crc32c(Crc32c(bytes));
  file.mutable_delta_chain()->Add(shard.delta_chain.begin(), shard.delta_chain.end());
  return file;
}

void CheckpointStore::Abandon(uint64_t sequence) {
  // Leave nothing that looks like a checkpoint; earlier ones are untouched.
  const std::string path = PathOf(sequence);
  if (!fs_->Exists(path)) return;
  absl::Status cleaned = fs_->DeleteRecursively(path);
  if (!cleaned.ok()) {
    FULCRUM_LOG(WARNING) << "could not remove failed checkpoint " << path << ": " << cleaned;
  }
}

absl::Status CheckpointStore::WriteManifest(const std::string& path,
                                            const CheckpointManifest& manifest) {
  std::string body;
  manifest.SerializeToString(&body);
  std::string manifest_bytes(kManifestMagic);
  Put<uint32_t>(&manifest_bytes, kCheckpointFormatVersion);
  PutSection(&manifest_bytes, body);
  FULCRUM_RETURN_IF_ERROR(
      WriteFileAtomically(path, std::string(kManifestName), manifest_bytes, false));
  return fs_->SyncDir(options_.dir);
}

absl::StatusOr<CheckpointInfo> CheckpointStore::Commit(const CheckpointManifest& manifest,
                                                       absl::Time started) {
  const std::string path = PathOf(manifest.sequence());
  absl::Status written = WriteManifest(path, manifest);
  if (!written.ok()) {
    Abandon(manifest.sequence());
    return written;
  }
  CheckpointInfo info;
  info.set_path(path);
  info.set_sequence(manifest.sequence());
  info.set_round(manifest.round());
  info.set_unix_seconds(manifest.unix_seconds());
  // Sizes as written: every shard's part plus the manifest here.
  uint64_t bytes = 0;
  for (const CheckpointManifest::ShardFile& file : manifest.shards()) bytes += file.bytes();
  absl::StatusOr<std::string> data = fs_->ReadFile(absl::StrCat(path, "/", kManifestName));
  if (data.ok()) bytes += data->size();
  info.set_bytes(bytes);
  info.set_duration_seconds(absl::ToDoubleSeconds(absl::Now() - started));
  absl::Status pruned = Prune();
  if (!pruned.ok()) FULCRUM_LOG(WARNING) << "pruning old checkpoints: " << pruned;
  return info;
}

absl::Status CheckpointStore::RecordCommitted(const CheckpointManifest& manifest) {
  const std::string path = PathOf(manifest.sequence());
  if (!fs_->Exists(path) || fs_->Exists(absl::StrCat(path, "/", kManifestName))) {
    return absl::OkStatus();  // not our part here, or recorded already
  }
  FULCRUM_RETURN_IF_ERROR(WriteManifest(path, manifest));
  return Prune();
}

absl::StatusOr<CheckpointInfo> CheckpointStore::Write(const ShardSnapshot& shard,
                                                      const CoordinatorCheckpoint& progress,
                                                      absl::Time started) {
  FULCRUM_ASSIGN_OR_RETURN(const uint64_t sequence, NextSequence());
  FULCRUM_ASSIGN_OR_RETURN(CheckpointManifest::ShardFile file, WritePart(sequence, shard, 0, 1));
  CheckpointManifest manifest;
  manifest.set_format_version(kCheckpointFormatVersion);
  manifest.set_sequence(sequence);
  manifest.set_unix_seconds(absl::ToDoubleSeconds(started - absl::UnixEpoch()));
  manifest.set_round(shard.version);
  manifest.set_num_shards(1);
  *manifest.add_shards() = file;
  *manifest.mutable_coordinator() = progress;
  return Commit(manifest, started);
}

absl::Status CheckpointStore::Prune() {
  FULCRUM_ASSIGN_OR_RETURN(std::vector<std::string> complete, ListComplete());
  if (complete.empty()) return absl::OkStatus();
  const int keep = std::max(1, options_.keep);
  const size_t first_kept = complete.size() > size_t(keep) ? complete.size() - keep : 0;
  const int64_t oldest_kept = SequenceOf(complete[first_kept].substr(options_.dir.size() + 1));
  // The checkpoints a kept one's deltas build on stay too.
  absl::flat_hash_set<int64_t> needed;
  for (size_t i = first_kept; i < complete.size(); ++i) {
    absl::StatusOr<CheckpointManifest> manifest = ReadManifest(complete[i]);
    if (!manifest.ok()) continue;  // it will not load either; nothing to keep for it
    for (const CheckpointManifest::ShardFile& file : manifest->shards()) {
      for (uint64_t sequence : file.delta_chain()) needed.insert(static_cast<int64_t>(sequence));
    }
  }
  FULCRUM_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(options_.dir));
  for (const std::string& name : names) {
    const int64_t seq = SequenceOf(name);
    // Older complete ones beyond `keep` that no kept one builds on, and
    // incomplete leftovers of crashed writes that are older than a kept
    // checkpoint.
    if (seq >= 0 && seq < oldest_kept && !needed.contains(seq)) {
      FULCRUM_RETURN_IF_ERROR(fs_->DeleteRecursively(absl::StrCat(options_.dir, "/", name)));
    }
  }
  return fs_->SyncDir(options_.dir);
}

absl::StatusOr<CheckpointManifest> CheckpointStore::ReadManifest(const std::string& path) {
  const std::string manifest_path = absl::StrCat(path, "/", kManifestName);
  if (!fs_->Exists(manifest_path)) {
    return absl::NotFoundError(absl::StrCat(path, ": no MANIFEST (an incomplete checkpoint)"));
  }
  FULCRUM_ASSIGN_OR_RETURN(std::string manifest_bytes, fs_->ReadFile(manifest_path));
  return DecodeManifest(manifest_bytes, manifest_path);
}

absl::StatusOr<ShardSnapshot> CheckpointStore::LoadPart(const CheckpointManifest& manifest,
                                                        uint32_t index) {
  return LoadPartFrom(PathOf(manifest.sequence()), manifest, index);
}

absl::StatusOr<ShardSnapshot> CheckpointStore::ReadPart(const std::string& path,
                                                        const CheckpointManifest& manifest,
                                                        uint32_t index) {
  const CheckpointManifest::ShardFile* file = nullptr;
  for (const CheckpointManifest::ShardFile& f : manifest.shards()) {
    if (f.shard_index() == index) file = &f;
  }
  if (file == nullptr) {
    return absl::DataLossError(
        absl::StrCat("checkpoint ", manifest.sequence(), " names no part of shard ", index));
  }
  const std::string shard_path = absl::StrCat(path, "/", file->file());
  if (!fs_->Exists(shard_path)) {
    return absl::NotFoundError(absl::StrCat(
        shard_path, " is missing: every shard restores its part of the same checkpoint"));
  }
  FULCRUM_ASSIGN_OR_RETURN(std::string shard_bytes, fs_->ReadFile(shard_path));
  if (shard_bytes.size() != file->bytes()) {
    return absl::DataLossError(absl::StrCat(shard_path, ": ", shard_bytes.size(),
                                            " bytes, the manifest says ", file->bytes()));
  }
  if (Crc32c(shard_bytes) != file->crc32c()) {
    return absl::DataLossError(absl::StrCat(shard_path, ": checksum mismatch"));
  }
  return DecodeShardFile(shard_bytes, shard_path);
}

absl::StatusOr<ShardSnapshot> CheckpointStore::LoadPartFrom(const std::string& path,
                                                            const CheckpointManifest& manifest,
                                                            uint32_t index) {
  FULCRUM_ASSIGN_OR_RETURN(ShardSnapshot part, ReadPart(path, manifest, index));
  if (part.delta_chain.empty()) return part;
  const std::string shard_path =
      absl::StrCat(path, "/", ShardFileName(index, manifest.num_shards()));
  // A delta: the whole part it builds on, then each delta after it, from
  // the sibling folders, then this one.
  const std::string parent = path.substr(0, path.find_last_of('/'));
  ShardSnapshot state;
  for (size_t i = 0; i < part.delta_chain.size(); ++i) {
    const std::string base_path = absl::StrCat(parent, "/", FolderName(part.delta_chain[i]), "/",
                                               ShardFileName(index, manifest.num_shards()));
    if (!fs_->Exists(base_path)) {
      return absl::NotFoundError(
          absl::StrCat(shard_path, " is a delta on ", base_path, ", which is missing"));
    }
    FULCRUM_ASSIGN_OR_RETURN(std::string base_bytes, fs_->ReadFile(base_path));
    FULCRUM_ASSIGN_OR_RETURN(ShardSnapshot base, DecodeShardFile(base_bytes, base_path));
    const std::vector<uint64_t> expected(part.delta_chain.begin(), part.delta_chain.begin() + i);
    if (base.delta_chain != expected) {
      return absl::DataLossError(absl::StrCat(base_path, " is not the checkpoint ", shard_path,
                                              " builds on (its chain differs)"));
    }
    if (i == 0) {
      state = std::move(base);
    } else {
      FULCRUM_RETURN_IF_ERROR(ApplyShardDelta(&state, base));
    }
  }
  FULCRUM_RETURN_IF_ERROR(ApplyShardDelta(&state, part));
  state.delta_chain.clear();  // whole now
  return state;
}

absl::StatusOr<LoadedCheckpoint> CheckpointStore::Load(const std::string& path, uint32_t index,
                                                       uint32_t count) {
  const std::string manifest_path = absl::StrCat(path, "/", kManifestName);
  if (!fs_->Exists(manifest_path)) {
    return absl::NotFoundError(absl::StrCat(path, ": no MANIFEST (an incomplete checkpoint)"));
  }
  FULCRUM_ASSIGN_OR_RETURN(std::string manifest_bytes, fs_->ReadFile(manifest_path));
  FULCRUM_ASSIGN_OR_RETURN(CheckpointManifest manifest,
                           DecodeManifest(manifest_bytes, manifest_path));
  if (manifest.num_shards() != count || manifest.shards_size() != static_cast<int>(count)) {
    return absl::FailedPreconditionError(absl::StrCat(path, ": written by ", manifest.num_shards(),
                                                      " shards; this job has ", count));
  }
  LoadedCheckpoint loaded;
  FULCRUM_ASSIGN_OR_RETURN(loaded.shard, LoadPartFrom(path, manifest, index));
  loaded.coordinator = manifest.coordinator();
  loaded.info.set_path(path);
  loaded.info.set_sequence(manifest.sequence());
  loaded.info.set_round(manifest.round());
  loaded.info.set_unix_seconds(manifest.unix_seconds());
  uint64_t bytes = manifest_bytes.size();
  for (const CheckpointManifest::ShardFile& f : manifest.shards()) bytes += f.bytes();
  loaded.info.set_bytes(bytes);
  loaded.manifest = std::move(manifest);
  return loaded;
}

absl::StatusOr<LoadedCheckpoint> CheckpointStore::LoadNewest(uint32_t index, uint32_t count) {
  if (!fs_->Exists(options_.dir)) {
    return absl::NotFoundError(absl::StrCat("no checkpoint folder ", options_.dir));
  }
  FULCRUM_ASSIGN_OR_RETURN(std::vector<std::string> complete, ListComplete());
  for (auto it = complete.rbegin(); it != complete.rend(); ++it) {
    absl::StatusOr<LoadedCheckpoint> loaded = Load(*it, index, count);
    if (loaded.ok()) return loaded;
    FULCRUM_LOG(WARNING) << "skipping checkpoint " << *it << ": " << loaded.status().message()
                         << "; trying an older one";
  }
  return absl::NotFoundError(
      absl::StrCat("no complete checkpoint that verifies in ", options_.dir));
}

}  // namespace fulcrum
