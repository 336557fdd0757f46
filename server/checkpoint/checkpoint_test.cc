#include "server/checkpoint/checkpoint.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/base/crc32c.h"
#include "common/base/file_system.h"
#include "gtest/gtest.h"
#include "server/checkpoint/shard_part_writer.h"

namespace fulcrum {
namespace {

std::string FreshDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string dir = absl::StrCat(tmp ? tmp : "/tmp", "/", name);
  PosixFileSystem()->DeleteRecursively(dir).IgnoreError();
  return dir;
}

ShardSnapshot MakeShard(int64_t version, float base) {
  ShardSnapshot shard;
  shard.version = version;
  TensorSnapshot w;
  w.name = "model/w";
  w.shape = {3, 4};
  for (int i = 0; i < 12; ++i) w.values.push_back(base + i);
  w.slots = {std::vector<float>(12, 0.5f), std::vector<float>(12, -2.0f)};
  w.optimizer_steps = 17;
  TensorSnapshot b;
  b.name = "model/b";
  b.shape = {4};
  b.values = {1, 2, 3, 4};
  b.slots = {std::vector<float>(4, 7.0f), std::vector<float>(4, 8.0f)};
  b.optimizer_steps = 17;
  shard.tensors = {w, b};
  SparseTableSnapshot emb;
  emb.name = "emb";
  emb.dim = 2;
  emb.slots = 1;
  emb.contents.rows = {{5, {1, 2, 0.5f, 0.5f}, 7, 1000000, 3},
                       {uint64_t{1} << 60, {base, -base, 3, 4}, 9, 1000002, 1}};
  emb.contents.updates = 9;
  emb.contents.counters = SparseTableCounters{2, 11, 4};
  emb.contents.pending.exact = {{17, 2}, {uint64_t{1} << 63, 1}};
  emb.contents.pending.halvings = {0, 3};
  emb.contents.pending.cells = 4100;
  emb.contents.pending.blocks = {{0, {0, 3, 255, 1}}, {4096, {9, 9, 9, 9}}};
  shard.tables = {emb};
  return shard;
}

CoordinatorCheckpoint Progress(uint32_t oldest_epoch) {
  CoordinatorCheckpoint p;
  p.set_state(RUNNING);
  p.set_oldest_epoch(oldest_epoch);
  PartitionRecord* r = p.add_completed();
  r->set_epoch(0);
  r->set_index(2);
  r->set_worker_name("w");
  p.set_examples_seen(12345);
  p.add_pending_evals(1);
  return p;
}

void ExpectSameShard(const ShardSnapshot& a, const ShardSnapshot& b) {
  EXPECT_EQ(a.version, b.version);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].name, b.tensors[i].name);
    EXPECT_EQ(a.tensors[i].shape, b.tensors[i].shape);
    EXPECT_EQ(a.tensors[i].values, b.tensors[i].values);
    EXPECT_EQ(a.tensors[i].slots, b.tensors[i].slots);
    EXPECT_EQ(a.tensors[i].optimizer_steps, b.tensors[i].optimizer_steps);
  }
  ASSERT_EQ(a.tables.size(), b.tables.size());
  for (size_t i = 0; i < a.tables.size(); ++i) {
    EXPECT_EQ(a.tables[i].name, b.tables[i].name);
    EXPECT_EQ(a.tables[i].dim, b.tables[i].dim);
    EXPECT_EQ(a.tables[i].slots, b.tables[i].slots);
    ASSERT_EQ(a.tables[i].contents.rows.size(), b.tables[i].contents.rows.size());
    for (size_t r = 0; r < a.tables[i].contents.rows.size(); ++r) {
      EXPECT_EQ(a.tables[i].contents.rows[r].key, b.tables[i].contents.rows[r].key);
      EXPECT_EQ(a.tables[i].contents.rows[r].data, b.tables[i].contents.rows[r].data);
      EXPECT_EQ(a.tables[i].contents.rows[r].last_update, b.tables[i].contents.rows[r].last_update);
      EXPECT_EQ(a.tables[i].contents.rows[r].last_update_seconds,
                b.tables[i].contents.rows[r].last_update_seconds);
      EXPECT_EQ(a.tables[i].contents.rows[r].updates, b.tables[i].contents.rows[r].updates);
    }
    const SparseTable::Contents& ca = a.tables[i].contents;
    const SparseTable::Contents& cb = b.tables[i].contents;
    EXPECT_EQ(ca.updates, cb.updates);
    EXPECT_EQ(ca.counters.admitted, cb.counters.admitted);
    EXPECT_EQ(ca.counters.refused, cb.counters.refused);
    EXPECT_EQ(ca.counters.evicted, cb.counters.evicted);
    EXPECT_EQ(ca.pending.exact, cb.pending.exact);
    EXPECT_EQ(ca.pending.halvings, cb.pending.halvings);
    EXPECT_EQ(ca.pending.cells, cb.pending.cells);
    EXPECT_EQ(ca.pending.blocks, cb.pending.blocks);
  }
}

