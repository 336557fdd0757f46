#include "server/replication/failover_role.h"

#include <utility>

#include "common/base/log.h"

namespace fulcrum {

FailoverRole::FailoverRole(FailoverRoleOptions options, State initial, TakeOverAuthority* authority)
    : options_(std::move(options)),
      authority_(authority),
      state_(initial),
      ask_again_after_(options_.failover_after) {}

FailoverRole::State FailoverRole::state() const {
  absl::MutexLock lock(&mu_);
  return state_;
}

bool FailoverRole::ShouldTakeOver(absl::Time last_contact) {
  const absl::Time now = options_.clock->Now();
  const absl::Duration silence = now - last_contact;
  {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kBackup || silence < options_.failover_after ||
        now - refused_at_ < ask_again_after_) {
      return false;
    }
  }
  // Asked outside the lock: the authority may call other processes.
  absl::Duration ask_again_after = options_.failover_after;
  const absl::Status may = authority_->MayTakeOver(last_contact, &ask_again_after);
  absl::MutexLock lock(&mu_);
  if (state_ != State::kBackup) return false;  // the coordinator made it something else meanwhile
  ask_again_after_ = ask_again_after;
  if (!may.ok()) {
    refused_at_ = options_.clock->Now();
    if (refused_at_ - logged_refusal_at_ >= options_.failover_after) {  // not every re-ask
      FULCRUM_LOG(WARNING) << options_.name << ": primary silent for " << silence << ", but "
                           << may.message() << ": not taking over";
      logged_refusal_at_ = refused_at_;
    }
    return false;
  }
  FULCRUM_LOG(WARNING) << options_.name << ": primary silent for " << silence
                       << "; this backup takes over";
  state_ = State::kTakingOver;
  return true;
}

void FailoverRole::TookOver() {
  absl::MutexLock lock(&mu_);
  if (state_ == State::kTakingOver) state_ = State::kPrimary;
}

bool FailoverRole::Superseded() {
  absl::MutexLock lock(&mu_);
  if (state_ != State::kPrimary) return false;
  state_ = State::kSuperseded;
  return true;
}

void FailoverRole::BecameBackup() {
  absl::MutexLock lock(&mu_);
  state_ = State::kBackup;
  refused_at_ = absl::InfinitePast();
  ask_again_after_ = options_.failover_after;
}

const char* FailoverRole::StateName(State state) {
  switch (state) {
    case State::kPrimary:
      return "primary";
    case State::kBackup:
      return "backup";
    case State::kTakingOver:
      return "taking over";
    case State::kSuperseded:
      return "superseded";
  }
  return "?";
}

}  // namespace fulcrum
