// The workloads of Fulcrum's own `worker` binary: the shipped models,
// written against the public worker API (worker/fulcrum_worker.h) like any
// user's.
#ifndef FULCRUM_WORKER_WORKLOAD_H_
#define FULCRUM_WORKER_WORKLOAD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "common/data/idx_dataset.h"
#include "proto/coordinator.pb.h"
#include "proto/job.pb.h"
#include "worker/fulcrum_worker.h"
#include "worker/model.h"

namespace fulcrum {

// Image classification on Fashion-MNIST-style data (models "softmax" and
// "mlp"). The data sets are not owned; `test` may be null (then it cannot
// evaluate).
std::unique_ptr<Workload> MakeImageWorkload(const ImageDataset* train, const ImageDataset* test,
                                            int64_t eval_chunk = 2000);

// Sparse logistic regression ("sparse_lr") on libsvm files: partitions are
// byte ranges of `train_file`; `test_file` (may be empty: cannot evaluate)
// is read once. Errors reading either name the file.
std::unique_ptr<Workload> MakeSparseLrWorkload(const std::string& train_file,
                                               const std::string& test_file,
                                               int64_t eval_chunk = 10000);

}  // namespace fulcrum

#endif  // FULCRUM_WORKER_WORKLOAD_H_
