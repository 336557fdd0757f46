// Witnesses: which of the coordinator's two processes (the coordinator and
// its backup) may serve the job when the two cannot reach each other — so
// that at most one does, whichever way the network is cut.
//
// Both sides count the same witnesses and each needs more than the other
// could have:
//
// - In a job with other shards, their processes (primaries and backups, the
//   replicated state's witness_addresses) are asked whether they reach the
//   coordinator (ShardControl.ReachCoordinator: each calls it with a short
//   deadline). The backup takes over only when a strict majority answer that
//   they do not and none that they do; the coordinator goes on without its
//   backup only when a strict majority answer that they reach it. Two strict
//   majorities of one set share a process, which cannot both reach the
//   coordinator and not.
// - In a job with no other shard, the workers: the backup takes over only
//   when a strict majority of the live workers have come to it since the
//   coordinator fell silent (a worker calls the backup only when its call to
//   the coordinator failed); the coordinator goes on alone only when at least
//   half of those live when it lost the backup have called it since (a
//   worker registered since may be one the backup counts).
//
// A shard's word is given once: a shard that reports to the backup since it
// took over no longer vouches for the coordinator. And whatever the
// witnesses say, a backup whose host refuses connections (its process is
// gone) is dropped at once, and a coordinator that finds its backup serving
// the job yields to it.
//
// The argument holds for a network that stays cut one way while the two
// decide; a process that cannot reach either side counts for neither.
#ifndef FULCRUM_SERVER_REPLICATION_WITNESSES_H_
#define FULCRUM_SERVER_REPLICATION_WITNESSES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/rpc/security.h"

namespace fulcrum {

// How long a process asked whether it reaches a coordinator process (a
// witness, or the other side of the pair) may take to get an answer from
// it. A witness's own answer takes up to twice this: its call, then the
// reply.
inline constexpr absl::Duration kReachTimeout = absl::Milliseconds(300);

// What the witnesses said about one coordinator process.
struct ReachPoll {
  int asked = 0;          // witnesses asked
  int answered = 0;       // of them, answered at all
  int reached = 0;        // of those, reached the coordinator process
  std::string a_reacher;  // one that reached it (for messages)
};

// Asks every process in `witnesses` at once whether it reaches the
// coordinator process at `coordinator`, whose own id is `process` (0:
// unknown), each call bounded by `deadline` (which covers the witness's own
// call to it). A witness that does not answer in time counts as not
// answering. Thread-compatible; blocks.
ReachPoll PollWitnesses(const std::vector<std::string>& witnesses, const std::string& coordinator,
                        uint64_t process, const ClientSecurityOptions& security,
                        absl::Duration deadline);

// OK when the process at `address` answers Coordinator.GetStatus within
// `deadline`, which only a process serving the job does (a backup that has
// not taken over answers UNAVAILABLE); the call's error otherwise.
absl::Status CallCoordinator(const std::string& address, const ClientSecurityOptions& security,
                             absl::Duration deadline);

// The backup's verdict on `poll` (its coordinator asked about, at least one
// witness): OK to take over; FAILED_PRECONDITION saying why not.
absl::Status ShardsLetBackupTakeOver(const ReachPoll& poll, const std::string& coordinator);
// The coordinator's verdict on `poll` (itself asked about, at least one
// witness): OK to go on without its backup; UNAVAILABLE saying why not.
absl::Status ShardsLetCoordinatorGoOnAlone(const ReachPoll& poll);

// The same from the workers, in a job with no other shard: `live` workers
// the job holds alive, `came` of them seen on the side deciding since the
// other fell silent. With no live worker, any worker coming (a
// registration) decides.
absl::Status WorkersLetBackupTakeOver(size_t live, size_t came);
absl::Status WorkersLetCoordinatorGoOnAlone(size_t live, size_t came);

// Whether nothing listens at `address` ("host:port"): the host refuses the
// connection, so the process that served there is gone (a live process
// cannot take over). False when the connection is accepted, fails
// otherwise, takes longer than `timeout` (a cut, or a silent host: nothing
// can be told) or the address does not resolve. Blocks up to `timeout`.
bool NothingListensAt(const std::string& address, absl::Duration timeout);

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_REPLICATION_WITNESSES_H_
