#include "server/shard/update_sink.h"

namespace fulcrum {
namespace {

class NoSink final : public UpdateSink {
 public:
  uint64_t Reserve() override { return 0; }
  uint64_t last_reserved() const override { return 0; }
  void PutPush(uint64_t, const AdmittedPush&) override {}
  void PutRoundClosed(uint64_t, int64_t) override {}
  void PutEviction(uint64_t, absl::Span<const TableEviction>) override {}
  void PutMembership(uint64_t, const WorkerMembership&) override {}
  absl::Status AwaitSafe(uint64_t, absl::Time) override { return absl::OkStatus(); }
  uint64_t Attach() override { return 0; }
};

}  // namespace

UpdateSink* NoUpdateSink() {
  static NoSink* const sink = new NoSink();
  return sink;
}

}  // namespace fulcrum
