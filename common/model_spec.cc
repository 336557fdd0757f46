#include "common/model_spec.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace fulcrum {
namespace {

TensorSpec Spec(absl::string_view name, std::vector<int64_t> shape, InitializerKind initializer) {
  TensorSpec spec;
  spec.set_name(std::string(name));
  for (int64_t d : shape) spec.add_shape(d);
  spec.set_initializer(initializer);
  return spec;
}

}  // namespace

absl::StatusOr<std::vector<TensorSpec>> ModelTensors(absl::string_view model) {
  if (model == "softmax") {
    return std::vector<TensorSpec>{
        Spec("softmax/w", {kImageFeatures, kImageClasses}, GLOROT_UNIFORM),
        Spec("softmax/b", {kImageClasses}, ZEROS),
    };
  }
  if (model == "mlp") {
    return std::vector<TensorSpec>{
        Spec("mlp/w1", {kImageFeatures, kMlpHidden}, GLOROT_UNIFORM),
        Spec("mlp/b1", {kMlpHidden}, ZEROS),
        Spec("mlp/w2", {kMlpHidden, kImageClasses}, GLOROT_UNIFORM),
        Spec("mlp/b2", {kImageClasses}, ZEROS),
    };
  }
  if (model == "sparse_lr") {
    return std::vector<TensorSpec>{Spec("lr/bias", {1}, ZEROS)};
  }
  if (model == "bench") {  // for bench/pushpull: 16 MiB of float32
    return std::vector<TensorSpec>{Spec("bench/w", {1 << 22}, ZEROS)};
  }
  if (model == "bench_1m") {  // for bench/many_workers: 1M float32
    return std::vector<TensorSpec>{Spec("bench/w1m", {1 << 20}, ZEROS)};
  }
  if (model == "bench_100m") {  // for bench/memory: 100M float32
    return std::vector<TensorSpec>{Spec("bench/w100m", {100000000}, ZEROS)};
  }
  return absl::NotFoundError(
      absl::StrCat("unknown model '", model, "'; known: softmax, mlp, sparse_lr"));
}

std::vector<SparseTableSpec> ModelSparseTables(absl::string_view model) {
  if (model == "bench") {
    SparseTableSpec emb;
    emb.set_name("bench/emb");
    emb.set_dim(8);
    return {emb};
  }
  if (model != "sparse_lr") return {};
  SparseTableSpec w;
  w.set_name("lr/w");
  w.set_dim(1);
  w.set_initializer(ZEROS);
  return {w};
}

std::string ConsistencyModeName(ConsistencyMode mode) {
  switch (mode) {
    case SYNC:
      return "sync";
    case ASYNC:
      return "async";
    case SSP:
      return "ssp";
    default:
      return "unspecified";
  }
}

absl::StatusOr<Consistency> ParseConsistency(absl::string_view text) {
  if (text == "sync") return Consistency{SYNC, 0};
  if (text == "async") return Consistency{ASYNC, 0};
  uint32_t staleness = 0;
  if (absl::ConsumePrefix(&text, "ssp:") && absl::SimpleAtoi(text, &staleness) &&
      staleness <= 1000000) {
    return Consistency{SSP, staleness};
  }
  return absl::InvalidArgumentError(
      "unknown consistency mode; expected sync, async or ssp:S (S a "
      "non-negative number of clocks)");
}

int64_t ElementCount(const TensorSpec& spec) {
  if (spec.shape_size() == 0) return 0;
  int64_t n = 1;
  for (int64_t d : spec.shape()) n *= d;
  return n;
}

}  // namespace fulcrum
