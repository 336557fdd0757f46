#include "server/job_spec.h"

#include <cmath>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/file_system.h"
#include "common/base/status_macros.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/json_util.h"
#include "server/builtin_jobs_data.h"
#include "server/store/optimizer.h"

namespace fulcrum {
namespace {

// Keeps the first error of a text-format parse, with its position.
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (error_.empty())
      error_ = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ", message);
  }
  void AddWarning(int, google::protobuf::io::ColumnNumber, const std::string&) override {}
  const std::string& error() const { return error_; }

 private:
  std::string error_;
};

// Parses a JobSpec in text format; the error is the first one, with its line
// and column.
absl::StatusOr<JobSpec> ParseJobText(const std::string& text) {
  JobSpec job;
  FirstError errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(text, &job)) return absl::InvalidArgumentError(errors.error());
  return job;
}

// Upper bounds that keep a job file from asking for memory no machine has
// (the checks run before anything is allocated).
constexpr int64_t kMaxTensorElements = int64_t{1} << 40;
constexpr uint32_t kMaxTableDim = 1 << 16;
constexpr uint32_t kMaxPartitionsPerEpoch = 1 << 20;

// A sparse table's admission and eviction, as the job file gives them.
absl::Status ValidateLifecycle(const SparseTableSpec& t, const std::string& field) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".", what, " ('", t.name(), "')"));
  };
  const FeatureAdmission& a = t.admission();
  if (!(a.probability() >= 0 && a.probability() <= 1)) {
    return bad(
        absl::StrCat("admission.probability is ", a.probability(), ": it must be in (0, 1]"));
  }
  if (a.probability() > 0 && a.min_count() > 1) {
    return bad("admission: give min_count or probability, not both");
  }
  if (a.counter() == FeatureAdmission::COUNTING_BLOOM) {
    if (a.min_count() > 255) {
      return bad(absl::StrCat("admission.min_count is ", a.min_count(),
                              ": a COUNTING_BLOOM counts to 255"));
    }
    if (a.bloom_hashes() > 16) return bad("admission.bloom_hashes must be at most 16");
    if (a.bloom_cells() > (uint64_t{1} << 34)) {
      return bad("admission.bloom_cells must be at most 2^34 (16 GiB)");
    }
  }
  if (a.max_counters() > (uint64_t{1} << 32)) return bad("admission.max_counters is over 2^32");
  const FeatureEviction& e = t.eviction();
  if (!(e.ttl_seconds() >= 0) || !std::isfinite(e.ttl_seconds())) {
    return bad(absl::StrCat("eviction.ttl_seconds is ", e.ttl_seconds(),
                            ": it must be a non-negative number"));
  }
  return absl::OkStatus();
}

// INVALID_ARGUMENT naming the first field that is wrong (Job::Complete
// lists the checks).
absl::Status ValidateJobSpec(const JobSpec& job) {
  absl::flat_hash_map<std::string, std::string> names;  // name -> the field that has it
  auto claim = [&](const std::string& name, const std::string& field) -> absl::Status {
    if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".name is empty"));
    auto [it, added] = names.emplace(name, field);
    if (!added) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name '", name, "' is already ", it->second, "'s"));
    }
    return absl::OkStatus();
  };
  for (int i = 0; i < job.tensors_size(); ++i) {
    const TensorSpec& t = job.tensors(i);
    const std::string field = absl::StrCat("tensors[", i, "]");
    FULCRUM_RETURN_IF_ERROR(claim(t.name(), field));
    if (t.shape().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".shape is empty ('", t.name(), "')"));
    }
    int64_t elements = 1;
    for (int d = 0; d < t.shape_size(); ++d) {
      if (t.shape(d) <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(field, ".shape[", d, "] is ", t.shape(d),
                                                       ": every dimension must be positive ('",
                                                       t.name(), "')"));
      }
      // Checked before multiplying: the product must not overflow.
      if (t.shape(d) > kMaxTensorElements / elements) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".shape: more than 2^40 elements ('", t.name(), "')"));
      }
      elements *= t.shape(d);
    }
  }
  for (int i = 0; i < job.sparse_tables_size(); ++i) {
    const SparseTableSpec& t = job.sparse_tables(i);
    const std::string field = absl::StrCat("sparse_tables[", i, "]");
    FULCRUM_RETURN_IF_ERROR(claim(t.name(), field));
    if (t.dim() == 0 || t.dim() > kMaxTableDim) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".dim is ", t.dim(), ": it must be in [1, 65536] ('", t.name(), "')"));
    }
    FULCRUM_RETURN_IF_ERROR(ValidateLifecycle(t, field));
  }
  if (job.partitions_per_epoch() > kMaxPartitionsPerEpoch) {
    return absl::InvalidArgumentError(absl::StrCat(
        "partitions_per_epoch is ", job.partitions_per_epoch(), ": at most 2^20 (1048576)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobSpec> ReadJobFile(const std::string& path) {
  FULCRUM_ASSIGN_OR_RETURN(const std::string text, PosixFileSystem()->ReadFile(path));
  JobSpec job;
  if (absl::EndsWith(path, ".json")) {
    google::protobuf::util::JsonParseOptions options;
    options.ignore_unknown_fields = false;
    const auto parsed = google::protobuf::util::JsonStringToMessage(text, &job, options);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.ToString()));
    }
  } else {
    absl::StatusOr<JobSpec> parsed = ParseJobText(text);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
    }
    job = *std::move(parsed);
  }
  return job;
}

