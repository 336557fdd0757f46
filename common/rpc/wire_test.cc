#include "common/rpc/wire.h"

#include <vector>

#include "common/payload.h"
#include "gtest/gtest.h"

namespace fulcrum {
namespace {

template <typename Message>
Message Parse(grpc::ByteBuffer* buffer) {
  grpc::Slice slice;
  EXPECT_TRUE(buffer->DumpToSingleSlice(&slice).ok());
  Message m;
  EXPECT_TRUE(m.ParseFromArray(slice.begin(), static_cast<int>(slice.size())));
  return m;
}

// A push of two dense slices (one large: its length takes a multi-byte
// varint) and a sparse table, with the dense data left out.
PushRequest Skeleton() {
  PushRequest r;
  r.mutable_header()->set_worker_id(7);
  r.mutable_header()->set_request_id(99);
  r.mutable_header()->set_clock(3);
  r.set_batch_examples(64);
  for (const auto& [name, length] : {std::pair<const char*, int>{"w", 70000}, {"b", 10}}) {
    DenseValues* d = r.add_dense();
    d->mutable_slice()->set_tensor(name);
    d->mutable_slice()->set_offset(5);
    d->mutable_slice()->set_length(length);
    d->set_encoding(FLOAT32);
  }
  SparseValues* s = r.add_sparse();
  s->set_table("emb");
  s->add_keys(42);
  s->set_encoding(FLOAT32);
  EncodeFloat32(std::vector<float>{1, 2}, s->mutable_data());
  return r;
}

TEST(WireTest, PushBytes_ParseAsTheMessageWithThePayloadsFilledIn) {
  std::vector<float> w(70000), b(10);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * i;
  for (size_t i = 0; i < b.size(); ++i) b[i] = -1.0f * i;
  PushRequest request = Skeleton();
  const PushRequest before = request;
  grpc::ByteBuffer bytes = PushBytes(&request, {absl::MakeConstSpan(w), absl::MakeConstSpan(b)});
  EXPECT_EQ(request.SerializeAsString(), before.SerializeAsString());  // left as it was

  PushRequest expected = Skeleton();
  EncodeFloat32(w, expected.mutable_dense(0)->mutable_data());
  EncodeFloat32(b, expected.mutable_dense(1)->mutable_data());
  EXPECT_EQ(bytes.Length(), expected.ByteSizeLong());
  EXPECT_EQ(Parse<PushRequest>(&bytes).SerializeAsString(), expected.SerializeAsString());
}

TEST(WireTest, PushPullBytes_PushWithPayloadsThenThePull) {
  std::vector<float> w(70000, 0.25f), b(10, 2.0f);
  PushPullRequest request;
  *request.mutable_push() = Skeleton();
  request.mutable_pull()->mutable_header()->set_clock(4);
  DenseSlice* slice = request.mutable_pull()->add_dense();
  slice->set_tensor("w");
  slice->set_length(70000);
  grpc::ByteBuffer bytes =
      PushPullBytes(&request, {absl::MakeConstSpan(w), absl::MakeConstSpan(b)});

  PushPullRequest expected = request;
  EncodeFloat32(w, expected.mutable_push()->mutable_dense(0)->mutable_data());
  EncodeFloat32(b, expected.mutable_push()->mutable_dense(1)->mutable_data());
  EXPECT_EQ(Parse<PushPullRequest>(&bytes).SerializeAsString(), expected.SerializeAsString());
}

TEST(WireTest, EmptyPayloadAndNoDense) {
  PushRequest request;
  request.mutable_header()->set_worker_id(1);
  DenseValues* d = request.add_dense();
  d->mutable_slice()->set_tensor("w");
  d->set_encoding(FLOAT32);
  grpc::ByteBuffer bytes = PushBytes(&request, {absl::Span<const float>()});
  EXPECT_EQ(Parse<PushRequest>(&bytes).SerializeAsString(), request.SerializeAsString());
  PushRequest bare;
  bare.set_batch_examples(3);
  grpc::ByteBuffer bare_bytes = PushBytes(&bare, {});
  EXPECT_EQ(Parse<PushRequest>(&bare_bytes).batch_examples(), 3u);
}

}  // namespace
}  // namespace fulcrum
