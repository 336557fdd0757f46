#include "server/server_options.h"

#include <functional>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace fulcrum {
namespace {

TEST(ServerOptionsTest, DefaultsValidate) { EXPECT_TRUE(ServerOptions().Validate().ok()); }

TEST(ServerOptionsTest, EachBadSetting_InvalidArgumentNamingItsFlag) {
  struct Case {
    std::string flag;
    std::function<void(ServerOptions&)> spoil;
  };
  const std::vector<Case> cases = {
      {"--shard_index", [](ServerOptions& o) { o.num_shards = 2, o.shard_index = 2; }},
      {"--coordinator", [](ServerOptions& o) { o.num_shards = 2, o.shard_index = 1; }},
      {"--worker_timeout", [](ServerOptions& o) { o.worker_timeout = o.heartbeat_interval; }},
      {"--heartbeat_interval",
       [](ServerOptions& o) { o.heartbeat_interval = absl::ZeroDuration(); }},
      {"--checkpoint_dir", [](ServerOptions& o) { o.checkpoint_every = absl::Seconds(1); }},
      {"--checkpoint_dir", [](ServerOptions& o) { o.checkpoint_every_steps = 10; }},
      {"--keep_checkpoints", [](ServerOptions& o) { o.keep_checkpoints = 0; }},
      {"--checkpoint_full_every", [](ServerOptions& o) { o.checkpoint_full_every = 0; }},
      {"--max_message_mb", [](ServerOptions& o) { o.max_message_bytes = 0; }},
      {"--max_workers", [](ServerOptions& o) { o.max_workers = 0; }},
      {"--max_sparse_rows", [](ServerOptions& o) { o.max_sparse_rows = 0; }},
      {"--stripe_elements", [](ServerOptions& o) { o.store.stripe_elements = 0; }},
  };
  for (const Case& c : cases) {
    ServerOptions options;
    c.spoil(options);
    absl::Status s = options.Validate();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.flag;
    EXPECT_NE(s.message().find(c.flag), std::string::npos) << c.flag << ": " << s;
  }
}

TEST(ServerOptionsTest, OtherShardWithItsCoordinator_Validates) {
  ServerOptions options;
  options.num_shards = 3;
  options.shard_index = 2;
  options.coordinator_address = "ps-0:50051";
  EXPECT_TRUE(options.Validate().ok());
}

}  // namespace
}  // namespace fulcrum
