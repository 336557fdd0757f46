// The job definition (JobSpec, proto/job.proto): reading it from a file,
// checking it, and completing it once into the Job every part of the server
// runs.
#ifndef FULCRUM_SERVER_JOB_SPEC_H_
#define FULCRUM_SERVER_JOB_SPEC_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/job.pb.h"

namespace fulcrum {

// Reads a JobSpec from `path`: protobuf text format, or protobuf's JSON
// mapping when the name ends in ".json". INVALID_ARGUMENT naming the file and
// the field (with the line and column in text format) for an unknown field, a
// malformed value or an unknown enum name; the read error (naming the file)
// if it cannot be read. What the fields say is checked by Job::Complete.
absl::StatusOr<JobSpec> ReadJobFile(const std::string& path);

// The job file shipped for built-in model `name` (server/jobs/NAME.textproto,
// built into the binary: softmax, mlp, sparse_lr, bench, bench_1m,
// bench_100m); NOT_FOUND naming the known ones otherwise.
absl::StatusOr<JobSpec> BuiltinJob(const std::string& name);

// A job as the server runs it: complete (the documented defaults filled in,
// each tensor's and table's optimizer override resolved into a whole
// configuration) and checked, once, by Complete; immutable after, and
// cheap to copy (copies share one JobSpec). A default-constructed Job is no
// job: a shard that takes the job from its coordinator starts with it.
// Thread-safe.
class Job {
 public:
  Job() = default;

  // Fills the unset fields of `spec` with their defaults: mode SYNC,
  // optimizer ADAM, batch_size 64, epochs 1, num_workers 1,
  // partitions_per_epoch 4 * num_workers (the model name stays as given:
  // it is for workers that pick a workload by it). INVALID_ARGUMENT naming
  // the first field that is wrong: a job of no tensors and no tables; a
  // tensor or table without a name, a name used twice (tensors and tables
  // share one space), a tensor without a shape, with a dimension that is
  // not positive or more than 2^40 elements, a table of dimension 0 or over
  // 65536, more than 2^20 partitions per epoch (bounds that keep a file
  // from asking for memory no machine has); a top-k ratio outside (0, 1];
  // an optimizer setting out of range. Completing a complete job changes
  // nothing.
  static absl::StatusOr<Job> Complete(JobSpec spec);

  bool empty() const { return spec_ == nullptr; }
  // The complete spec (an empty JobSpec for no job).
  const JobSpec& spec() const;
  const JobSpec* operator->() const { return &spec(); }
  // "name: optimizer" for each tensor and table with an optimizer of its
  // own, in the job's order (for start-up lines and status).
  std::vector<std::string> OptimizerOverrides() const;

 private:
  std::shared_ptr<const JobSpec> spec_;
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_JOB_SPEC_H_