// A FileSystem that fails writes on cue, like leveldb's ErrorEnv.
class FaultyFileSystem : public FileSystem {
 public:
  // Fails Append after `ok_appends` successful ones with `error`.
  int ok_appends = 1 << 30;
  absl::Status error = absl::ResourceExhaustedError("write: No space left on device");
  bool fail_create = false;

  absl::StatusOr<std::unique_ptr<WritableFile>> NewWritableFile(const std::string& path) override {
    if (fail_create) return absl::PermissionDeniedError("create " + path + ": Permission denied");
    auto file = PosixFileSystem()->NewWritableFile(path);
    if (!file.ok()) return file.status();
    return std::unique_ptr<WritableFile>(new File(std::move(*file), this));
  }
  absl::StatusOr<std::string> ReadFile(const std::string& p) override {
    return PosixFileSystem()->ReadFile(p);
  }
  absl::Status Rename(const std::string& a, const std::string& b) override {
    return PosixFileSystem()->Rename(a, b);
  }
  absl::Status CreateDir(const std::string& p) override { return PosixFileSystem()->CreateDir(p); }
  absl::Status SyncDir(const std::string& p) override { return PosixFileSystem()->SyncDir(p); }
  absl::StatusOr<std::vector<std::string>> ListDir(const std::string& p) override {
    return PosixFileSystem()->ListDir(p);
  }
  absl::Status DeleteRecursively(const std::string& p) override {
    return PosixFileSystem()->DeleteRecursively(p);
  }
  bool Exists(const std::string& p) override { return PosixFileSystem()->Exists(p); }

 private:
  class File : public WritableFile {
   public:
    File(std::unique_ptr<WritableFile> base, FaultyFileSystem* fs)
        : base_(std::move(base)), fs_(fs) {}
    absl::Status Append(absl::string_view data) override {
      if (fs_->ok_appends-- <= 0) return fs_->error;
      return base_->Append(data);
    }
    absl::Status Sync() override { return base_->Sync(); }
    absl::Status Close() override { return base_->Close(); }

   private:
    std::unique_ptr<WritableFile> base_;
    FaultyFileSystem* fs_;
  };
};

CheckpointStore MakeStore(const std::string& dir, int keep = 3, FileSystem* fs = nullptr) {
  CheckpointStoreOptions o;
  o.dir = dir;
  o.keep = keep;
  o.fs = fs;
  return CheckpointStore(o);
}

// Overwrites one byte of a file.
void Corrupt(const std::string& path, size_t offset_from_end, char value = 0) {
  std::string data = *PosixFileSystem()->ReadFile(path);
  ASSERT_GT(data.size(), offset_from_end);
  data[data.size() - 1 - offset_from_end] ^= (value ? value : 0x20);
  auto f = *PosixFileSystem()->NewWritableFile(path);
  ASSERT_TRUE(f->Append(data).ok());
  ASSERT_TRUE(f->Close().ok());
}

void Truncate(const std::string& path, size_t keep_bytes) {
  std::string data = *PosixFileSystem()->ReadFile(path);
  auto f = *PosixFileSystem()->NewWritableFile(path);
  ASSERT_TRUE(f->Append(data.substr(0, keep_bytes)).ok());
  ASSERT_TRUE(f->Close().ok());
}

const char kShardFile[] = "/shard-00000-of-00001";

TEST(CheckpointTest, ShardFile_RoundTripsEveryTensorAndSlot) {
  const ShardSnapshot shard = MakeShard(42, 1.5f);
  absl::StatusOr<ShardSnapshot> back = DecodeShardFile(EncodeShardFile(shard, 0, 1), "mem");
  ASSERT_TRUE(back.ok()) << back.status();
  ExpectSameShard(shard, *back);
}

