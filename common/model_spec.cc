#include "common/model_spec.h"

#include "absl/strings/str_cat.h"

namespace fulcrum {
namespace {

TensorSpec Spec(absl::string_view name, std::vector<int64_t> shape,
                InitializerKind initializer) {
  TensorSpec spec;
  spec.set_name(std::string(name));
  for (int64_t d : shape) spec.add_shape(d);
  spec.set_initializer(initializer);
  return spec;
}

}  // namespace

absl::StatusOr<std::vector<TensorSpec>> ModelTensors(absl::string_view model) {
  if (model == "softmax") {
    return std::vector<TensorSpec>{
        Spec("softmax/w", {kImageFeatures, kImageClasses}, GLOROT_UNIFORM),
        Spec("softmax/b", {kImageClasses}, ZEROS),
    };
  }
  if (model == "mlp") {
    return std::vector<TensorSpec>{
        Spec("mlp/w1", {kImageFeatures, kMlpHidden}, GLOROT_UNIFORM),
        Spec("mlp/b1", {kMlpHidden}, ZEROS),
        Spec("mlp/w2", {kMlpHidden, kImageClasses}, GLOROT_UNIFORM),
        Spec("mlp/b2", {kImageClasses}, ZEROS),
    };
  }
  return absl::NotFoundError(
      absl::StrCat("unknown model '", model, "'; known: softmax, mlp"));
}

int64_t ElementCount(const TensorSpec& spec) {
  if (spec.shape_size() == 0) return 0;
  int64_t n = 1;
  for (int64_t d : spec.shape()) n *= d;
  return n;
}

}  // namespace fulcrum
