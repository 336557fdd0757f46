#include "common/rpc/wire.h"

#include <algorithm>
#include <cstdint>
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

// Dense entries "w" (70000 values from `offset`: its length takes a
// multi-byte varint) and "b" (`b_length`), data left out, and a sparse
// table's row.
template <typename Message>
void AddEntries(uint64_t offset, int b_length, Message* m) {
  for (const auto& [name, length] : {std::pair<const char*, int>{"w", 70000}, {"b", b_length}}) {
    DenseValues* d = m->add_dense();
    d->mutable_slice()->set_tensor(name);
    d->mutable_slice()->set_offset(offset);
    d->mutable_slice()->set_length(length);
    d->set_encoding(FLOAT32);
  }
  SparseValues* s = m->add_sparse();
  s->set_table("emb");
  s->add_keys(42);
  s->set_encoding(FLOAT32);
  EncodeFloat32(std::vector<float>{1, 2}, s->mutable_data());
}

// A push of two dense slices (one large: its length takes a multi-byte
// varint) and a sparse table, with the dense data left out.
PushRequest Skeleton() {
  PushRequest r;
  r.mutable_header()->set_worker_id(7);
  r.mutable_header()->set_request_id(99);
  r.mutable_header()->set_clock(3);
  r.set_batch_examples(64);
  AddEntries(5, 10, &r);
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

// A pull's reply: header, two dense entries (one large, one of 3 floats:
// small slices must not live inside the moving grpc_slice) and a sparse one.
PullResponse ReplySkeleton() {
  PullResponse r;
  r.mutable_header()->set_version(12);
  r.mutable_header()->set_round(4);
  r.mutable_header()->set_incarnation(77);
  AddEntries(0, 3, &r);
  return r;
}

// Payloads allocated and filled as the server does, with the values of w
// and b.
std::vector<FloatPayload> Filled(const std::vector<float>& w, const std::vector<float>& b) {
  std::vector<FloatPayload> payloads;
  for (const std::vector<float>* v : {&w, &b}) {
    FloatPayload p = FloatPayload::Allocate(v->size());
    EXPECT_EQ(p.values.size(), v->size());
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p.values.data()) % alignof(float), 0u);
    std::copy(v->begin(), v->end(), p.values.begin());
    payloads.push_back(std::move(p));
  }
  return payloads;
}

TEST(WireTest, PullResponseBytes_ParseAsTheReplyWithThePayloadsFilledIn) {
  std::vector<float> w(70000), b = {-1.5f, 0.0f, 3.25f};
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * i;
  PullResponse response = ReplySkeleton();
  const PullResponse before = response;
  grpc::ByteBuffer bytes = PullResponseBytes(&response, Filled(w, b));
  EXPECT_EQ(response.SerializeAsString(), before.SerializeAsString());

  PullResponse expected = ReplySkeleton();
  EncodeFloat32(w, expected.mutable_dense(0)->mutable_data());
  EncodeFloat32(b, expected.mutable_dense(1)->mutable_data());
  EXPECT_EQ(bytes.Length(), expected.ByteSizeLong());
  EXPECT_EQ(Parse<PullResponse>(&bytes).SerializeAsString(), expected.SerializeAsString());
}

TEST(WireTest, PushPullResponseBytes_PushHeaderThenThePullWithPayloads) {
  std::vector<float> w(70000, -0.75f), b = {1, 2, 3};
  PushPullResponse response;
  response.mutable_push_header()->set_version(11);
  response.mutable_push_header()->set_wait_seconds(0.25);
  *response.mutable_pull() = ReplySkeleton();
  grpc::ByteBuffer bytes = PushPullResponseBytes(&response, Filled(w, b));

  PushPullResponse expected = response;
  EncodeFloat32(w, expected.mutable_pull()->mutable_dense(0)->mutable_data());
  EncodeFloat32(b, expected.mutable_pull()->mutable_dense(1)->mutable_data());
  EXPECT_EQ(bytes.Length(), expected.ByteSizeLong());
  EXPECT_EQ(Parse<PushPullResponse>(&bytes).SerializeAsString(), expected.SerializeAsString());
}

TEST(WireTest, EmptyPayloadsAndNoDenseEntries) {
  PullResponse response;
  response.mutable_header()->set_version(1);
  DenseValues* d = response.add_dense();
  d->mutable_slice()->set_tensor("empty");
  d->set_encoding(FLOAT32);
  std::vector<FloatPayload> payloads;
  payloads.push_back(FloatPayload::Allocate(0));
  grpc::ByteBuffer bytes = PullResponseBytes(&response, std::move(payloads));
  EXPECT_EQ(Parse<PullResponse>(&bytes).SerializeAsString(), response.SerializeAsString());
  PullResponse header_only;
  header_only.mutable_header()->set_round(9);
  grpc::ByteBuffer just_header = PullResponseBytes(&header_only, {});
  EXPECT_EQ(Parse<PullResponse>(&just_header).SerializeAsString(), header_only.SerializeAsString());
}