TEST(CheckpointTest, ShardFile_ImplausibleAdmissionCells_DataLossNotAnAllocation) {
  ShardSnapshot shard = MakeShard(1, 0);
  shard.tables[0].contents.pending.cells = uint64_t{1} << 40;
  shard.tables[0].contents.pending.blocks = {{0, {1, 2}}};
  absl::Status s = DecodeShardFile(EncodeShardFile(shard, 0, 1), "f").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("implausible admission cells"), std::string::npos) << s;
  shard = MakeShard(1, 0);
  shard.tables[0].contents.pending.blocks = {{~uint64_t{0}, {1, 2}}};  // past the cells
  s = DecodeShardFile(EncodeShardFile(shard, 0, 1), "f").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("outside the table"), std::string::npos) << s;
}

TEST(CheckpointTest, ShardFile_EveryFlippedByteDetected) {
  const std::string data = EncodeShardFile(MakeShard(1, 0), 0, 1);
  for (size_t i = 0; i < data.size(); i += 7) {
    std::string bad = data;
    bad[i] ^= 0x01;
    EXPECT_EQ(DecodeShardFile(bad, "f").status().code(), absl::StatusCode::kDataLoss)
        << "byte " << i;
  }
}

TEST(CheckpointTest, ShardFile_WrongMagicOrVersion_DataLossSayingWhy) {
  std::string data = EncodeShardFile(MakeShard(1, 0), 0, 1);
  std::string magic = data;
  magic[0] = 'X';
  absl::Status s = DecodeShardFile(magic, "the/file").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("the/file"), std::string::npos);
  EXPECT_NE(s.message().find("magic"), std::string::npos);
  std::string version = data;
  version[8] = 9;  // format version 9 (not 3)
  s = DecodeShardFile(version, "f").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("format version 9"), std::string::npos);
}

TEST(CheckpointTest, ShardFile_EveryTruncationDetected) {
  const std::string data = EncodeShardFile(MakeShard(1, 0), 0, 1);
  for (size_t n = 0; n < data.size(); n += 5) {
    EXPECT_EQ(DecodeShardFile(data.substr(0, n), "f").status().code(), absl::StatusCode::kDataLoss)
        << n;
  }
}

TEST(CheckpointTest, WriteThenLoadNewest_RoundTripsShardAndProgress) {
  const std::string dir = FreshDir("roundtrip");
  CheckpointStore store = MakeStore(dir);
  absl::StatusOr<CheckpointInfo> info = store.Write(MakeShard(7, 1), Progress(1), absl::Now());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->sequence(), 1u);
  EXPECT_EQ(info->round(), 7);
  EXPECT_GT(info->bytes(), 0u);
  absl::StatusOr<LoadedCheckpoint> loaded = store.LoadNewest();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameShard(MakeShard(7, 1), loaded->shard);
  EXPECT_EQ(loaded->coordinator.oldest_epoch(), 1u);
  EXPECT_EQ(loaded->coordinator.completed_size(), 1);
  EXPECT_EQ(loaded->coordinator.examples_seen(), 12345u);
  EXPECT_EQ(loaded->info.path(), info->path());
}

TEST(CheckpointTest, NewestCorrupt_FallsBackToThePreviousOne) {
  const std::string dir = FreshDir("fallback");
  CheckpointStore store = MakeStore(dir);
  ASSERT_TRUE(store.Write(MakeShard(10, 1), Progress(0), absl::Now()).ok());
  absl::StatusOr<CheckpointInfo> newest = store.Write(MakeShard(20, 2), Progress(1), absl::Now());
  ASSERT_TRUE(newest.ok());
  Corrupt(newest->path() + kShardFile, 10);  // a bit flipped in tensor data
  absl::StatusOr<LoadedCheckpoint> loaded = store.LoadNewest();
  ASSERT_TRUE(loaded.ok());
  EXPECT_EQ(loaded->shard.version, 10);
  EXPECT_EQ(store.Load(newest->path()).status().code(), absl::StatusCode::kDataLoss);
}

TEST(CheckpointTest, TruncatedShardFile_FallsBack) {
  const std::string dir = FreshDir("truncated");
  CheckpointStore store = MakeStore(dir);
  ASSERT_TRUE(store.Write(MakeShard(10, 1), Progress(0), absl::Now()).ok());
  auto newest = store.Write(MakeShard(20, 2), Progress(1), absl::Now());
  Truncate(newest->path() + kShardFile, 30);
  EXPECT_EQ(store.LoadNewest()->shard.version, 10);
}

