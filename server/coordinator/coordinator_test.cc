#include "server/coordinator/coordinator.h"

#include <cmath>
#include <set>

#include "common/model_spec.h"
#include "gtest/gtest.h"
#include "server/job_spec.h"

namespace fulcrum {
namespace {

using Kind = AcquirePartitionResponse::Kind;

class CoordinatorTest : public ::testing::Test {
 protected:
  void Init(ConsistencyMode mode, uint32_t num_workers, uint32_t epochs, uint32_t partitions,
            uint32_t lookahead = 1, uint64_t incarnation = 77) {
    JobSpec& job = job_;
    job.set_model("softmax");
    job.set_mode(mode);
    job.set_epochs(epochs);
    job.set_batch_size(32);
    job.set_num_workers(num_workers);
    job.set_partitions_per_epoch(partitions);
    job.set_staleness(1);
    job.mutable_optimizer()->set_kind(SGD);
    const std::vector<TensorSpec> tensors = *ModelTensors("softmax");
    job.clear_tensors();  // a test may Init twice
    for (const TensorSpec& t : tensors) *job.add_tensors() = t;
    options_.job = *Job::Complete(job);  // a test's job is right
    options_.incarnation = incarnation;
    options_.epoch_lookahead = lookahead;
    options_.worker_timeout = absl::Seconds(5);
    options_.clock = &clock_;
    auto store = ParameterStore::Create({}, *CreateOptimizer(job.optimizer()), tensors);
    ASSERT_TRUE(store.ok());
    shard_ = std::make_unique<ParameterShard>(std::move(*store), mode, 1);
    ShardGroupOptions group;
    group.incarnation = options_.incarnation;
    group_ = std::make_unique<ShardGroup>(group, shard_.get());
    coordinator_ = std::make_unique<JobCoordinator>(options_, group_.get());
  }

  uint64_t Register(const std::string& name) {
    RegisterWorkerRequest request;
    request.set_worker_name(name);
    request.set_host("h");
    absl::StatusOr<RegisterWorkerResponse> r = coordinator_->RegisterWorker(request);
    EXPECT_TRUE(r.ok()) << r.status();
    return r->worker_id();
  }

  // The calls of worker `id` of this coordinator...
  WorkerIdentity Ours(uint64_t id) const { return WorkerIdentity{id, options_.incarnation}; }
  absl::StatusOr<AcquirePartitionResponse> Acquire(uint64_t id) { return Acquire(Ours(id)); }
  absl::Status Complete(uint64_t id, uint64_t lease) { return Complete(Ours(id), lease); }
  absl::Status Eval(uint64_t id, uint64_t lease, double accuracy) {
    return Eval(Ours(id), lease, accuracy);
  }
  absl::StatusOr<HeartbeatResponse> Heartbeat(uint64_t id) { return Heartbeat(Ours(id)); }

  // ... and of any worker.
  absl::StatusOr<AcquirePartitionResponse> Acquire(const WorkerIdentity& worker) {
    AcquirePartitionRequest request;
    SetSender(worker, &request);
    return coordinator_->AcquirePartition(request);
  }

  absl::Status Complete(const WorkerIdentity& worker, uint64_t lease) {
    CompletePartitionRequest request;
    SetSender(worker, &request);
    request.set_lease_id(lease);
    return coordinator_->CompletePartition(request);
  }

  absl::Status Eval(const WorkerIdentity& worker, uint64_t lease, double accuracy) {
    ReportEvalRequest request;
    SetSender(worker, &request);
    request.set_lease_id(lease);
    request.mutable_eval()->set_test_accuracy(accuracy);
    request.mutable_eval()->set_examples(10000);
    return coordinator_->ReportEval(request);
  }

  absl::StatusOr<HeartbeatResponse> Heartbeat(const WorkerIdentity& worker) {
    HeartbeatRequest request;
    SetSender(worker, &request);
    request.mutable_progress()->set_loss(0.5);
    request.mutable_progress()->set_steps(1);
    return coordinator_->Heartbeat(request);
  }

  // Trains (acquires and completes) until a lease is not a training one.
  AcquirePartitionResponse TrainUntilOther(uint64_t id) {
    while (true) {
      AcquirePartitionResponse r = *Acquire(id);
      if (r.kind() != AcquirePartitionResponse::TRAIN) return r;
      EXPECT_TRUE(Complete(id, r.lease_id()).ok());
    }
  }

