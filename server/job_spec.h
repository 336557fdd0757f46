// The job definition (JobSpec, proto/job.proto): reading it from a file,
// checking it, and filling its defaults.
#ifndef FULCRUM_SERVER_JOB_SPEC_H_
#define FULCRUM_SERVER_JOB_SPEC_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/job.pb.h"

namespace fulcrum {

// Reads a JobSpec from `path`: protobuf text format, or protobuf's JSON
// mapping when the name ends in ".json". INVALID_ARGUMENT naming the file and
// the field (with the line and column in text format) for an unknown field, a
// malformed value, an unknown enum name, or anything ValidateJobSpec refuses;
// the read error (naming the file) if it cannot be read.
absl::StatusOr<JobSpec> ReadJobFile(const std::string& path);

// The job file shipped for built-in model `name` (server/jobs/NAME.textproto,
// built into the binary: softmax, mlp, sparse_lr, bench, bench_1m,
// bench_100m); NOT_FOUND naming the known ones otherwise.
absl::StatusOr<JobSpec> BuiltinJob(const std::string& name);

// INVALID_ARGUMENT naming the first field that is wrong: a tensor or table
// without a name, a name used twice (tensors and tables share one space), a
// tensor without a shape, with a dimension that is not positive or more than
// 2^40 elements, a table of dimension 0 or over 65536, more than 2^20
// partitions per epoch (bounds that keep a file from asking for memory no
// machine has).
absl::Status ValidateJobSpec(const JobSpec& job);

// Fills unset fields of `job` with the documented defaults and, when it
// declares no dense tensors and its model names a built-in job (BuiltinJob),
// that job's tensors (and its tables, if `job` has none; a job of neither is
// NOT_FOUND); resolves each
// tensor's and table's optimizer override into a whole configuration (the
// job's, with the override's non-zero fields over it).
// INVALID_ARGUMENT/NOT_FOUND for a bad model or settings (naming the field).
absl::Status CompleteJobSpec(JobSpec* job);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_JOB_SPEC_H_