TEST(CheckpointTest, MissingManifest_Ignored) {
  const std::string dir = FreshDir("nomanifest");
  CheckpointStore store = MakeStore(dir);
  ASSERT_TRUE(store.Write(MakeShard(10, 1), Progress(0), absl::Now()).ok());
  auto newest = store.Write(MakeShard(20, 2), Progress(1), absl::Now());
  ASSERT_TRUE(PosixFileSystem()->DeleteRecursively(newest->path() + "/MANIFEST").ok());
  EXPECT_EQ(store.LoadNewest()->shard.version, 10);
  EXPECT_EQ(store.ListComplete()->size(), 1u);
  EXPECT_EQ(store.Load(newest->path()).status().code(), absl::StatusCode::kNotFound);
}

TEST(CheckpointTest, CorruptManifest_FallsBackWithReason) {
  const std::string dir = FreshDir("badmanifest");
  CheckpointStore store = MakeStore(dir);
  ASSERT_TRUE(store.Write(MakeShard(10, 1), Progress(0), absl::Now()).ok());
  auto newest = store.Write(MakeShard(20, 2), Progress(1), absl::Now());
  Corrupt(newest->path() + "/MANIFEST", 6);
  absl::Status s = store.Load(newest->path()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("MANIFEST"), std::string::npos);
  EXPECT_EQ(store.LoadNewest()->shard.version, 10);
}

TEST(CheckpointTest, NothingUsable_NotFound) {
  const std::string dir = FreshDir("empty");
  CheckpointStore store = MakeStore(dir);
  EXPECT_EQ(store.LoadNewest().status().code(), absl::StatusCode::kNotFound);
  auto only = store.Write(MakeShard(1, 1), Progress(0), absl::Now());
  Truncate(only->path() + kShardFile, 3);
  EXPECT_EQ(store.LoadNewest().status().code(), absl::StatusCode::kNotFound);
}

TEST(CheckpointTest, KeepsTheLastK) {
  const std::string dir = FreshDir("keep");
  CheckpointStore store = MakeStore(dir, /*keep=*/2);
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(store.Write(MakeShard(i, i), Progress(0), absl::Now()).ok());
  }
  std::vector<std::string> complete = *store.ListComplete();
  ASSERT_EQ(complete.size(), 2u);
  EXPECT_NE(complete[0].find("ckpt-000000004"), std::string::npos);
  EXPECT_NE(complete[1].find("ckpt-000000005"), std::string::npos);
  EXPECT_EQ(PosixFileSystem()->ListDir(dir)->size(), 2u);
}

TEST(CheckpointTest, DiskFullMidWrite_FailsCleanlyAndKeepsEarlierOnes) {
  const std::string dir = FreshDir("diskfull");
  FaultyFileSystem fs;
  CheckpointStore store = MakeStore(dir, 3, &fs);
  ASSERT_TRUE(store.Write(MakeShard(10, 1), Progress(0), absl::Now()).ok());
  fs.ok_appends = 0;
  absl::StatusOr<CheckpointInfo> failed = store.Write(MakeShard(20, 2), Progress(1), absl::Now());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(failed.status().message().find("No space"), std::string::npos);
  // The failed attempt left nothing behind; the earlier one still loads.
  EXPECT_EQ(PosixFileSystem()->ListDir(dir)->size(), 1u);
  EXPECT_EQ(store.LoadNewest()->shard.version, 10);
  // The disk has room again: the next checkpoint works.
  fs.ok_appends = 1 << 30;
  EXPECT_TRUE(store.Write(MakeShard(30, 3), Progress(2), absl::Now()).ok());
  EXPECT_EQ(store.LoadNewest()->shard.version, 30);
}

TEST(CheckpointTest, PermissionDenied_FailsCleanly) {
  const std::string dir = FreshDir("readonly");
  FaultyFileSystem fs;
  fs.fail_create = true;
  CheckpointStore store = MakeStore(dir, 3, &fs);
  absl::StatusOr<CheckpointInfo> s = store.Write(MakeShard(1, 1), Progress(0), absl::Now());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(store.LoadNewest().status().code(), absl::StatusCode::kNotFound);
}