// A ByteBuffer of `message`'s bytes cut into slices of at most `piece`
// bytes, as gRPC hands over a large reply.
template <typename Message>
grpc::ByteBuffer InPieces(const Message& message, size_t piece) {
  const std::string bytes = message.SerializeAsString();
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < bytes.size(); at += piece) {
    slices.emplace_back(bytes.substr(at, piece));
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

TEST(WireTest, ReadPullResponse_PayloadsLandInPlaceTheRestAsParsed) {
  std::vector<float> w(70000), b = {-1.5f, 0.0f, 3.25f};
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.5f * i - 7.0f;
  PullResponse sent = ReplySkeleton();
  EncodeFloat32(w, sent.mutable_dense(0)->mutable_data());
  EncodeFloat32(b, sent.mutable_dense(1)->mutable_data());
  for (size_t piece : {size_t{7}, size_t{4096}, size_t{1} << 20}) {
    grpc::ByteBuffer bytes = InPieces(sent, piece);
    std::vector<float> w_out(w.size(), 99.0f), b_out(b.size(), 99.0f);
    std::vector<absl::Span<float>> out = {absl::MakeSpan(w_out), absl::MakeSpan(b_out)};
    PullResponse read;
    std::vector<bool> in_place;
    ASSERT_TRUE(ReadPullResponse(&bytes, out, &read, &in_place).ok()) << piece;
    EXPECT_EQ(w_out, w);
    EXPECT_EQ(b_out, b);
    EXPECT_EQ(in_place, std::vector<bool>({true, true}));
    // Everything else as protobuf parses it, the payloads left out.
    PullResponse expected = sent;
    expected.mutable_dense(0)->clear_data();
    expected.mutable_dense(1)->clear_data();
    EXPECT_EQ(read.SerializeAsString(), expected.SerializeAsString());
  }
}

TEST(WireTest, ReadPullResponse_PayloadOfAnotherSizeOrEncodingKeptInTheMessage) {
  PullResponse sent = ReplySkeleton();
  EncodeFloat32(std::vector<float>(5, 1.0f), sent.mutable_dense(0)->mutable_data());  // not 70000
  sent.mutable_dense(1)->set_encoding(FLOAT16);
  sent.mutable_dense(1)->set_data("abcdef");
  DenseValues* extra = sent.add_dense();  // past the spans given
  extra->set_encoding(FLOAT32);
  EncodeFloat32(std::vector<float>{2.0f}, extra->mutable_data());
  grpc::ByteBuffer bytes = InPieces(sent, 64);
  std::vector<float> w_out(70000, 9.0f), b_out(3, 9.0f);
  std::vector<absl::Span<float>> out = {absl::MakeSpan(w_out), absl::MakeSpan(b_out)};
  PullResponse read;
  std::vector<bool> in_place;
  ASSERT_TRUE(ReadPullResponse(&bytes, out, &read, &in_place).ok());
  EXPECT_EQ(in_place, std::vector<bool>({false, false, false}));
  EXPECT_EQ(read.SerializeAsString(), sent.SerializeAsString());
  EXPECT_EQ(w_out, std::vector<float>(70000, 9.0f));  // untouched
  EXPECT_EQ(b_out, std::vector<float>(3, 9.0f));
}

TEST(WireTest, ReadPushPullResponse_ReadsTheServersOwnReplyBytes) {
  std::vector<float> w(70000, -0.75f), b = {1, 2, 3};
  PushPullResponse response;
  response.mutable_push_header()->set_version(11);
  *response.mutable_pull() = ReplySkeleton();
  grpc::ByteBuffer bytes = PushPullResponseBytes(&response, Filled(w, b));
  std::vector<float> w_out(w.size()), b_out(b.size());
  std::vector<absl::Span<float>> out = {absl::MakeSpan(w_out), absl::MakeSpan(b_out)};
  PushPullResponse read;
  std::vector<bool> in_place;
  ASSERT_TRUE(ReadPushPullResponse(&bytes, out, &read, &in_place).ok());
  EXPECT_EQ(w_out, w);
  EXPECT_EQ(b_out, b);
  EXPECT_EQ(in_place, std::vector<bool>({true, true}));
  EXPECT_EQ(read.SerializeAsString(), response.SerializeAsString());
}

// Found by tests/fuzz:reply_fuzzer: a payload claiming 700 MB in a short
// reply made protobuf reserve the 700 MB before finding the bytes missing.
TEST(WireTest, ReadPullResponse_PayloadClaimingMoreThanTheReply_DataLoss) {
  const std::string claim = "\x12\x8a\xce\xe4\xcd\x02\x1a\x80\xce\xe4\xcd\x02\x61\x62\x63";
  grpc::Slice slice(claim);
  grpc::ByteBuffer bytes(&slice, 1);
  std::vector<float> w_out(4);
  std::vector<absl::Span<float>> out = {absl::MakeSpan(w_out)};
  PullResponse read;
  std::vector<bool> in_place;
  EXPECT_EQ(ReadPullResponse(&bytes, out, &read, &in_place).code(), absl::StatusCode::kDataLoss);
}

TEST(WireTest, ReadPullResponse_TruncatedOrGarbage_DataLoss) {
  PullResponse sent = ReplySkeleton();
  EncodeFloat32(std::vector<float>(70000, 1.0f), sent.mutable_dense(0)->mutable_data());
  const std::string whole = sent.SerializeAsString();
  std::vector<float> w_out(70000), b_out(3);
  std::vector<absl::Span<float>> out = {absl::MakeSpan(w_out), absl::MakeSpan(b_out)};
  for (const std::string& bad :
       {whole.substr(0, whole.size() / 2), std::string("\x12\xff\xff\xff\x0f"),
        std::string("\x0a\x05\x08"), std::string(40, '\xff')}) {
    grpc::Slice slice(bad);
    grpc::ByteBuffer bytes(&slice, 1);
    PullResponse read;
    std::vector<bool> in_place;
    EXPECT_EQ(ReadPullResponse(&bytes, out, &read, &in_place).code(), absl::StatusCode::kDataLoss)
        << bad.size();
    grpc::ByteBuffer again(&slice, 1);
    PushPullResponse read_pp;
    EXPECT_EQ(ReadPushPullResponse(&again, out, &read_pp, &in_place).code(),
              absl::StatusCode::kDataLoss);
  }
}

// A PushPullRequest put together from pieces: its push enclosed as field 1
// (a payload of 70,000 floats as a slice of its own: a multi-byte length),
// a varint field, the pull enclosed as field 2.
TEST(WireSlicesTest, PiecesEnclosedAndAppended_ParseAsTheWholeMessage) {
  std::vector<float> w(70000);
  for (size_t i = 0; i < w.size(); ++i) w[i] = 0.25f * i;
  PushRequest push = Skeleton();
  push.clear_dense();
  WireSlices push_bytes = WireSlices::Of(push);
  DenseValues meta;
  meta.mutable_slice()->set_tensor("w");
  meta.mutable_slice()->set_length(w.size());
  meta.set_encoding(FLOAT32);
  WireSlices entry = WireSlices::Of(meta);
  FloatPayload payload = FloatPayload::Allocate(w.size());
  std::copy(w.begin(), w.end(), payload.values.begin());
  entry.Add(LengthDelimitedHead(DenseValues::kDataFieldNumber, payload.slice.size()));
  entry.Add(std::move(payload.slice));
  entry.Enclose(PushRequest::kDenseFieldNumber);
  push_bytes.Append(std::move(entry));
  push_bytes.Enclose(PushPullRequest::kPushFieldNumber);
  PullRequest pull;
  pull.mutable_header()->set_clock(8);
  pull.add_dense()->set_tensor("w");
  WireSlices pull_bytes = WireSlices::Of(pull);
  pull_bytes.Enclose(PushPullRequest::kPullFieldNumber);
  push_bytes.Append(std::move(pull_bytes));

  PushPullRequest expected;
  *expected.mutable_push() = push;
  DenseValues* dense = expected.mutable_push()->add_dense();
  *dense = meta;
  EncodeFloat32(w, dense->mutable_data());
  *expected.mutable_pull() = pull;
  EXPECT_EQ(push_bytes.size(), expected.ByteSizeLong());
  PushPullRequest parsed;
  ASSERT_TRUE(push_bytes.ParseTo(&parsed).ok());
  EXPECT_EQ(parsed.SerializeAsString(), expected.SerializeAsString());
  grpc::ByteBuffer buffer = push_bytes.Buffer();
  EXPECT_EQ(buffer.Length(), expected.ByteSizeLong());
  EXPECT_EQ(Parse<PushPullRequest>(&buffer).SerializeAsString(), expected.SerializeAsString());
}

TEST(WireSlicesTest, VarintFieldPrepended_ParsesAsThatField_TruncatedBytesDataLoss) {
  DenseValues values;
  values.mutable_slice()->set_tensor("w");
  WireSlices bytes = WireSlices::Of(values);
  bytes.Prepend(VarintFieldBytes(DenseValues::kEncodingFieldNumber, FLOAT16));
  DenseValues parsed;
  ASSERT_TRUE(bytes.ParseTo(&parsed).ok());
  EXPECT_EQ(parsed.encoding(), FLOAT16);
  EXPECT_EQ(parsed.slice().tensor(), "w");
  EXPECT_EQ(bytes.size(), parsed.ByteSizeLong());

  WireSlices truncated;
  truncated.Add(LengthDelimitedHead(DenseValues::kSliceFieldNumber, 1000));  // none of the 1000
  EXPECT_TRUE(absl::IsDataLoss(truncated.ParseTo(&parsed)));
}

}  // namespace
}  // namespace fulcrum
