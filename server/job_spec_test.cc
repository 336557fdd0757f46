#include "server/job_spec.h"

#include <cstdlib>
#include <fstream>
#include <string>

#include "common/model_spec.h"
#include "gtest/gtest.h"

namespace fulcrum {
namespace {

std::string Write(const std::string& name, const std::string& text) {
  const std::string path = std::string(std::getenv("TEST_TMPDIR")) + "/" + name;
  std::ofstream(path) << text;
  return path;
}

// The message of the error reading `text` as job file `name`.
// The error of reading and completing a job file of `text`.
std::string ErrorOf(const std::string& name, const std::string& text) {
  absl::StatusOr<JobSpec> read = ReadJobFile(Write(name, text));
  absl::Status s = read.ok() ? Job::Complete(*read).status() : read.status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << text;
  return std::string(s.message());
}

TEST(JobSpecTest, TextAndJson_Read) {
  absl::StatusOr<JobSpec> text =
      ReadJobFile(Write("a.textproto",
                        "model: \"m\" mode: SSP staleness: 2\n"
                        "tensors { name: \"w\" shape: [3, 4] initializer: GLOROT_UNIFORM }\n"
                        "sparse_tables { name: \"emb\" dim: 8 }\n"
                        "optimizer { kind: FTRL learning_rate: 0.5 l1: 0.1 }\n"));
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(text->mode(), SSP);
  EXPECT_EQ(ElementCount(text->tensors(0)), 12);
  EXPECT_EQ(text->sparse_tables(0).dim(), 8u);
  EXPECT_EQ(text->optimizer().kind(), FTRL);
  absl::StatusOr<JobSpec> json =
      ReadJobFile(Write("a.json",
                        R"({"model": "m", "tensors": [{"name": "w", "shape": ["3", "4"]}],
                "optimizer": {"kind": "ADAM", "learningRate": 0.001}})"));
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(json->tensors(0).shape(1), 4);
  EXPECT_EQ(json->optimizer().kind(), ADAM);
}

TEST(JobSpecTest, Mistakes_InvalidArgumentNamingTheFileAndField) {
  std::string e = ErrorOf("unknown.textproto", "model: \"m\"\nlerning_rate: 0.1\n");
  EXPECT_NE(e.find("unknown.textproto"), std::string::npos) << e;
  EXPECT_NE(e.find("line 2"), std::string::npos) << e;
  EXPECT_NE(e.find("lerning_rate"), std::string::npos) << e;

  e = ErrorOf("zero.textproto", "tensors { name: \"w\" shape: [3, 0] }");
  EXPECT_NE(e.find("tensors[0].shape[1] is 0"), std::string::npos) << e;

  e = ErrorOf("optimizer.textproto", "optimizer { kind: ADAMW }");
  EXPECT_NE(e.find("ADAMW"), std::string::npos) << e;

  e = ErrorOf("duplicate.textproto",
              "tensors { name: \"w\" shape: [1] }\nsparse_tables { name: \"w\" dim: 2 }");
  EXPECT_NE(e.find("sparse_tables[0].name 'w' is already tensors[0]'s"), std::string::npos) << e;

  e = ErrorOf("noshape.textproto", "tensors { name: \"w\" }");
  EXPECT_NE(e.find("tensors[0].shape is empty"), std::string::npos) << e;

  e = ErrorOf("dim.json", R"({"sparseTables": [{"name": "e"}]})");
  EXPECT_NE(e.find("sparse_tables[0].dim"), std::string::npos) << e;

  // Sizes no machine holds are refused before anything is allocated (and
  // the element count is not computed by overflowing multiplication).
  e = ErrorOf("huge.textproto",
              "tensors { name: \"w\" shape: [4294967296, 4294967296, 4294967296] }");
  EXPECT_NE(e.find("tensors[0].shape: more than 2^40 elements"), std::string::npos) << e;
  e = ErrorOf("wide.textproto", "sparse_tables { name: \"e\" dim: 4000000000 }");
  EXPECT_NE(e.find("sparse_tables[0].dim is 4000000000"), std::string::npos) << e;
  e = ErrorOf("partitions.textproto", "partitions_per_epoch: 4000000000");
  EXPECT_NE(e.find("partitions_per_epoch is 4000000000"), std::string::npos) << e;

  e = ErrorOf("admission.textproto",
              "sparse_tables { name: \"e\" dim: 4 admission { probability: 2 } }");
  EXPECT_NE(e.find("sparse_tables[0].admission.probability is 2"), std::string::npos) << e;
  e = ErrorOf("both.textproto",
              "sparse_tables { name: \"e\" dim: 4 admission { probability: 0.5 min_count: 3 } }");
  EXPECT_NE(e.find("min_count or probability, not both"), std::string::npos) << e;
  e = ErrorOf("bloom.textproto",
              "sparse_tables { name: \"e\" dim: 4 "
              "admission { min_count: 300 counter: COUNTING_BLOOM } }");
  EXPECT_NE(e.find("admission.min_count is 300"), std::string::npos) << e;
  e = ErrorOf("ttl.textproto", "sparse_tables { name: \"e\" dim: 4 eviction { ttl_seconds: -5 } }");
  EXPECT_NE(e.find("sparse_tables[0].eviction.ttl_seconds is -5"), std::string::npos) << e;
  e = ErrorOf("when_full.textproto",
              "sparse_tables { name: \"e\" dim: 4 eviction { when_full: LEAST_RECENT } }");
  EXPECT_NE(e.find("LEAST_RECENT"), std::string::npos) << e;

  e = ErrorOf("unknown.json", R"({"modle": "m"})");
  EXPECT_NE(e.find("modle"), std::string::npos) << e;

  EXPECT_EQ(ReadJobFile("/no/such/job.textproto").status().code(), absl::StatusCode::kNotFound);
}

TEST(JobSpecTest, OptimizerOverrides_ResolvedOverTheJobsOptimizer) {
  absl::StatusOr<JobSpec> read = ReadJobFile(
      Write("overrides.textproto",
            "model: \"m\" optimizer { kind: ADAM learning_rate: 0.001 }\n"
            "tensors { name: \"dense\" shape: [4] }\n"
            "tensors { name: \"slow\" shape: [4] optimizer { learning_rate: 0.0001 } }\n"
            "sparse_tables { name: \"emb\" dim: 8 optimizer { kind: FTRL learning_rate: 0.5 l1: 1 "
            "} }\n"));
  ASSERT_TRUE(read.ok()) << read.status();
  absl::StatusOr<Job> job = Job::Complete(*read);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_FALSE((*job)->tensors(0).has_optimizer());  // the job's
  EXPECT_EQ((*job)->tensors(1).optimizer().kind(), ADAM);
  EXPECT_FLOAT_EQ((*job)->tensors(1).optimizer().learning_rate(), 0.0001f);
  EXPECT_EQ((*job)->sparse_tables(0).optimizer().kind(), FTRL);
  EXPECT_FLOAT_EQ((*job)->sparse_tables(0).optimizer().l1(), 1.0f);
  // Shown at start-up and in status, each with its whole configuration.
  const std::vector<std::string> overrides = job->OptimizerOverrides();
  ASSERT_EQ(overrides.size(), 2u);
  EXPECT_EQ(overrides[0].rfind("slow: adam(", 0), 0u) << overrides[0];
  EXPECT_EQ(overrides[1].rfind("emb: ftrl(", 0), 0u) << overrides[1];
  // Completing it again changes nothing.
  EXPECT_EQ(Job::Complete(job->spec())->spec().SerializeAsString(),
            job->spec().SerializeAsString());

  JobSpec bad = *read;
  bad.mutable_sparse_tables(0)->mutable_optimizer()->set_learning_rate(-1);
  absl::Status s = Job::Complete(bad).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("sparse_tables[0].optimizer"), std::string::npos) << s;
}

TEST(JobSpecTest, UnknownBuiltinJob_NotFoundNamingTheKnownOnes) {
  absl::Status s = BuiltinJob("resnet").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_NE(s.message().find("softmax"), std::string::npos) << s;
}

// A job is what it declares: a built-in model's name brings no tensors
// (only ps_server --model=NAME runs a built-in job), and no name is made up.
TEST(JobSpecTest, JobWithoutTensorsOrTables_InvalidWhateverItsModel) {
  for (const char* model : {"mlp", "empty", ""}) {
    JobSpec spec;
    spec.set_model(model);
    absl::Status s = Job::Complete(spec).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << model;
    EXPECT_NE(s.message().find("declares no tensors and no sparse tables"), std::string::npos) << s;
  }
  JobSpec unnamed;
  *unnamed.add_tensors() = *ModelTensors("softmax")->begin();
  absl::StatusOr<Job> job = Job::Complete(unnamed);
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ((*job)->model(), "");
  EXPECT_EQ((*job)->mode(), SYNC);
  EXPECT_EQ((*job)->partitions_per_epoch(), 4u);
}

TEST(JobSpecTest, TopkRatioOutOfRange_InvalidArgumentNamingIt) {
  JobSpec spec = *BuiltinJob("softmax");
  spec.set_gradient_encoding(INDEXED_NONZEROS);
  spec.set_topk_ratio(1.5f);
  absl::Status s = Job::Complete(spec).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("topk_ratio"), std::string::npos) << s;
}