TEST(CheckpointTest, FolderIsAFile_FailsCleanly) {
  const std::string path = FreshDir("afile");
  auto f = *PosixFileSystem()->NewWritableFile(path);
  ASSERT_TRUE(f->Close().ok());
  CheckpointStore store = MakeStore(path);
  EXPECT_FALSE(store.Write(MakeShard(1, 1), Progress(0), absl::Now()).ok());
}

// Incremental checkpoints of a shard whose table admits and evicts: a
// parameter shard (a dense tensor and a sparse table), its parts written
// by a ShardPartWriter and committed.
// Parameter: the admission counter (EXACT's small enough to be halved).
class IncrementalTest : public ::testing::TestWithParam<FeatureAdmission::Counter> {
 protected:
  void SetUp() override {
    TensorSpec spec;
    spec.set_name("d");
    spec.add_shape(4);
    OptimizerConfig config;
    config.set_kind(ADAGRAD);
    config.set_learning_rate(0.1f);
    auto store = ParameterStore::Create({}, *CreateOptimizer(config), {spec});
    SparseTableOptions options;
    options.name = "emb";
    options.dim = 4;
    options.max_rows = 3000;
    options.initializer = UNIFORM;
    options.scale = 0.1f;
    options.admission.set_min_count(2);
    options.admission.set_counter(GetParam());
    options.admission.set_max_counters(16384);
    // Cells are rewritten in blocks of 4096, and pushes touch every block:
    // a filter small next to the table.
    options.admission.set_bloom_cells(1 << 12);
    options.eviction.set_when_full(FeatureEviction::LEAST_RECENTLY_UPDATED);
    options.eviction.set_ttl_seconds(120);
    options.clock = &clock_;
    std::vector<std::unique_ptr<SparseTable>> tables;
    tables.push_back(*SparseTable::Create(options, *CreateOptimizer(config)));
    shard_ = std::make_unique<ParameterShard>(std::move(*store), ASYNC, 0, std::move(tables));
    WorkerMembership m;
    m.coordinator_incarnation = 1;
    m.version = 1;
    m.started = true;
    m.Admit(1);
    m.Activate(1, 0);
    shard_->ApplyMembership(m);
  }

  // `steps` pushes of 64 ids each, Zipf-like: a few hot ids, many cold.
  void Train(int steps) {
    for (int i = 0; i < steps; ++i, ++step_) {
      std::vector<uint64_t> keys;
      for (uint64_t k = 0; k < 64; ++k) {
        const uint64_t r = (step_ * 64 + k) * 2654435761u % 10007;
        keys.push_back(r < 5000 ? r % 50 : r);  // half hot (50 ids), half cold
      }
      std::vector<float> values(keys.size() * 4, 0.25f);
      std::vector<float> dense(4, 1.0f);
      std::vector<SliceGradient> g = {{SliceRef{"d", 0, 4}, dense}};
      std::vector<SparseGradient> sparse = {{"emb", keys, values}};
      ASSERT_TRUE(shard_->Push(WorkerIdentity{1, 1}, 0, 0, g, sparse).ok());
      clock_.Advance(absl::Seconds(1));
    }
    // Every eviction due done, so that nothing changes while the test
    // compares (the evictor thread finds nothing more to do).
    ASSERT_TRUE(shard_->EvictNow().ok());
  }

  // Writes and commits checkpoint `sequence` (a delta on `delta_of` if the
  // writer can): its record.
  CheckpointManifest::ShardFile Checkpoint(CheckpointStore& store, ShardPartWriter& writer,
                                           uint64_t sequence, uint64_t delta_of) {
    absl::StatusOr<CheckpointManifest::ShardFile> file =
        CommitOneShardCheckpoint(store, writer, sequence, delta_of, JobSpec());
    EXPECT_TRUE(file.ok()) << file.status();
    return file.ok() ? *file : CheckpointManifest::ShardFile();
  }

  // The shard's state with rows in key order (a delta restores them in
  // another order).
  static ShardSnapshot Canonical(ShardSnapshot s) {
    for (SparseTableSnapshot& t : s.tables) {
      std::sort(t.contents.rows.begin(), t.contents.rows.end(),
                [](const auto& a, const auto& b) { return a.key < b.key; });
      std::sort(t.contents.pending.exact.begin(), t.contents.pending.exact.end());
      // Bloom cells as one run (stripes export theirs as blocks of their own).
      AdmissionCounts& pending = t.contents.pending;
      std::vector<uint8_t> cells(pending.cells, 0);
      for (const auto& [first, values] : pending.blocks) {
        std::copy(values.begin(), values.end(), cells.begin() + first);
      }
      pending.blocks.clear();
      if (!cells.empty()) pending.blocks.emplace_back(0, std::move(cells));
    }
    s.delta_chain.clear();
    return s;
  }