absl::StatusOr<JobSpec> BuiltinJob(const std::string& name) {
  std::vector<std::string> known;
  for (const BuiltinJobText* job = kBuiltinJobTexts; job->name != nullptr; ++job) {
    known.push_back(job->name);
    if (name != job->name) continue;
    absl::StatusOr<JobSpec> spec = ParseJobText(job->text);
    if (!spec.ok()) {
      return absl::InternalError(
          absl::StrCat("built-in job ", name, ": ", spec.status().message()));
    }
    return spec;
  }
  return absl::NotFoundError(
      absl::StrCat("unknown model '", name, "'; known: ", absl::StrJoin(known, ", ")));
}

absl::StatusOr<Job> Job::Complete(JobSpec spec) {
  JobSpec* job = &spec;
  if (job->mode() == CONSISTENCY_UNSPECIFIED) job->set_mode(SYNC);
  if (job->optimizer().kind() == OPTIMIZER_UNSPECIFIED) {
    job->mutable_optimizer()->set_kind(ADAM);
  }
  if (job->batch_size() == 0) job->set_batch_size(64);
  if (job->epochs() == 0) job->set_epochs(1);
  if (job->num_workers() == 0) job->set_num_workers(1);
  if (job->partitions_per_epoch() == 0) {
    job->set_partitions_per_epoch(4 * job->num_workers());
  }
  FULCRUM_RETURN_IF_ERROR(ValidateJobSpec(*job));
  if (job->tensors().empty() && job->sparse_tables().empty()) {
    return absl::InvalidArgumentError(
        "the job declares no tensors and no sparse tables (a job file lists them; "
        "ps_server --model=NAME runs a built-in job)");
  }
  if (job->gradient_encoding() == INDEXED_NONZEROS &&
      !(job->topk_ratio() > 0 && job->topk_ratio() <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("topk_ratio (--topk_ratio) must be in (0, 1], not ", job->topk_ratio()));
  }
  // Validates the optimizer settings, then resolves every override into the
  // whole configuration its tensor or table is updated with.
  FULCRUM_RETURN_IF_ERROR(CreateOptimizer(job->optimizer()).status());
  auto resolve = [&](OptimizerConfig* own, const std::string& field) -> absl::Status {
    OptimizerConfig resolved = job->optimizer();
    resolved.MergeFrom(*own);  // the override's non-zero fields win
    if (absl::Status s = CreateOptimizer(resolved).status(); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".optimizer: ", s.message()));
    }
    *own = resolved;
    return absl::OkStatus();
  };
  for (int i = 0; i < job->tensors_size(); ++i) {
    if (!job->tensors(i).has_optimizer()) continue;
    FULCRUM_RETURN_IF_ERROR(
        resolve(job->mutable_tensors(i)->mutable_optimizer(), absl::StrCat("tensors[", i, "]")));
  }
  for (int i = 0; i < job->sparse_tables_size(); ++i) {
    if (!job->sparse_tables(i).has_optimizer()) continue;
    FULCRUM_RETURN_IF_ERROR(resolve(job->mutable_sparse_tables(i)->mutable_optimizer(),
                                    absl::StrCat("sparse_tables[", i, "]")));
  }
  Job complete;
  complete.spec_ = std::make_shared<const JobSpec>(std::move(spec));
  return complete;
}

const JobSpec& Job::spec() const {
  static const JobSpec* const kNoJob = new JobSpec();
  return spec_ != nullptr ? *spec_ : *kNoJob;
}

std::vector<std::string> Job::OptimizerOverrides() const {
  std::vector<std::string> overrides;
  auto describe = [&](const std::string& name, const OptimizerConfig& config) {
    absl::StatusOr<std::unique_ptr<Optimizer>> optimizer = CreateOptimizer(config);
    // Complete checked every override.
    overrides.push_back(
        absl::StrCat(name, ": ", optimizer.ok() ? (*optimizer)->Describe() : "invalid"));
  };
  for (const TensorSpec& t : spec().tensors()) {
    if (t.has_optimizer()) describe(t.name(), t.optimizer());
  }
  for (const SparseTableSpec& t : spec().sparse_tables()) {
    if (t.has_optimizer()) describe(t.name(), t.optimizer());
  }
  return overrides;
}

}  // namespace fulcrum