  JobSpec job_;  // what a test sets before Init, which completes it into options_.job
  CoordinatorOptions options_;
  ManualClock clock_;
  std::unique_ptr<ParameterShard> shard_;
  std::unique_ptr<ShardGroup> group_;
  std::unique_ptr<JobCoordinator> coordinator_;
};

TEST_F(CoordinatorTest, JobStartsWhenEnoughWorkersRegistered) {
  Init(SYNC, 2, 1, 4);
  uint64_t a = Register("a");
  EXPECT_EQ(coordinator_->state(), WAITING_FOR_WORKERS);
  EXPECT_EQ(Acquire(a)->kind(), AcquirePartitionResponse::WAIT);
  Register("b");
  EXPECT_EQ(coordinator_->state(), RUNNING);
  EXPECT_EQ(Acquire(a)->kind(), AcquirePartitionResponse::TRAIN);
}

TEST_F(CoordinatorTest, Register_ReturnsJobAndLivenessSettings) {
  Init(SYNC, 1, 1, 4);
  RegisterWorkerRequest request;
  request.set_worker_name("a");
  RegisterWorkerResponse r = *coordinator_->RegisterWorker(request);
  EXPECT_NE(r.worker_id(), 0u);
  EXPECT_EQ(r.job().model(), "softmax");
  EXPECT_EQ(r.job().partitions_per_epoch(), 4u);
  EXPECT_EQ(r.incarnation(), 77u);
  EXPECT_DOUBLE_EQ(r.worker_timeout_seconds(), 5.0);
  EXPECT_GT(r.heartbeat_interval_seconds(), 0.0);
}

TEST_F(CoordinatorTest, Leases_CoverEveryPartitionOncePerEpoch) {
  Init(ASYNC, 1, 2, 5, /*lookahead=*/0);
  uint64_t a = Register("a");
  std::set<uint32_t> seen;
  for (int i = 0; i < 5; ++i) {
    AcquirePartitionResponse r = *Acquire(a);
    ASSERT_EQ(r.kind(), AcquirePartitionResponse::TRAIN);
    EXPECT_EQ(r.partition().epoch(), 0u);
    EXPECT_EQ(r.partition().count(), 5u);
    seen.insert(r.partition().index());
    ASSERT_TRUE(Complete(a, r.lease_id()).ok());
  }
  EXPECT_EQ(seen.size(), 5u);
  // Epoch 1 is complete: its evaluation comes first, then epoch 2's data.
  AcquirePartitionResponse eval = *Acquire(a);
  ASSERT_EQ(eval.kind(), AcquirePartitionResponse::EVALUATE);
  EXPECT_EQ(eval.eval_epoch(), 1u);
  EXPECT_FALSE(eval.eval_final());
  ASSERT_TRUE(Eval(a, eval.lease_id(), 0.5).ok());
  EXPECT_EQ(Acquire(a)->partition().epoch(), 1u);
}

TEST_F(CoordinatorTest, RetriedAcquire_ReturnsTheSameLease) {
  Init(ASYNC, 1, 1, 4);
  uint64_t a = Register("a");
  AcquirePartitionResponse first = *Acquire(a);
  AcquirePartitionResponse again = *Acquire(a);
  EXPECT_EQ(first.lease_id(), again.lease_id());
  EXPECT_EQ(first.partition().index(), again.partition().index());
}

// A change the backup did not get in time fails the worker's call
// (UNAVAILABLE), so nothing the backup lacks is acknowledged; the change
// stands, and the call retried is answered as the first would have been.
TEST_F(CoordinatorTest, ChangeNotReplicated_CallFailsAndItsRetryIsAnsweredAsTheFirst) {
  bool replicated = true;
  options_.state_changed = [&] {
    return replicated ? absl::OkStatus() : absl::UnavailableError("not replicated in time");
  };
  Init(ASYNC, 2, 1, 4);
  const uint64_t a = Register("a");
  Register("b");

  replicated = false;
  EXPECT_TRUE(absl::IsUnavailable(Acquire(a).status()));
  replicated = true;
  const AcquirePartitionResponse lease = *Acquire(a);
  ASSERT_EQ(lease.kind(), AcquirePartitionResponse::TRAIN);
  EXPECT_EQ(lease.lease_id(), Acquire(a)->lease_id());  // the one the failed call granted

  replicated = false;
  EXPECT_TRUE(absl::IsUnavailable(Complete(a, lease.lease_id())));
  EXPECT_EQ(coordinator_->GetStatus().completed_size(), 1);  // it stands
  replicated = true;
  EXPECT_TRUE(Complete(a, lease.lease_id()).ok());
  EXPECT_EQ(coordinator_->GetStatus().completed_size(), 1);

  replicated = false;
  RegisterWorkerRequest request;
  request.set_worker_name("c");
  EXPECT_TRUE(absl::IsUnavailable(coordinator_->RegisterWorker(request).status()));
  replicated = true;
  ASSERT_TRUE(coordinator_->RegisterWorker(request).ok());
  EXPECT_EQ(coordinator_->GetStatus().live_workers(), 3u);  // the first "c" replaced
}

TEST_F(CoordinatorTest, Lookahead_NextEpochLeasedBeforeStragglerFinishes) {
  Init(ASYNC, 2, 3, 2, /*lookahead=*/1);
  uint64_t fast = Register("fast");
  uint64_t slow = Register("slow");
  AcquirePartitionResponse slow_lease = *Acquire(slow);  // epoch 0
  AcquirePartitionResponse r = *Acquire(fast);
  ASSERT_TRUE(Complete(fast, r.lease_id()).ok());
  r = *Acquire(fast);  // epoch 0 has nothing left: epoch 1
  EXPECT_EQ(r.kind(), AcquirePartitionResponse::TRAIN);
  EXPECT_EQ(r.partition().epoch(), 1u);
  ASSERT_TRUE(Complete(fast, r.lease_id()).ok());
  r = *Acquire(fast);
  ASSERT_TRUE(Complete(fast, r.lease_id()).ok());
  // Epoch 2 is two ahead of the straggler's: wait.
  EXPECT_EQ(Acquire(fast)->kind(), AcquirePartitionResponse::WAIT);
  ASSERT_TRUE(Complete(slow, slow_lease.lease_id()).ok());
  // Epochs 1 and 2 done: both evaluations queue, in order.
  r = *Acquire(fast);
  ASSERT_EQ(r.kind(), AcquirePartitionResponse::EVALUATE);
  EXPECT_EQ(r.eval_epoch(), 1u);
}

TEST_F(CoordinatorTest, EpochBarrier_NextEpochLeasedOnlyOnceThisOneIsComplete) {
  job_.set_epoch_barrier(true);
  Init(ASYNC, 2, 2, 2, /*lookahead=*/1);
  uint64_t a = Register("a");
  uint64_t b = Register("b");
  AcquirePartitionResponse la = *Acquire(a);
  AcquirePartitionResponse lb = *Acquire(b);
  ASSERT_TRUE(Complete(a, la.lease_id()).ok());
  // Without the barrier the lookahead would lease epoch 1 now.
  EXPECT_EQ(Acquire(a)->kind(), AcquirePartitionResponse::WAIT);
  ASSERT_TRUE(Complete(b, lb.lease_id()).ok());
  AcquirePartitionResponse eval = *Acquire(a);
  ASSERT_EQ(eval.kind(), AcquirePartitionResponse::EVALUATE);
  ASSERT_TRUE(Eval(a, eval.lease_id(), 0.5).ok());
  AcquirePartitionResponse next = *Acquire(a);
  ASSERT_EQ(next.kind(), AcquirePartitionResponse::TRAIN);
  EXPECT_EQ(next.partition().epoch(), 1u);
}

TEST_F(CoordinatorTest, CompleteUnderWrongLease_FailedPrecondition) {
  Init(ASYNC, 2, 1, 4);
  uint64_t a = Register("a");
  uint64_t b = Register("b");
  AcquirePartitionResponse la = *Acquire(a);
  EXPECT_EQ(Complete(b, la.lease_id()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Complete(a, la.lease_id() + 100).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Eval(a, la.lease_id(), 0.5).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Complete(a, la.lease_id()).ok());
  // The same completion again (a retry whose answer was lost) is OK and
  // completes nothing more; the lease is not this worker's to end twice.
  EXPECT_TRUE(Complete(a, la.lease_id()).ok());
  EXPECT_EQ(coordinator_->GetStatus().completed_size(), 1);
  EXPECT_EQ(Complete(b, la.lease_id()).code(), absl::StatusCode::kFailedPrecondition);
}

// The coordinator's backup takes over from the replicated state: the same
// workers under the same ids, their leases standing, completions retried
// across the takeover answered once, the membership on the shards.
TEST_F(CoordinatorTest, SaveReplicaThenRestoreReplica_WorkersGoOnUnderTheirIdsAndLeases) {
  Init(SYNC, 2, 2, 4);
  const uint64_t a = Register("a");
  const uint64_t b = Register("b");
  const AcquirePartitionResponse first_a = *Acquire(a);  // leased at the start (sync)
  const AcquirePartitionResponse lease_b = *Acquire(b);
  ASSERT_EQ(first_a.kind(), AcquirePartitionResponse::TRAIN);
  ASSERT_EQ(lease_b.kind(), AcquirePartitionResponse::TRAIN);
  ASSERT_TRUE(Complete(a, first_a.lease_id()).ok());
  const AcquirePartitionResponse second_a = *Acquire(a);
  ASSERT_EQ(second_a.kind(), AcquirePartitionResponse::TRAIN);
  const Membership membership = group_->MembershipNow();
  const CoordinatorReplica replica = coordinator_->SaveReplica();
  EXPECT_EQ(replica.workers().incarnation(), 77u);
  EXPECT_EQ(replica.workers().workers_size(), 2);
  EXPECT_EQ(replica.workers().leases_size(), 2);

  // The backup's process: its own shard and group, the same incarnation.
  coordinator_.reset();
  group_.reset();
  shard_ = std::make_unique<ParameterShard>(
      std::move(*ParameterStore::Create({}, *CreateOptimizer(options_.job->optimizer()),
                                        *ModelTensors("softmax"))),
      SYNC, 1);
  ShardGroupOptions group;
  group.incarnation = 77;
  group_ = std::make_unique<ShardGroup>(group, shard_.get());
  coordinator_ = std::make_unique<JobCoordinator>(options_, group_.get());
  ASSERT_TRUE(coordinator_->RestoreReplica(replica).ok());

  EXPECT_EQ(coordinator_->state(), RUNNING);
  EXPECT_TRUE(Heartbeat(a).ok());
  EXPECT_TRUE(Heartbeat(b).ok());
  // A new worker gets an id no one had, and the one partition of epoch 1
  // neither trained nor leased.
  const uint64_t c = Register("c");
  EXPECT_EQ(c, 3u);
  const AcquirePartitionResponse lease_c = *Acquire(c);
  ASSERT_EQ(lease_c.kind(), AcquirePartitionResponse::TRAIN);
  EXPECT_EQ(lease_c.partition().epoch(), 0u);
  for (uint32_t taken :
       {first_a.partition().index(), second_a.partition().index(), lease_b.partition().index()}) {
    EXPECT_NE(lease_c.partition().index(), taken);
  }
  // A's first completion, retried, changes nothing; its second lease and
  // b's stand.
  EXPECT_TRUE(Complete(a, first_a.lease_id()).ok());
  EXPECT_EQ(coordinator_->GetStatus().completed_size(), 1);
  const AcquirePartitionResponse again = *Acquire(a);
  EXPECT_EQ(again.lease_id(), second_a.lease_id());
  EXPECT_EQ(again.partition().index(), second_a.partition().index());
  EXPECT_TRUE(Complete(b, lease_b.lease_id()).ok());
  EXPECT_TRUE(Complete(a, second_a.lease_id()).ok());
  EXPECT_EQ(coordinator_->GetStatus().completed_size(), 3);
  // The membership, under a version past the dead coordinator's.
  const Membership taken_over = group_->MembershipNow();
  EXPECT_EQ(taken_over.coordinator_incarnation(), 77u);
  EXPECT_GT(taken_over.version(), membership.version() + (uint64_t{1} << 32));
  EXPECT_TRUE(taken_over.started());
  EXPECT_EQ(taken_over.admitted_size(), 3);
  EXPECT_EQ(coordinator_->GetStatus().workers_size(), 3);

  // Another incarnation's state is refused.
  JobCoordinator other(options_, group_.get());
  CoordinatorReplica foreign = replica;
  foreign.mutable_workers()->set_incarnation(78);
  EXPECT_EQ(other.RestoreReplica(foreign).code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CoordinatorTest, SilentWorker_DeclaredDeadAndPartitionRetrained) {
  Init(SYNC, 2, 1, 2, 0);
  uint64_t a = Register("a");
  uint64_t b = Register("b");
  AcquirePartitionResponse la = *Acquire(a);
  AcquirePartitionResponse lb = *Acquire(b);
  clock_.Advance(absl::Seconds(3));
  ASSERT_TRUE(Heartbeat(a).ok());
  clock_.Advance(absl::Seconds(3));  // b silent for 6 s > 5 s
  EXPECT_EQ(coordinator_->ReapSilentWorkers(), 1);
  JobStatus status = coordinator_->GetStatus();
  EXPECT_EQ(status.workers(1).state(), DEAD);
  EXPECT_EQ(status.dead_workers(), 1u);
  // The dead worker is refused everywhere and must register again.
  EXPECT_EQ(Heartbeat(b).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Complete(b, lb.lease_id()).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Acquire(b).status().code(), absl::StatusCode::kFailedPrecondition);
  // a finishes its partition, then retrains b's from the start.
  ASSERT_TRUE(Complete(a, la.lease_id()).ok());
  AcquirePartitionResponse retry = *Acquire(a);
  ASSERT_EQ(retry.kind(), AcquirePartitionResponse::TRAIN);
  EXPECT_EQ(retry.partition().index(), lb.partition().index());
  ASSERT_TRUE(Complete(a, retry.lease_id()).ok());
  status = coordinator_->GetStatus();
  ASSERT_EQ(status.completed_size(), 2);
  EXPECT_NE(status.completed(0).index(), status.completed(1).index());
  EXPECT_EQ(status.completed(1).worker_id(), a);
}

TEST_F(CoordinatorTest, DeadWorker_NoLongerHoldsSyncRound) {
  Init(SYNC, 2, 1, 2, 0);
  uint64_t a = Register("a");
  uint64_t b = Register("b");
  ASSERT_TRUE(Acquire(a).ok());
  ASSERT_TRUE(Acquire(b).ok());
  std::vector<float> w(7840, 1.0f), bias(10, 1.0f);
  ASSERT_TRUE(
      shard_->Push(Ours(a), 0, 0, {{{"softmax/w", 0, 7840}, w}, {{"softmax/b", 0, 10}, bias}})
          .ok());
  EXPECT_EQ(shard_->version().round, 0);
  clock_.Advance(absl::Seconds(6));
  ASSERT_TRUE(Heartbeat(a).ok());
  coordinator_->ReapSilentWorkers();
  EXPECT_EQ(shard_->version().round, 1);
}

TEST_F(CoordinatorTest, SameNameRegistering_ReplacesOldWorker) {
  Init(ASYNC, 1, 1, 2);
  uint64_t old_id = Register("w");
  AcquirePartitionResponse lease = *Acquire(old_id);
  uint64_t new_id = Register("w");
  EXPECT_NE(new_id, old_id);
  EXPECT_EQ(Heartbeat(old_id).status().code(), absl::StatusCode::kFailedPrecondition);
  // The old lease is back in the pool.
  AcquirePartitionResponse again = *Acquire(new_id);
  EXPECT_EQ(again.partition().index(), lease.partition().index());
  EXPECT_EQ(coordinator_->GetStatus().live_workers(), 1u);
}

TEST_F(CoordinatorTest, DeadEvaluator_TaskGoesToAnotherWorker) {
  Init(ASYNC, 2, 1, 1, 0);
  uint64_t a = Register("a");
  uint64_t b = Register("b");
  AcquirePartitionResponse r = *Acquire(a);
  ASSERT_TRUE(Complete(a, r.lease_id()).ok());
  EXPECT_EQ(coordinator_->state(), EVALUATING);
  AcquirePartitionResponse eval = *Acquire(a);
  ASSERT_EQ(eval.kind(), AcquirePartitionResponse::EVALUATE);
  EXPECT_TRUE(eval.eval_final());
  clock_.Advance(absl::Seconds(6));
  ASSERT_TRUE(Heartbeat(b).ok());
  coordinator_->ReapSilentWorkers();
  AcquirePartitionResponse eval_b = *Acquire(b);
  ASSERT_EQ(eval_b.kind(), AcquirePartitionResponse::EVALUATE);
  EXPECT_TRUE(eval_b.eval_final());
  ASSERT_TRUE(Eval(b, eval_b.lease_id(), 0.9).ok());
  EXPECT_EQ(coordinator_->state(), FINISHED);
}

TEST_F(CoordinatorTest, Lifecycle_FinishedThenWorkersToldDone) {
  Init(ASYNC, 2, 2, 2, 0);
  uint64_t a = Register("a");
  uint64_t b = Register("b");
  AcquirePartitionResponse r = TrainUntilOther(a);
  ASSERT_EQ(r.kind(), AcquirePartitionResponse::EVALUATE);  // after epoch 1
  ASSERT_TRUE(Eval(a, r.lease_id(), 0.7).ok());
  r = TrainUntilOther(a);
  ASSERT_EQ(r.kind(), AcquirePartitionResponse::EVALUATE);
  EXPECT_TRUE(r.eval_final());
  EXPECT_EQ(coordinator_->state(), EVALUATING);
  EXPECT_EQ(Acquire(b)->kind(), AcquirePartitionResponse::WAIT);
  EXPECT_FALSE(coordinator_->WaitUntilDone(clock_.Now()));
  ASSERT_TRUE(Eval(a, r.lease_id(), 0.85).ok());
  EXPECT_EQ(coordinator_->state(), FINISHED);
  EXPECT_FALSE(coordinator_->WaitUntilWorkersLeft(absl::Now()));
  EXPECT_EQ(Acquire(a)->kind(), AcquirePartitionResponse::DONE);
  EXPECT_EQ(Acquire(b)->kind(), AcquirePartitionResponse::DONE);
  EXPECT_TRUE(coordinator_->WaitUntilWorkersLeft(absl::Now()));
  JobStatus status = coordinator_->GetStatus();
  EXPECT_EQ(status.completed_size(), 4);
  EXPECT_DOUBLE_EQ(status.last_eval().test_accuracy(), 0.85);
  EXPECT_TRUE(status.last_eval().final());
  EXPECT_EQ(coordinator_->ResultLine().rfind(
                "result: model=softmax mode=async epochs=2 test_accuracy=0.8500 ", 0),
            0u);
}

TEST_F(CoordinatorTest, SkipEvaluation_FinishedWhenTheLastEpochIsTrained) {
  job_.set_skip_evaluation(true);
  Init(ASYNC, 1, 2, 2, 0);
  uint64_t a = Register("a");
  EXPECT_EQ(TrainUntilOther(a).kind(), AcquirePartitionResponse::DONE);
  EXPECT_EQ(coordinator_->state(), FINISHED);
  JobStatus status = coordinator_->GetStatus();
  EXPECT_EQ(status.completed_size(), 4);
  EXPECT_EQ(status.evaluations_size(), 0);
  EXPECT_EQ(coordinator_->ResultLine().rfind(
                "result: model=softmax mode=async epochs=2 wall_seconds=", 0),
            0u)
      << coordinator_->ResultLine();
}

TEST_F(CoordinatorTest, Stop_EndsJobAndReleasesLeases) {
  Init(SYNC, 1, 5, 4);
  uint64_t a = Register("a");
  ASSERT_EQ(Acquire(a)->kind(), AcquirePartitionResponse::TRAIN);
  coordinator_->Stop();
  EXPECT_EQ(coordinator_->state(), STOPPED);
  EXPECT_EQ(Heartbeat(a)->job_state(), STOPPED);
  EXPECT_EQ(Acquire(a)->kind(), AcquirePartitionResponse::DONE);
}

TEST_F(CoordinatorTest, Ssp_JoinerStartsAtTheSlowestActiveClock) {
  Init(SSP, 1, 10, 4);
  uint64_t a = Register("a");
  for (int i = 0; i < 3; ++i) {
    AcquirePartitionResponse r = *Acquire(a);
    EXPECT_EQ(r.clock(), i);
    ASSERT_TRUE(Complete(a, r.lease_id()).ok());
  }
  AcquirePartitionResponse ra = *Acquire(a);
  EXPECT_EQ(ra.clock(), 3);
  uint64_t c = Register("c");
  EXPECT_EQ(Acquire(c)->clock(), 3);  // not 0: it must not hold a back
}

TEST_F(CoordinatorTest, MalformedReports_InvalidArgument) {
  Init(ASYNC, 1, 1, 1);
  uint64_t a = Register("a");
  HeartbeatRequest request;
  request.set_worker_id(a);
  request.set_coordinator_incarnation(options_.incarnation);
  request.mutable_progress()->set_loss(-1);
  EXPECT_EQ(coordinator_->Heartbeat(request).status().code(), absl::StatusCode::kInvalidArgument);
  request.mutable_progress()->set_loss(std::nan(""));
  EXPECT_EQ(coordinator_->Heartbeat(request).status().code(), absl::StatusCode::kInvalidArgument);
  AcquirePartitionResponse r = *Acquire(a);
  ASSERT_TRUE(Complete(a, r.lease_id()).ok());
  AcquirePartitionResponse eval = *Acquire(a);
  EXPECT_EQ(Eval(a, eval.lease_id(), 1.5).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(CoordinatorTest, SaveThenRestore_ResumesWhereItWas) {
  Init(ASYNC, 1, 3, 2, 0);
  uint64_t a = Register("a");
  AcquirePartitionResponse r = TrainUntilOther(a);  // epoch 1 trained
  ASSERT_EQ(r.kind(), AcquirePartitionResponse::EVALUATE);
  AcquirePartitionResponse half = *Acquire(a);  // leased, not finished
  (void)half;
  // The evaluation is still running and a partition is leased: both are
  // owed again after a restore.
  CoordinatorCheckpoint saved = coordinator_->SaveProgress();
  EXPECT_EQ(saved.oldest_epoch(), 1u);
  EXPECT_EQ(saved.completed_size(), 2);
  ASSERT_EQ(saved.pending_evals_size(), 1);

  // A new coordinator (the restarted server) resumes from it.
  auto store =
      ParameterStore::Create({}, *CreateOptimizer(options_.job->optimizer()),
                             {options_.job->tensors().begin(), options_.job->tensors().end()});
  ParameterShard shard(std::move(*store), ASYNC);
  options_.incarnation = 78;  // a new process
  ShardGroupOptions group_options;
  group_options.incarnation = options_.incarnation;
  ShardGroup group(group_options, &shard);
  JobCoordinator restored(options_, &group);
  ASSERT_TRUE(restored.RestoreProgress(saved).ok());
  RegisterWorkerRequest request;
  request.set_worker_name("b");
  uint64_t b = restored.RegisterWorker(request)->worker_id();
  EXPECT_EQ(restored.state(), RUNNING);  // resumes with whoever comes back
  AcquirePartitionRequest acquire;
  acquire.set_worker_id(b);
  acquire.set_coordinator_incarnation(78);
  AcquirePartitionResponse first = *restored.AcquirePartition(acquire);
  EXPECT_EQ(first.kind(), AcquirePartitionResponse::EVALUATE);
  EXPECT_EQ(first.eval_epoch(), 1u);
  ReportEvalRequest eval;
  eval.set_worker_id(b);
  eval.set_coordinator_incarnation(78);
  eval.set_lease_id(first.lease_id());
  ASSERT_TRUE(restored.ReportEval(eval).ok());
  AcquirePartitionResponse next = *restored.AcquirePartition(acquire);
  EXPECT_EQ(next.kind(), AcquirePartitionResponse::TRAIN);
  EXPECT_EQ(next.partition().epoch(), 1u);  // not epoch 0 again
  EXPECT_EQ(restored.GetStatus().completed_size(), 2);
}

TEST_F(CoordinatorTest, RestoreOfAnotherJob_FailedPrecondition) {
  Init(ASYNC, 1, 3, 2);
  CoordinatorCheckpoint saved = coordinator_->SaveProgress();
  saved.mutable_job()->set_epochs(99);
  Init(ASYNC, 1, 3, 2);
  absl::Status s = coordinator_->RestoreProgress(saved);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("another job"), std::string::npos);
}

TEST_F(CoordinatorTest, TooManyWorkers_ResourceExhaustedButReplacementAllowed) {
  Init(ASYNC, 1, 1, 1);
  options_.max_workers = 2;
  coordinator_ = std::make_unique<JobCoordinator>(options_, group_.get());
  Register("a");
  Register("b");
  RegisterWorkerRequest c;
  c.set_worker_name("c");
  absl::Status s = coordinator_->RegisterWorker(c).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(s.message().find("--max_workers"), std::string::npos);
  Register("a");  // a restarted worker replacing itself is not a new one
  EXPECT_EQ(coordinator_->GetStatus().live_workers(), 2u);
}

TEST_F(CoordinatorTest, UnknownWorker_FailedPrecondition) {
  Init(ASYNC, 1, 1, 1);
  EXPECT_EQ(Heartbeat(12345).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Acquire(12345).status().code(), absl::StatusCode::kFailedPrecondition);
}

// Worker ids restart from 1 in every coordinator process: an id that an
// earlier process issued is refused on every call, whoever holds it now, and
// nothing of the job changes.
class StaleWorkerTest : public CoordinatorTest {
 protected:
  void SetUp() override {
    Init(ASYNC, 1, 1, 4);
    current_ = Register("current");
    stale_ = WorkerIdentity{current_, options_.incarnation - 1};  // same id
    lease_ = *Acquire(current_);
    ASSERT_EQ(lease_.kind(), AcquirePartitionResponse::TRAIN);
    before_ = coordinator_->GetStatus();
  }

  void ExpectRefused(const absl::Status& s) {
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_NE(s.message().find("register again"), std::string::npos) << s;
    JobStatus after = coordinator_->GetStatus();
    ASSERT_EQ(after.workers_size(), 1);
    EXPECT_EQ(after.workers(0).state(), ACTIVE);
    EXPECT_EQ(after.workers(0).partitions_completed(), 0u);
    EXPECT_EQ(after.workers(0).steps(), before_.workers(0).steps());
    EXPECT_EQ(after.completed_size(), 0);
    EXPECT_EQ(after.evaluations_size(), 0);
    // The current holder of the id still holds its lease and completes it.
    EXPECT_TRUE(Complete(current_, lease_.lease_id()).ok());
  }

  uint64_t current_ = 0;
  WorkerIdentity stale_;
  AcquirePartitionResponse lease_;
  JobStatus before_;
};

TEST_F(StaleWorkerTest, Heartbeat) { ExpectRefused(Heartbeat(stale_).status()); }

TEST_F(StaleWorkerTest, AcquirePartition) { ExpectRefused(Acquire(stale_).status()); }

TEST_F(StaleWorkerTest, CompletePartition) { ExpectRefused(Complete(stale_, lease_.lease_id())); }

TEST_F(StaleWorkerTest, ReportEval) { ExpectRefused(Eval(stale_, lease_.lease_id(), 0.5)); }

// The hang of issue 13: two workers registered with a process that died;
// the restarted one gives the second of them id 1, which the first still
// uses. The first must be told to register again, so three workers count.
TEST_F(CoordinatorTest, RestartedCoordinator_WorkersOfTheDeadOneRegisterAgain) {
  Init(SYNC, 3, 1, 6);
  const WorkerIdentity first = Ours(Register("first"));
  const WorkerIdentity second = Ours(Register("second"));
  ASSERT_EQ(first.id, 1u);

  // The restarted process: the same job, nothing restored.
  Init(SYNC, 3, 1, 6, 1, /*incarnation=*/first.coordinator_incarnation + 1);
  ASSERT_EQ(Register("second"), 1u);  // the second worker re-registered first
  EXPECT_EQ(Acquire(first).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Heartbeat(second).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(coordinator_->GetStatus().live_workers(), 1u);
  Register("first");  // as the refused worker does
  EXPECT_EQ(coordinator_->state(), WAITING_FOR_WORKERS);
  Register("third");
  EXPECT_EQ(coordinator_->state(), RUNNING);
  EXPECT_EQ(coordinator_->GetStatus().live_workers(), 3u);
}

TEST_F(CoordinatorTest, SyncJobStart_EveryWaitingWorkerActiveBeforeItAsks) {
  Init(SYNC, 2, 1, 4, 0);
  uint64_t a = Register("a");
  EXPECT_EQ(Acquire(a)->kind(), AcquirePartitionResponse::WAIT);  // not started yet
  uint64_t b = Register("b");
  // Both are in the first round, whichever asks first.
  JobStatus s = coordinator_->GetStatus();
  ASSERT_EQ(s.workers_size(), 2);
  EXPECT_EQ(s.workers(0).state(), ACTIVE);
  EXPECT_EQ(s.workers(1).state(), ACTIVE);
  AcquirePartitionResponse rb = *Acquire(b);
  AcquirePartitionResponse ra = *Acquire(a);
  ASSERT_EQ(ra.kind(), AcquirePartitionResponse::TRAIN);
  ASSERT_EQ(rb.kind(), AcquirePartitionResponse::TRAIN);
  EXPECT_NE(ra.partition().index(), rb.partition().index());
  EXPECT_EQ(ra.lease_id(), Acquire(a)->lease_id());  // asking again: the same lease
}

TEST_F(CoordinatorTest, EvalMetrics_InTheResultLineAndCheckedWhole) {
  Init(ASYNC, 1, 1, 1, 0);
  uint64_t a = Register("a");
  AcquirePartitionResponse r = TrainUntilOther(a);
  ASSERT_EQ(r.kind(), AcquirePartitionResponse::EVALUATE);
  ReportEvalRequest request;
  SetSender(Ours(a), &request);
  request.set_lease_id(r.lease_id());
  request.mutable_eval()->set_examples(60000);
  (*request.mutable_eval()->mutable_metrics())["Inertia"] = 1.5e6;
  absl::Status bad = coordinator_->ReportEval(request);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find("Inertia"), std::string::npos) << bad;
  request.mutable_eval()->mutable_metrics()->clear();
  (*request.mutable_eval()->mutable_metrics())["inertia"] = std::nan("");
  EXPECT_EQ(coordinator_->ReportEval(request).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(coordinator_->state(), EVALUATING);  // nothing taken from the refused reports

  request.mutable_eval()->mutable_metrics()->clear();
  (*request.mutable_eval()->mutable_metrics())["inertia"] = 1.5e6;
  (*request.mutable_eval()->mutable_metrics())["explained_variance"] = 0.25;
  ASSERT_TRUE(coordinator_->ReportEval(request).ok());
  EXPECT_EQ(coordinator_->state(), FINISHED);
  const std::string line = coordinator_->ResultLine();
  EXPECT_NE(line.find(" explained_variance=0.25 inertia=1.5e+06 "), std::string::npos) << line;
  EXPECT_EQ(line.find("test_accuracy"), std::string::npos) << line;
}

TEST_F(CoordinatorTest, Status_CountsPartitionsLeftAndWorkers) {
  Init(ASYNC, 2, 2, 4, 0);
  uint64_t a = Register("a");
  Register("b");
  AcquirePartitionResponse r = *Acquire(a);
  JobStatus s = coordinator_->GetStatus();
  EXPECT_EQ(s.partitions_left_in_epoch(), 4u);
  EXPECT_EQ(s.workers(0).state(), ACTIVE);
  EXPECT_EQ(s.workers(1).state(), IDLE);
  EXPECT_TRUE(s.workers(0).has_partition());
  ASSERT_TRUE(Complete(a, r.lease_id()).ok());
  s = coordinator_->GetStatus();
  EXPECT_EQ(s.partitions_left_in_epoch(), 3u);
  EXPECT_EQ(s.workers(0).partitions_completed(), 1u);
  EXPECT_EQ(s.live_workers(), 2u);
}

// The other side of the same cut: the coordinator goes on without its backup
// only when at least half of the workers live when it lost it have called
// since. Workers declared dead since still count (else reaping those cut off
// would shrink the vote); a worker registered since does not (it may be
// one the backup counts, come back).
TEST_F(CoordinatorTest, GoingOnAlone_HalfOfTheWorkersLiveWhenTheBackupWasLostMustCall) {
  Init(ASYNC, 3, 1, 6);
  const uint64_t a = Register("a");
  Register("b");
  const uint64_t c = Register("c");
  clock_.Advance(absl::Seconds(1));
  const absl::Time lost = clock_.Now();
  const absl::Duration lookback = absl::Seconds(7);
  EXPECT_TRUE(absl::IsUnavailable(coordinator_->WorkersLetGoOnAlone(lost, lookback)));
  clock_.Advance(absl::Milliseconds(200));
  ASSERT_TRUE(Heartbeat(a).ok());
  const absl::Status one = coordinator_->WorkersLetGoOnAlone(lost, lookback);
  EXPECT_TRUE(absl::IsUnavailable(one)) << one;
  EXPECT_NE(one.message().find("only 1 of the job's 3 live workers"), std::string::npos) << one;
  // b and c are cut off: declared dead, still counted; a newcomer is not.
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(Heartbeat(a).ok());
  ASSERT_EQ(coordinator_->ReapSilentWorkers(), 2);
  Register("d");
  EXPECT_TRUE(absl::IsUnavailable(coordinator_->WorkersLetGoOnAlone(lost, lookback)));
  // b registering again is a newcomer too.
  Register("b");
  EXPECT_TRUE(absl::IsUnavailable(coordinator_->WorkersLetGoOnAlone(lost, lookback)));
  EXPECT_EQ(Heartbeat(c).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(CoordinatorTest, GoingOnAlone_TwoOfThreeCalling) {
  Init(ASYNC, 3, 1, 6);
  const uint64_t a = Register("a");
  const uint64_t b = Register("b");
  Register("c");
  const absl::Time lost = clock_.Now() + absl::Milliseconds(1);
  clock_.Advance(absl::Milliseconds(500));
  ASSERT_TRUE(Heartbeat(a).ok());
  ASSERT_TRUE(Heartbeat(b).ok());
  EXPECT_TRUE(coordinator_->WorkersLetGoOnAlone(lost, absl::Seconds(7)).ok());
}

TEST_F(CoordinatorTest, GoingOnAlone_NeverWithNoWorkerLiveWhenTheBackupWasLost) {
  Init(ASYNC, 1, 1, 2);
  const absl::Time lost = clock_.Now();
  clock_.Advance(absl::Milliseconds(100));
  const uint64_t late = Register("late");
  ASSERT_TRUE(Heartbeat(late).ok());
  EXPECT_TRUE(absl::IsUnavailable(coordinator_->WorkersLetGoOnAlone(lost, absl::Seconds(7))));
}

// A one-shard job's coordinator backup takes over on the word of a majority
// of the live workers (those that came to it while the coordinator was
// silent); dead and departed workers do not count either way.
TEST(WorkersWitnessTest, AMajorityOfTheLiveWorkersMustHaveCome) {
  CoordinatorWorkers workers;
  auto add = [&](uint64_t id, WorkerState state) {
    WorkerStatus* status = workers.add_workers()->mutable_status();
    status->set_worker_id(id);
    status->set_state(state);
  };
  add(1, ACTIVE);
  add(2, IDLE);
  add(3, EVALUATING_MODEL);
  add(4, DEAD);
  add(5, LEFT);
  EXPECT_TRUE(WorkersWitnessCoordinatorLoss(workers, {1, 3}).ok());
  EXPECT_TRUE(WorkersWitnessCoordinatorLoss(workers, {1, 2, 3}).ok());
  const absl::Status one = WorkersWitnessCoordinatorLoss(workers, {2});
  EXPECT_TRUE(absl::IsFailedPrecondition(one)) << one;
  EXPECT_NE(one.message().find("only 1 of the job's 3 live workers"), std::string::npos) << one;
  // The dead, the departed, unknown ids and registrations are no majority.
  EXPECT_TRUE(absl::IsFailedPrecondition(WorkersWitnessCoordinatorLoss(workers, {2, 4, 5, 9, 0})));
  EXPECT_TRUE(absl::IsFailedPrecondition(WorkersWitnessCoordinatorLoss(workers, {})));

  // Two live workers: both must come (one is not more than half).
  CoordinatorWorkers two;
  for (uint64_t id : {1, 2}) {
    WorkerStatus* status = two.add_workers()->mutable_status();
    status->set_worker_id(id);
    status->set_state(ACTIVE);
  }
  EXPECT_TRUE(absl::IsFailedPrecondition(WorkersWitnessCoordinatorLoss(two, {1})));
  EXPECT_TRUE(WorkersWitnessCoordinatorLoss(two, {1, 2}).ok());

  // No live worker: any worker that came (a registration) is enough.
  CoordinatorWorkers none;
  EXPECT_TRUE(absl::IsFailedPrecondition(WorkersWitnessCoordinatorLoss(none, {})));
  EXPECT_TRUE(WorkersWitnessCoordinatorLoss(none, {0}).ok());
}

}  // namespace
}  // namespace fulcrum