  ManualClock clock_;
  std::unique_ptr<ParameterShard> shard_;
  uint64_t step_ = 0;
};

TEST_P(IncrementalTest, WholeThenDeltas_RestoreEqualsTheLiveShardBitForBit_DeltasAreSmall) {
  const std::string dir = FreshDir("incremental");
  CheckpointStore store = MakeStore(dir, /*keep=*/1);
  ShardPartWriter writer(shard_.get(), &store, 0, 1);
  Train(400);
  const CheckpointManifest::ShardFile whole = Checkpoint(store, writer, 1, 0);
  EXPECT_EQ(whole.delta_chain_size(), 0);
  Train(10);
  const CheckpointManifest::ShardFile first = Checkpoint(store, writer, 2, 1);
  EXPECT_EQ(std::vector<uint64_t>(first.delta_chain().begin(), first.delta_chain().end()),
            std::vector<uint64_t>{1});
  Train(40);  // long enough for the TTL to evict rows the whole one holds
  const CheckpointManifest::ShardFile second = Checkpoint(store, writer, 3, 2);
  EXPECT_EQ(second.delta_chain_size(), 2);
  const SparseTable& table = *shard_->sparse_table("emb");
  EXPECT_GT(table.counters().evicted, 0u);
  EXPECT_GT(table.counters().refused, 0u);
  // The hot rows and the few new ones, not the table.
  EXPECT_LT(first.bytes(), whole.bytes() / 3) << first.bytes() << " vs " << whole.bytes();

  absl::StatusOr<LoadedCheckpoint> loaded = store.LoadNewest();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->info.sequence(), 3u);
  ExpectSameShard(Canonical(shard_->Snapshot()), Canonical(loaded->shard));
  // keep=1 keeps checkpoint 3 and the two it builds on.
  EXPECT_EQ(store.ListComplete()->size(), 3u);
}

TEST_P(IncrementalTest, CorruptDelta_FallsBackToTheNewestConsistentCheckpoint) {
  const std::string dir = FreshDir("incremental_corrupt");
  CheckpointStore store = MakeStore(dir);
  ShardPartWriter writer(shard_.get(), &store, 0, 1);
  Train(100);
  Checkpoint(store, writer, 1, 0);
  Train(20);
  Checkpoint(store, writer, 2, 1);
  const ShardSnapshot at_two = Canonical(shard_->Snapshot());
  Train(20);
  Checkpoint(store, writer, 3, 2);
  Corrupt(dir + "/ckpt-000000003" + kShardFile, 40);
  absl::StatusOr<LoadedCheckpoint> loaded = store.LoadNewest();
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->info.sequence(), 2u);
  ExpectSameShard(at_two, Canonical(loaded->shard));
  // A delta whose base is gone does not load, saying so; the whole one does.
  ASSERT_TRUE(PosixFileSystem()->DeleteRecursively(dir + "/ckpt-000000001").ok());
  absl::Status s = store.Load(dir + "/ckpt-000000002").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("is a delta on"), std::string::npos) << s;
  EXPECT_EQ(store.LoadNewest().status().code(), absl::StatusCode::kNotFound);
}

TEST_P(IncrementalTest, DeltaOnAPartThisWriterDidNotWrite_IsWrittenWhole) {
  const std::string dir = FreshDir("incremental_unknown");
  CheckpointStore store = MakeStore(dir);
  Train(50);
  ShardPartWriter before(shard_.get(), &store, 0, 1);
  Checkpoint(store, before, 1, 0);
  // Another writer (a restarted or promoted process) knows no marks.
  ShardPartWriter after(shard_.get(), &store, 0, 1);
  EXPECT_EQ(Checkpoint(store, after, 2, 1).delta_chain_size(), 0);
  EXPECT_EQ(Checkpoint(store, after, 3, 2).delta_chain_size(), 1);
}

INSTANTIATE_TEST_SUITE_P(Counters, IncrementalTest,
                         ::testing::Values(FeatureAdmission::EXACT,
                                           FeatureAdmission::COUNTING_BLOOM),
                         [](const auto& info) {
                           return FeatureAdmission::Counter_Name(info.param);
                         });

}  // namespace
}  // namespace fulcrum
