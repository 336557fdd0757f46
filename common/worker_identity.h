// WorkerIdentity: who a worker is, as the coordinator that registered it
// knows it.
#ifndef FULCRUM_COMMON_WORKER_IDENTITY_H_
#define FULCRUM_COMMON_WORKER_IDENTITY_H_

#include <cstdint>
#include <string>

#include "absl/strings/str_format.h"

namespace fulcrum {

// Every coordinator process numbers workers from 1, so an id means something
// only together with the incarnation of the coordinator that issued it
// (RegisterWorkerResponse.incarnation). Servers compare both: a message from
// a worker that registered with an earlier process is never taken for one
// from the worker the current process gave the same id to; it is refused
// with FAILED_PRECONDITION and the worker registers again. A plain value.
struct WorkerIdentity {
  uint64_t id = 0;                       // 0 is never issued
  uint64_t coordinator_incarnation = 0;  // 0 is never an incarnation

  friend bool operator==(const WorkerIdentity& a, const WorkerIdentity& b) {
    return a.id == b.id && a.coordinator_incarnation == b.coordinator_incarnation;
  }
  friend bool operator!=(const WorkerIdentity& a, const WorkerIdentity& b) { return !(a == b); }
};

// Who sent `message`: any message with worker_id and coordinator_incarnation
// fields (RequestHeader, the coordinator's worker requests).
template <typename Message>
WorkerIdentity SenderOf(const Message& message) {
  return WorkerIdentity{message.worker_id(), message.coordinator_incarnation()};
}

// Names `worker` as the sender of `message` (as SenderOf reads it).
template <typename Message>
void SetSender(const WorkerIdentity& worker, Message* message) {
  message->set_worker_id(worker.id);
  message->set_coordinator_incarnation(worker.coordinator_incarnation);
}

// "worker 3 of coordinator 9f2c...".
inline std::string DescribeWorker(const WorkerIdentity& worker) {
  return absl::StrFormat("worker %d of coordinator incarnation %016x", worker.id,
                         worker.coordinator_incarnation);
}

}  // namespace fulcrum

#endif  // FULCRUM_COMMON_WORKER_IDENTITY_H_
