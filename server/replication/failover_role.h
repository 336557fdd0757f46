// FailoverRole: the role of one process of a replicated shard — the
// coordinator's shard 0 included — as one state machine, the same for every
// shard; what differs between shards (who may let a backup take over) is
// data given at construction: a TakeOverAuthority.
//
//              Superseded()                       BecameBackup()
//   kPrimary ---------------> kSuperseded ------------------------+
//      ^                                                          |
//      | TookOver()                                               v
//   kTakingOver <---- ShouldTakeOver(last_contact) == true ---- kBackup
//
// kPrimary serves workers and streams its updates to its backup.
// kBackup serves no one, applies its primary's updates, and watches the
//   primary's silence: ShouldTakeOver, asked every tick, says true once the
//   primary has been silent for failover_after and the authority agrees.
// kTakingOver: the caller applies what the primary sent, then serves as the
//   primary and says TookOver.
// kSuperseded: another process serves the shard (this one was cut off and
//   its backup took over); it serves no one and registers again as a
//   backup.
#ifndef FULCRUM_SERVER_REPLICATION_FAILOVER_ROLE_H_
#define FULCRUM_SERVER_REPLICATION_FAILOVER_ROLE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/base/clock.h"

namespace fulcrum {

// Who lets a backup whose primary went silent take over: the coordinator
// for the other shards' backups (it knows whether it still hears the
// primary), the witnesses for the coordinator's own backup
// (server/replication/witnesses.h). Called from the role's watch, one call at a time.
class TakeOverAuthority {
 public:
  virtual ~TakeOverAuthority() = default;
  // OK: take over now. Otherwise why not (logged); the role asks again
  // after `*ask_again_after` (failover_after unless the authority sets it).
  virtual absl::Status MayTakeOver(absl::Time silent_since, absl::Duration* ask_again_after) = 0;
};

struct FailoverRoleOptions {
  // Names the replica in log lines: "shard 1", "the coordinator".
  std::string name = "shard";
  // A backup asks to take over once its primary has been silent this long.
  absl::Duration failover_after = absl::Milliseconds(500);
  // Where the role reads time (silences, when to ask again). Not owned.
  const Clock* clock = Clock::Real();
};

// Thread-safe. `authority` is not owned and must outlive the role.
class FailoverRole {
 public:
  enum class State { kPrimary, kBackup, kTakingOver, kSuperseded };

  FailoverRole(FailoverRoleOptions options, State initial, TakeOverAuthority* authority);
  FailoverRole(const FailoverRole&) = delete;
  FailoverRole& operator=(const FailoverRole&) = delete;

  State state() const;
  // Anything but the primary: registers as a backup, serves no one.
  bool is_backup() const { return state() != State::kPrimary; }

  // A backup's watch, every tick: its primary was last heard at
  // `last_contact`. True (and kTakingOver) when this process must take
  // over now; false in any other state, before the silence is long enough,
  // while a refusal stands, or when the authority refuses.
  bool ShouldTakeOver(absl::Time last_contact);
  // kTakingOver -> kPrimary: this process serves the shard now.
  void TookOver();
  // kPrimary -> kSuperseded (another process serves the shard). Returns
  // whether this process was the primary (false: nothing changed).
  bool Superseded();
  // -> kBackup (the coordinator made this process the backup).
  void BecameBackup();

  static const char* StateName(State state);

 private:
  const FailoverRoleOptions options_;
  TakeOverAuthority* const authority_;
  mutable absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_);
  // The last refusal of the authority, and how long it stands.
  absl::Time refused_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Duration ask_again_after_ ABSL_GUARDED_BY(mu_);
  absl::Time logged_refusal_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

}  // namespace fulcrum

#endif  // FULCRUM_SERVER_REPLICATION_FAILOVER_ROLE_H_
