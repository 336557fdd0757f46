// What one step of a worker reads and writes: whole dense tensors and sparse
// rows (ParameterBatch). The vocabulary both levels of the worker library
// share — the public header (worker/fulcrum_worker.h) and the parts under it
// (the PS client, the models, top-k compression) — so it is a leaf: it
// includes nothing of the library.
#ifndef FULCRUM_WORKER_PARAMETER_BATCH_H_
#define FULCRUM_WORKER_PARAMETER_BATCH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "proto/job.pb.h"

namespace fulcrum {

// One float vector per dense tensor, each holding the tensor's elements
// row-major.
using ParameterSet = std::vector<std::vector<float>>;

// Rows of a sparse table, by key (keys need not be unique).
struct SparseRows {
  std::string table;
  uint32_t dim = 0;
  std::vector<uint64_t> keys;
  std::vector<float> values;  // keys.size() * dim: rows (pull) or gradients (push)
  // Pull only: do not create missing rows (read their initial values).
  bool read_only = false;
};

// What a Workload's step reads or writes: whole dense tensors and sparse
// rows. Owned by the library; the workload fills `tensors` and the keys.
struct ParameterBatch {
  // Dense tensors, whole, in the order of `tensors`; `dense[i]` holds
  // tensors[i]'s values (pull) or gradient (push).
  std::vector<TensorSpec> tensors;
  ParameterSet dense;
  std::vector<SparseRows> sparse;
};

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_PARAMETER_BATCH_H_
