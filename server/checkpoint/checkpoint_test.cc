#include "server/checkpoint/checkpoint.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "common/base/crc32c.h"
#include "common/base/file_system.h"
#include "gtest/gtest.h"

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
  emb.contents.pending.cells = {0, 3, 255, 1};
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
    EXPECT_EQ(ca.pending.cells, cb.pending.cells);
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
  version[8] = 9;  // format version 9 (not 2)
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

}  // namespace
}  // namespace fulcrum
