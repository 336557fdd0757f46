// Image classification: the softmax and MLP models on IDX image data.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/base/status_macros.h"
#include "common/model_spec.h"
#include "worker/workload.h"

namespace fulcrum {
namespace {

class ImageWorkload final : public Workload {
 public:
  ImageWorkload(const ImageDataset* train, const ImageDataset* test, int64_t eval_chunk)
      : train_(train), test_(test), eval_chunk_(eval_chunk) {}

  absl::Status Configure(const JobSpec& job) override {
    if (model_ == nullptr || job.model() != model_name_) {
      FULCRUM_ASSIGN_OR_RETURN(model_, CreateModel(job.model()));
      model_name_ = job.model();
    }
    const int64_t features = model_->tensors().front().shape(0);
    for (const ImageDataset* data : {train_, test_}) {
      if (data == nullptr) continue;
      if (data->num_features != features) {
        return absl::FailedPreconditionError(absl::StrCat("data has ", data->num_features,
                                                          " features per example; model ",
                                                          job.model(), " expects ", features));
      }
      for (uint8_t label : data->labels) {
        if (label >= kImageClasses) {
          return absl::FailedPreconditionError(absl::StrCat(
              "label ", int{label}, " is out of range for ", kImageClasses, " classes"));
        }
      }
    }
    return absl::OkStatus();
  }

  absl::StatusOr<int64_t> LoadPartition(const DataPartition& p) override {
    if (p.count() == 0 || p.index() >= p.count()) {
      return absl::InternalError("coordinator sent an invalid partition");
    }
    const int64_t n = train_->num_examples;
    begin_ = int64_t{p.index()} * n / p.count();
    return int64_t{p.index() + 1} * n / p.count() - begin_;
  }

  void PlanStep(absl::Span<const int64_t>, ParameterBatch* batch) override {
    batch->tensors = model_->tensors();
    batch->sparse.clear();
  }

  absl::StatusOr<double> ComputeGradients(absl::Span<const int64_t> examples,
                                          const ParameterBatch& params,
                                          ParameterBatch* grads) override {
    const int64_t d = train_->num_features;
    features_.resize(examples.size() * d);
    labels_.resize(examples.size());
    for (size_t i = 0; i < examples.size(); ++i) {
      const int64_t example = begin_ + examples[i];
      std::copy_n(&train_->features[example * d], d, &features_[i * d]);
      labels_[i] = train_->labels[example];
    }
    Batch batch{features_.data(), labels_.data(), static_cast<int64_t>(examples.size()), d};
    grads->tensors = params.tensors;
    grads->sparse.clear();
    return model_->ComputeGradients(params.dense, batch, &grads->dense);
  }

  absl::StatusOr<EvalResult> Evaluate(const PullFn& pull) override {
    if (test_ == nullptr || test_->num_examples == 0) {
      // Not FAILED_PRECONDITION: that code means "the coordinator evicted us".
      return absl::UnimplementedError("asked to evaluate, but this worker has no test data");
    }
    ParameterBatch params;
    params.tensors = model_->tensors();
    FULCRUM_RETURN_IF_ERROR(pull(&params));
    int64_t correct = 0;
    double loss_sum = 0;
    for (int64_t begin = 0; begin < test_->num_examples; begin += eval_chunk_) {
      Batch batch;
      batch.size = std::min(eval_chunk_, test_->num_examples - begin);
      batch.num_features = test_->num_features;
      batch.features = &test_->features[begin * test_->num_features];
      batch.labels = &test_->labels[begin];
      model_->Evaluate(params.dense, batch, &correct, &loss_sum);
    }
    EvalResult eval;
    eval.set_examples(test_->num_examples);
    eval.set_test_accuracy(double(correct) / test_->num_examples);
    eval.set_test_loss(loss_sum / test_->num_examples);
    return eval;
  }

 private:
  const ImageDataset* const train_;
  const ImageDataset* const test_;
  const int64_t eval_chunk_;
  std::unique_ptr<Model> model_;
  std::string model_name_;
  int64_t begin_ = 0;
  std::vector<float> features_;
  std::vector<uint8_t> labels_;
};

}  // namespace

std::unique_ptr<Workload> MakeImageWorkload(const ImageDataset* train, const ImageDataset* test,
                                            int64_t eval_chunk) {
  return std::make_unique<ImageWorkload>(train, test, eval_chunk);
}

}  // namespace fulcrum
