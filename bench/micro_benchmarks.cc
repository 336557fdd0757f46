// Micro benchmarks (Google Benchmark) of Fulcrum's hot loops: payload
// encode/decode, CRC-32C, optimizer updates per element, striped store
// updates from several threads, sparse row lookup and insert.
//
//   bazel run -c opt //bench:micro_benchmarks
#include <memory>
#include <random>
#include <vector>

#include "benchmark/benchmark.h"
#include "common/base/crc32c.h"
#include "common/payload.h"
#include "server/store/optimizer.h"
#include "server/store/parameter_store.h"
#include "server/store/sparse_table.h"
#include "worker/topk.h"

namespace fulcrum {
namespace {

void BM_EncodeFloat32(benchmark::State& state) {
  std::vector<float> values(state.range(0), 1.5f);
  std::string out;
  for (auto _ : state) {
    out.clear();
    EncodeFloat32(values, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * values.size() * 4);
}
BENCHMARK(BM_EncodeFloat32)->Range(256, 1 << 22);

void BM_DecodeFloat32Checked(benchmark::State& state) {
  std::string data;
  EncodeFloat32(std::vector<float>(state.range(0), 1.5f), &data);
  std::vector<float> out(state.range(0));
  for (auto _ : state) {
    benchmark::DoNotOptimize(DecodeFloat32(FLOAT32, data, absl::MakeSpan(out), true));
  }
  state.SetBytesProcessed(state.iterations() * data.size());
}
BENCHMARK(BM_DecodeFloat32Checked)->Range(256, 1 << 22);

// Compressed gradient encodings of the MLP's first layer (200,704 floats):
// bytes/s counts the float32 input. Arg: 0 fp16, 1 int8, 2 top-1% nonzeros.
void BM_EncodeCompressed(benchmark::State& state) {
  const Encoding encoding = state.range(0) == 0   ? FLOAT16
                            : state.range(0) == 1 ? INT8_BLOCK
                                                  : INDEXED_NONZEROS;
  std::vector<float> values(200704);
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (float& v : values) v = normal(rng);
  if (encoding == INDEXED_NONZEROS) {
    for (size_t i = 0; i < values.size(); ++i) {
      if (i % 100 != 0) values[i] = 0;
    }
  }
  std::string out;
  for (auto _ : state) {
    out.clear();
    EncodeValues(encoding, values, &out);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(state.iterations() * values.size() * 4);
  state.counters["wire_bytes"] = out.size();
}
BENCHMARK(BM_EncodeCompressed)->Arg(0)->Arg(1)->Arg(2);

// The worker's top-k selection with error feedback over the MLP's gradient
// (203,530 floats in 4 tensors), keeping 1%.
void BM_TopKSparsify(benchmark::State& state) {
  ParameterBatch grads;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  for (size_t n : {200704, 256, 2560, 10}) {
    grads.tensors.emplace_back();
    grads.dense.emplace_back(n);
  }
  const ParameterBatch fresh = [&] {
    ParameterBatch b = grads;
    for (auto& t : b.dense) {
      for (float& v : t) v = normal(rng);
    }
    return b;
  }();
  TopKSparsifier topk(0.01);
  for (auto _ : state) {
    state.PauseTiming();
    grads = fresh;
    state.ResumeTiming();
    topk.Sparsify(&grads);
    benchmark::DoNotOptimize(grads.dense[0].data());
  }
  state.SetItemsProcessed(state.iterations() * 203530);
}
BENCHMARK(BM_TopKSparsify);

void BM_Crc32c(benchmark::State& state) {
  std::string data(state.range(0), 'x');
  for (auto _ : state) benchmark::DoNotOptimize(Crc32c(data));
  state.SetBytesProcessed(state.iterations() * data.size());
}
BENCHMARK(BM_Crc32c)->Range(4096, 1 << 24);

void OptimizerApply(benchmark::State& state, OptimizerKind kind) {
  OptimizerConfig config;
  config.set_kind(kind);
  std::unique_ptr<Optimizer> opt = *CreateOptimizer(config);
  const size_t n = state.range(0);
  std::vector<float> w(n, 0.1f), g(n, 0.01f);
  std::vector<std::vector<float>> slots(opt->num_slots(), std::vector<float>(n, 0.0f));
  std::vector<float*> ptrs;
  for (auto& s : slots) ptrs.push_back(s.data());
  opt->InitSlots(ptrs, n);
  int64_t step = 0;
  for (auto _ : state) {
    opt->Apply(w.data(), g.data(), ptrs, n, ++step);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * n);
}
void BM_ApplySgd(benchmark::State& s) { OptimizerApply(s, SGD); }
void BM_ApplyAdagrad(benchmark::State& s) { OptimizerApply(s, ADAGRAD); }
void BM_ApplyAdam(benchmark::State& s) { OptimizerApply(s, ADAM); }
void BM_ApplyFtrl(benchmark::State& s) { OptimizerApply(s, FTRL); }
BENCHMARK(BM_ApplySgd)->Arg(1 << 16);
BENCHMARK(BM_ApplyAdagrad)->Arg(1 << 16);
BENCHMARK(BM_ApplyAdam)->Arg(1 << 16);
BENCHMARK(BM_ApplyFtrl)->Arg(1 << 16);

// Threads push 64K-element slices into disjoint stripes of one 1M tensor.
void BM_StoreApplyThreads(benchmark::State& state) {
  static std::unique_ptr<ParameterStore> store;
  constexpr uint64_t kSize = 1 << 20, kSlice = 1 << 16;
  if (state.thread_index() == 0) {
    OptimizerConfig config;
    config.set_kind(SGD);
    TensorSpec spec;
    spec.set_name("w");
    spec.add_shape(kSize);
    ParameterStoreOptions options;
    options.stripe_elements = kSlice;
    store = std::move(*ParameterStore::Create(options, *CreateOptimizer(config), {spec}));
  }
  std::vector<float> grad(kSlice, 0.001f);
  const uint64_t offset = (state.thread_index() * kSlice) % kSize;
  for (auto _ : state) {
    benchmark::DoNotOptimize(store->ApplyGradient({"w", offset, kSlice}, grad));
  }
  state.SetItemsProcessed(state.iterations() * kSlice);
}
BENCHMARK(BM_StoreApplyThreads)->ThreadRange(1, 4)->UseRealTime();

std::unique_ptr<SparseTable> MakeTable(OptimizerKind kind) {
  OptimizerConfig config;
  config.set_kind(kind);
  SparseTableOptions options;
  options.name = "emb";
  options.dim = 8;
  options.max_rows = uint64_t{1} << 30;
  return std::move(*SparseTable::Create(options, *CreateOptimizer(config)));
}

std::vector<uint64_t> RandomKeys(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> keys(n);
  for (uint64_t& k : keys) k = rng();
  return keys;
}

// New rows: each iteration inserts 1024 rows never seen.
void BM_SparseInsert(benchmark::State& state) {
  auto table = MakeTable(ADAGRAD);
  std::vector<float> out(1024 * 8);
  uint64_t seed = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<uint64_t> keys = RandomKeys(1024, ++seed);
    state.ResumeTiming();
    benchmark::DoNotOptimize(table->Pull(keys, absl::MakeSpan(out)));
  }
  state.SetItemsProcessed(state.iterations() * 1024);
}
BENCHMARK(BM_SparseInsert);

// Updates of existing rows (dim 8), K keys a push, FTRL.
void BM_SparsePushFtrl(benchmark::State& state) {
  auto table = MakeTable(FTRL);
  const std::vector<uint64_t> all = RandomKeys(1 << 20, 7);
  std::vector<float> out(all.size() * 8);
  benchmark::DoNotOptimize(table->Pull(all, absl::MakeSpan(out)));
  const size_t k = state.range(0);
  std::vector<float> grads(k * 8, 0.01f);
  std::mt19937_64 rng(1);
  std::vector<uint64_t> keys(k);
  for (auto _ : state) {
    for (uint64_t& key : keys) key = all[rng() % all.size()];
    benchmark::DoNotOptimize(table->Push(keys, grads));
  }
  state.SetItemsProcessed(state.iterations() * k);
}
BENCHMARK(BM_SparsePushFtrl)->Arg(1024)->Arg(16384);

void BM_SparseLookup(benchmark::State& state) {
  auto table = MakeTable(SGD);
  const std::vector<uint64_t> all = RandomKeys(1 << 20, 9);
  std::vector<float> out(all.size() * 8);
  benchmark::DoNotOptimize(table->Pull(all, absl::MakeSpan(out)));
  std::vector<uint64_t> keys(1024);
  std::vector<float> rows(1024 * 8);
  std::mt19937_64 rng(2);
  for (auto _ : state) {
    for (uint64_t& key : keys) key = all[rng() % all.size()];
    benchmark::DoNotOptimize(table->Pull(keys, absl::MakeSpan(rows)));
  }
  state.SetItemsProcessed(state.iterations() * 1024);
}
BENCHMARK(BM_SparseLookup);

}  // namespace
}  // namespace fulcrum

BENCHMARK_MAIN();
