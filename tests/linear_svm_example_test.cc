// The example model that Fulcrum does not ship (worker/examples/linear_svm,
// built against the public worker header only) trains end to end (generated
// click data, a ps_server started with the example's job file, two example
// workers) and reaches what liblinear (Debian's liblinear-tools), solving
// the same L2-regularised L1-loss SVM with the same C, reaches on the same
// split.
#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/cluster.h"
#include "tests/subprocess.h"

namespace fulcrum {
namespace {

constexpr double kC = 0.01;  // the workers' --c default

// The share of the larger class in a libsvm file: what always answering it
// scores.
double MajorityRate(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  int64_t positive = 0;
  int64_t all = 0;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    ++all;
    positive += line[0] == '1';
  }
  return all == 0 ? 1.0 : std::max(positive, all - positive) / static_cast<double>(all);
}

// gen_click_data's files as liblinear reads them: labels -1/+1 and feature
// ids from 1 (liblinear refuses id 0).
absl::Status ToLiblinear(const std::string& in_path, const std::string& out_path) {
  std::ifstream in(in_path);
  std::ofstream out(out_path);
  if (!in || !out) return absl::NotFoundError("cannot convert " + in_path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ' ', absl::SkipEmpty());
    out << (fields[0] == "1" ? "+1" : "-1");
    for (size_t i = 1; i < fields.size(); ++i) {
      std::vector<absl::string_view> kv = absl::StrSplit(fields[i], ':');
      uint64_t id = 0;
      if (kv.size() != 2 || !absl::SimpleAtoi(kv[0], &id)) {
        return absl::InvalidArgumentError(absl::StrCat("bad feature in ", in_path, ": ", line));
      }
      out << ' ' << id + 1 << ':' << kv[1];
    }
    out << '\n';
  }
  return out.good() ? absl::OkStatus() : absl::DataLossError("cannot write " + out_path);
}

// liblinear's test accuracy: -s 3 (L2-regularised L1-loss SVC, dual), -B 1
// (a bias feature), the same C.
absl::StatusOr<double> LiblinearAccuracy(const std::string& data) {
  for (const char* tool : {"/usr/bin/liblinear-train", "/usr/bin/liblinear-predict"}) {
    if (!std::ifstream(tool)) {
      return absl::FailedPreconditionError(
          absl::StrCat(tool, " is missing: tools/install_deps.sh installs liblinear-tools"));
    }
  }
  for (const char* part : {"train", "test"}) {
    absl::Status converted =
        ToLiblinear(absl::StrCat(data, "/", part, ".libsvm"), absl::StrCat(data, "/", part, ".ll"));
    if (!converted.ok()) return converted;
  }
  absl::StatusOr<std::string> trained =
      RunToCompletion({"/usr/bin/liblinear-train", "-q", "-s", "3", "-c", absl::StrCat(kC), "-B",
                       "1", data + "/train.ll", data + "/ll.model"},
                      data + "/ll.train", absl::Minutes(5));
  if (!trained.ok()) return trained.status();
  absl::StatusOr<std::string> predicted =
      RunToCompletion({"/usr/bin/liblinear-predict", data + "/test.ll", data + "/ll.model",
                       data + "/ll.predictions"},
                      data + "/ll.predict", absl::Minutes(5));
  if (!predicted.ok()) return predicted.status();
  // "Accuracy = 88.45% (17690/20000)"
  const std::string& out = *predicted;
  const size_t at = out.find("Accuracy = ");
  double percent = 0;
  if (at == std::string::npos ||
      !absl::SimpleAtod(out.substr(at + 11, out.find('%', at) - at - 11), &percent)) {
    return absl::InternalError("no accuracy in liblinear-predict's output: " + out);
  }
  return percent / 100;
}

TEST(LinearSvmExampleTest, TwoExampleWorkers_ReachLiblinearsAccuracyWithTheSameC) {
  LocalCluster c("linear_svm");
  const std::string data = c.dir() + "/data";
  absl::Status generated =
      GenerateClickData(data, {"--train_examples=60000", "--test_examples=20000", "--seed=3"});
  ASSERT_TRUE(generated.ok()) << generated;
  const double majority = MajorityRate(data + "/test.libsvm");
  absl::StatusOr<double> oracle = LiblinearAccuracy(data);
  ASSERT_TRUE(oracle.ok()) << oracle.status();

  absl::StatusOr<std::string> out =
      c.RunJob("worker/examples/linear_svm/linear_svm.textproto", {},
               "worker/examples/linear_svm/linear_svm_worker",
               {"--train_file=" + data + "/train.libsvm", "--test_file=" + data + "/test.libsvm"},
               2, absl::Minutes(3));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_NE(out->find("model=linear_svm"), std::string::npos) << *out;
  const double accuracy = ResultAccuracy(*out);
  std::printf("linear_svm: test_accuracy=%.4f liblinear=%.4f majority=%.4f\n", accuracy, *oracle,
              majority);
  EXPECT_GT(*oracle, majority + 0.02);  // the data has something to learn
  EXPECT_GE(accuracy, *oracle - 0.005) << *out;
}

}  // namespace
}  // namespace fulcrum
