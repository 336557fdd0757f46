#include "common/data/auc.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

TEST(AucTest, KnownValues) {
  EXPECT_DOUBLE_EQ(*Auc(std::vector<double>{0.1, 0.2, 0.8, 0.9}, std::vector<uint8_t>{0, 0, 1, 1}),
                   1.0);
  EXPECT_DOUBLE_EQ(*Auc(std::vector<double>{0.9, 0.8, 0.2, 0.1}, std::vector<uint8_t>{0, 0, 1, 1}),
                   0.0);
  // One of four positive-negative pairs misordered: 0.75.
  EXPECT_DOUBLE_EQ(*Auc(std::vector<double>{0.1, 0.5, 0.4, 0.9}, std::vector<uint8_t>{0, 0, 1, 1}),
                   0.75);
  // All tied: 0.5.
  EXPECT_DOUBLE_EQ(*Auc(std::vector<double>{1, 1, 1}, std::vector<uint8_t>{0, 1, 1}), 0.5);
  EXPECT_EQ(Auc(std::vector<double>{1, 2}, std::vector<uint8_t>{1, 1}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AucTest, NonFiniteScores_AreRefusedNotLoopedOn) {
  for (double bad : {std::nan(""), std::numeric_limits<double>::infinity()}) {
    absl::StatusOr<double> auc =
        Auc(std::vector<double>{0.1, bad, 0.3}, std::vector<uint8_t>{0, 1, 1});
    ASSERT_FALSE(auc.ok());
    EXPECT_EQ(auc.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(auc.status().message().find("score 1 is"), absl::string_view::npos) << auc.status();
  }
}

}  // namespace
}  // namespace fulcrum
