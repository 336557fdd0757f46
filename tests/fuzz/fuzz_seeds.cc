// Writes the fuzzers' seed corpora: valid inputs of each kind, from which
// libFuzzer mutates.
//
//   fuzz_seeds OUT_DIR   -> OUT_DIR/{payload,checkpoint,parameter_service,reply}/
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/payload.h"
#include "proto/parameter_service.pb.h"
#include "server/checkpoint/checkpoint.h"

namespace fulcrum {
namespace {

void Write(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
}

std::string PayloadSeed(Encoding encoding, const std::vector<float>& values, bool finite) {
  std::string seed;
  seed.push_back(static_cast<char>(encoding));
  seed.push_back(static_cast<char>(values.size() & 0xff));
  seed.push_back(static_cast<char>(values.size() >> 8));
  seed.push_back(finite ? 1 : 0);
  EncodeValues(encoding, values, &seed);
  return seed;
}

void AddFloats(const std::vector<float>& values, Encoding encoding, std::string* data) {
  EncodeValues(encoding, values, data);
}

}  // namespace
}  // namespace fulcrum

int main(int argc, char** argv) {
  using namespace fulcrum;
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds OUT_DIR\n");
    return 2;
  }
  const std::string out = argv[1];
  for (const char* sub : {"", "/payload", "/checkpoint", "/parameter_service", "/reply"}) {
    mkdir((out + sub).c_str(), 0755);
  }
  std::vector<float> values(300);
  for (size_t i = 0; i < values.size(); ++i) values[i] = (i % 7 == 0) ? 0.0f : 0.01f * i - 1.0f;
  int n = 0;
  for (Encoding e : {FLOAT32, FLOAT16, INT8_BLOCK, INDEXED_NONZEROS}) {
    Write(out + "/payload", "seed" + std::to_string(n++), PayloadSeed(e, values, true));
    Write(out + "/payload", "seed" + std::to_string(n++),
          PayloadSeed(e, std::vector<float>(values.begin(), values.begin() + 5), false));
  }

  ShardSnapshot shard;
  shard.version = 42;
  TensorSnapshot tensor;
  tensor.name = "w";
  tensor.shape = {2, 3};
  tensor.values = {1, 2, 3, 4, 5, 6};
  tensor.slots = {std::vector<float>(6, 0.5f), std::vector<float>(6, 0.25f)};
  tensor.optimizer_steps = 9;
  shard.tensors.push_back(tensor);
  Write(out + "/checkpoint", "seed0", EncodeShardFile(shard, 0, 1));
  Write(out + "/checkpoint", "seed1", EncodeShardFile(ShardSnapshot(), 0, 1));

  // Requests against parameter_service_fuzzer's shard: w [16, 8], b [8],
  // sparse table emb of dim 4. Byte 0 picks pull, push, push-pull.
  PullRequest pull;
  DenseSlice* slice = pull.add_dense();
  slice->set_tensor("w");
  slice->set_offset(8);
  slice->set_length(64);
  pull.add_dense()->set_tensor("b");
  pull.mutable_dense(1)->set_length(8);
  SparseKeys* keys = pull.add_sparse();
  keys->set_table("emb");
  for (uint64_t k : {3, 99, 3}) keys->add_keys(k);
  Write(out + "/parameter_service", "pull", std::string(1, 0) + pull.SerializeAsString());
  n = 0;
  for (Encoding e : {FLOAT32, FLOAT16, INT8_BLOCK, INDEXED_NONZEROS}) {
    PushRequest push;
    push.mutable_header()->set_request_id(n + 1);
    push.set_batch_examples(64);
    DenseValues* dense = push.add_dense();
    *dense->mutable_slice() = pull.dense(0);
    dense->set_encoding(e);
    AddFloats(std::vector<float>(values.begin(), values.begin() + 64), e, dense->mutable_data());
    SparseValues* rows = push.add_sparse();
    rows->set_table("emb");
    rows->set_encoding(FLOAT32);
    for (uint64_t k : {3, 7}) rows->add_keys(k);
    AddFloats(std::vector<float>(values.begin(), values.begin() + 8), FLOAT32,
              rows->mutable_data());
    Write(out + "/parameter_service", "push" + std::to_string(n),
          std::string(1, 1) + push.SerializeAsString());
    PushPullRequest both;
    *both.mutable_push() = push;
    *both.mutable_pull() = pull;
    Write(out + "/parameter_service", "pushpull" + std::to_string(n++),
          std::string(1, 2) + both.SerializeAsString());
  }

  // Replies for reply_fuzzer, read into tensors of 64 and 8 floats: byte 0
  // is the type (bit 0: push-pull) and the slice size less one (bits 1-7).
  PullResponse reply;
  reply.mutable_header()->set_round(5);
  reply.mutable_header()->set_incarnation(77);
  for (int length : {64, 8}) {
    DenseValues* dense = reply.add_dense();
    dense->set_encoding(FLOAT32);
    AddFloats(std::vector<float>(values.begin(), values.begin() + length), FLOAT32,
              dense->mutable_data());
  }
  SparseValues* rows = reply.add_sparse();
  rows->set_table("emb");
  rows->set_encoding(FLOAT32);
  AddFloats(std::vector<float>(values.begin(), values.begin() + 4), FLOAT32, rows->mutable_data());
  PushPullResponse reply_both;
  reply_both.mutable_push_header()->set_version(9);
  *reply_both.mutable_pull() = reply;
  const std::string sizes = {64, 8};
  Write(out + "/reply", "pull", std::string(1, 15 << 1) + sizes + reply.SerializeAsString());
  Write(out + "/reply", "pushpull",
        std::string(1, (100 << 1) | 1) + sizes + reply_both.SerializeAsString());
  return 0;
}
