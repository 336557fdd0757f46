// ExampleOrder (worker/fulcrum_worker.h): the one definition of the order a
// partition is trained in, shared by RunWorker, Session loops and Python.
#include <algorithm>
#include <numeric>
#include <random>

#include "worker/fulcrum_worker.h"

namespace fulcrum {

std::vector<int64_t> ExampleOrder(const JobSpec& job, const DataPartition& partition,
                                  int64_t num_examples) {
  std::vector<int64_t> order(std::max<int64_t>(0, num_examples));
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(job.seed() * 1000003 + partition.epoch() * 7919 + partition.index());
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

}  // namespace fulcrum