// The job files shipped for the built-in models hold exactly the tensors
// and tables their workers compute with.
TEST(JobSpecTest, ShippedJobFiles_MatchTheBuiltInModels) {
  for (const char* model : {"softmax", "mlp", "sparse_lr"}) {
    absl::StatusOr<JobSpec> job = ReadJobFile(absl::StrCat("server/jobs/", model, ".textproto"));
    ASSERT_TRUE(job.ok()) << job.status();
    // The binary carries the same file (--model=NAME).
    absl::StatusOr<JobSpec> builtin = BuiltinJob(model);
    ASSERT_TRUE(builtin.ok()) << builtin.status();
    EXPECT_EQ(builtin->SerializeAsString(), job->SerializeAsString()) << model;
    EXPECT_EQ(job->model(), model);
    const std::vector<TensorSpec> tensors = *ModelTensors(model);
    ASSERT_EQ(job->tensors_size(), static_cast<int>(tensors.size())) << model;
    for (size_t i = 0; i < tensors.size(); ++i) {
      EXPECT_EQ(job->tensors(i).SerializeAsString(), tensors[i].SerializeAsString())
          << model << " " << tensors[i].name();
    }
    const std::vector<SparseTableSpec> tables = ModelSparseTables(model);
    ASSERT_EQ(job->sparse_tables_size(), static_cast<int>(tables.size())) << model;
    for (size_t i = 0; i < tables.size(); ++i) {
      // The model fixes a table's name, width and start; the file may add
      // the life of its features.
      SparseTableSpec shipped = job->sparse_tables(i);
      shipped.clear_admission();
      shipped.clear_eviction();
      EXPECT_EQ(shipped.SerializeAsString(), tables[i].SerializeAsString()) << model;
    }
  }
}

}  // namespace
}  // namespace fulcrum
