#!/usr/bin/env bash
# The Docker Swarm deployment (deploy/docker-stack.yml), tested on this
# machine's engine as a single-node swarm: builds the image FROM scratch,
# makes the engine a swarm manager if it is not in a swarm (docker swarm
# init), labels the node for all four ps_servers (each shard and its
# backup), deploys the stack, waits until training progresses with a
# checkpoint and both shards have their backups, SIGKILLs the process of
# shard 1's primary task (shard1 or shard1-backup, whichever registered
# first) and of one worker task, checks that the backup takes over, that
# Swarm replaces both tasks, that the replaced ps_server joins as the new
# backup and that the job finishes with the usual accuracy.
# Removes the stack, its volumes and network, the labels and the swarm (if
# it made it) however it ends.
#
# Prints "swarm_test: PASS", "swarm_test: FAIL: why" (exit 1) or
# "swarm_test: SKIPPED: why" (exit 2: the engine cannot run a swarm; the
# reason is the engine's own message).
set -uo pipefail
cd "$(dirname "$0")/.."

stack="fulcrumswarm$$"
export FULCRUM_IMAGE="fulcrum:test"
export FULCRUM_MODEL=softmax FULCRUM_MODE=sync FULCRUM_WORKERS=3
export FULCRUM_CHECKPOINT_EVERY=1s FULCRUM_STEP_DELAY_MS=2
min_accuracy=0.83
made_swarm=false
node=""

# The running container of a service's task, if any.
task_container() {
  docker ps -q --filter "label=com.docker.swarm.service.name=${stack}_$1" --filter status=running | head -1
}
status_json() {
  local c
  c="$(task_container coordinator)"
  [[ -n "$c" ]] && docker exec "$c" /fulcrum/psctl status --json 2>/dev/null
}
# field, wait_for
source deploy/test_helpers.sh
# Tasks of a service that ever ran, the current one included.
task_count() { docker service ps -q "${stack}_$1" 2>/dev/null | wc -l; }

cleanup() {
  docker stack rm "$stack" >/dev/null 2>&1
  # Volumes and the network go once the tasks' containers are gone.
  local deadline=$((SECONDS + 60))
  while ((SECONDS < deadline)) &&
    [[ -n "$(docker ps -aq --filter "label=com.docker.stack.namespace=$stack")" ]]; do
    sleep 1
  done
  docker ps -aq --filter "label=com.docker.stack.namespace=$stack" | xargs -r docker rm -f >/dev/null 2>&1
  docker volume ls -q --filter "label=com.docker.stack.namespace=$stack" | xargs -r docker volume rm >/dev/null 2>&1
  docker network ls -q --filter "label=com.docker.stack.namespace=$stack" | xargs -r docker network rm >/dev/null 2>&1
  if [[ -n "$node" ]]; then
    docker node update --label-rm fulcrum.coordinator --label-rm fulcrum.coordinator-backup \
      --label-rm fulcrum.shard1 --label-rm fulcrum.shard1-backup "$node" >/dev/null 2>&1
  fi
  if $made_swarm; then
    docker swarm leave --force >/dev/null 2>&1
    docker network rm docker_gwbridge >/dev/null 2>&1  # made by swarm init
  fi
}
trap cleanup EXIT
# Interrupted (a CI timeout, ^C): still clean up.
trap 'exit 1' INT TERM

fail() {
  echo "swarm_test: FAIL: $*"
  echo "--- services:"
  docker stack ps --no-trunc --format '{{.Name}} {{.CurrentState}} {{.Error}}' "$stack" 2>&1 | sed 's/^/    /'
  echo "--- status:"
  status_json 2>&1 | sed 's/^/    /'
  local service
  for service in coordinator coordinator-backup shard1 shard1-backup worker; do
    echo "--- $service log (tail, status lines left out):"
    docker service logs --no-task-ids --tail=60 "${stack}_$service" 2>&1 |
      grep -v ' RUNNING round=' | tail -25 | sed 's/^/    /'
  done
  exit 1
}

case "$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null)" in
  inactive)
    if ! out="$(docker swarm init --advertise-addr 127.0.0.1 2>&1)"; then
      echo "swarm_test: SKIPPED: docker swarm init: $out"
      exit 2
    fi
    made_swarm=true
    ;;
  active)
    if [[ "$(docker info --format '{{.Swarm.ControlAvailable}}')" != true ]]; then
      echo "swarm_test: SKIPPED: this engine is a worker of another swarm; stacks are deployed from a manager"
      exit 2
    fi
    ;;
  *)
    echo "swarm_test: SKIPPED: the engine's swarm state is $(docker info --format '{{.Swarm.LocalNodeState}}' 2>&1)"
    exit 2
    ;;
esac
node="$(docker info --format '{{.Swarm.NodeID}}')"
docker node update --label-add fulcrum.coordinator=true --label-add fulcrum.coordinator-backup=true \
  --label-add fulcrum.shard1=true --label-add fulcrum.shard1-backup=true "$node" >/dev/null ||
  fail "could not label node $node"

build_log="$(mktemp)"
deploy/build_image.sh "$FULCRUM_IMAGE" >"$build_log" 2>&1 || { cat "$build_log"; fail "image build failed"; }
rm -f "$build_log"
deploy_out="$(docker stack deploy --resolve-image=never -c deploy/docker-stack.yml "$stack" 2>&1)" ||
  fail "docker stack deploy: $deploy_out"

# Shard 1's primary: the one of its two services that registered first.
shard1_primary() { grep -o '"address": "shard1[-a-z]*:50051"' <<<"$json" | head -1 | sed 's/.*"\(shard1[-a-z]*\):.*/\1/'; }
wait_for '[[ "$(field state <<<"$json")" == RUNNING && -n "$(field sequence <<<"$json")" ]] &&
          grep -q "\"backup_address\": \"coordinator-backup:50051\"" <<<"$json" &&
          [[ -n "$(shard1_primary)" ]] && (( $(grep -c "\"backup_up\": true" <<<"$json") == 2 ))' 180 ||
  fail "no training progress with a checkpoint and both backups up within 180 s"
primary="$(shard1_primary)"
backup=shard1-backup
[[ "$primary" == shard1-backup ]] && backup=shard1
grep -q "\"backup_address\": \"$backup:50051\"" <<<"$json" ||
  fail "shard 1's primary is $primary but its backup is not $backup"
echo "swarm_test: training ($(field examples_seen <<<"$json") examples seen); shard 1 at $primary, backed up at $backup"

# The image runs as nobody on a read-only root file system here too.
shard="$(task_container "$primary")"
worker="$(task_container worker)"
[[ -n "$shard" && -n "$worker" ]] || fail "no running $primary or worker task"
[[ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$shard")" == true ]] ||
  fail "the shard's root file system is writable"
shard_pid="$(docker inspect -f '{{.State.Pid}}' "$shard")"
worker_pid="$(docker inspect -f '{{.State.Pid}}' "$worker")"
uid="$(awk '/^Uid:/ {print $2}' "/proc/$shard_pid/status")"
[[ "$uid" == 65534 ]] || fail "ps_server runs as uid $uid, not 65534"
shard_tasks="$(task_count "$primary")"
worker_tasks="$(task_count worker)"
echo "swarm_test: crashing shard 1's primary task $primary (host pid $shard_pid) and a worker task (host pid $worker_pid)"
kill -9 "$shard_pid" "$worker_pid" || fail "could not kill $shard_pid $worker_pid"

wait_for 'grep -A20 "\"address\": \"$backup:50051\"" <<<"$json" | grep -q "\"failovers\": \"1\""' 30 ||
  fail "$backup did not take over from the crashed primary within 30 s"
echo "swarm_test: $backup took over"

# Swarm replaces each failed task with a new one; the new ps_server finds
# the shard served and becomes its backup.
deadline=$((SECONDS + 90))
while ((SECONDS < deadline)); do
  new_shard="$(task_container "$primary")"
  if (($(task_count "$primary") > shard_tasks && $(task_count worker) > worker_tasks)) &&
    [[ -n "$new_shard" && "$new_shard" != "$shard" ]]; then
    break
  fi
  sleep 0.5
done
(($(task_count "$primary") > shard_tasks)) || fail "Swarm did not replace the $primary task"
(($(task_count worker) > worker_tasks)) || fail "Swarm did not replace the worker task"
echo "swarm_test: Swarm replaced both tasks"
wait_for '[[ "$(field state <<<"$json")" == FINISHED ]] ||
          grep -A20 "\"address\": \"$backup:50051\"" <<<"$json" |
            grep -q "\"backup_address\": \"$primary:50051\""' 90 ||
  fail "the replaced $primary task did not become $backup's backup"
[[ "$(field state <<<"$json")" == FINISHED ]] || echo "swarm_test: the replaced $primary task is $backup's backup"

wait_for '[[ "$(field state <<<"$json")" == FINISHED ]]' 300 || fail "the job did not finish within 300 s"
shard1="$(grep -A20 "\"address\": \"$backup:50051\"" <<<"$json")"
[[ "$(field up <<<"$shard1")" == true && "$(field pushes <<<"$shard1")" -gt 0 ]] ||
  fail "shard 1 is not up at $backup or took no pushes"
accuracy="$(grep -A3 '"last_eval"' <<<"$json" | field test_accuracy)"
echo "swarm_test: job finished, test_accuracy=$accuracy"
awk -v a="$accuracy" -v m="$min_accuracy" 'BEGIN { exit !(a >= m) }' ||
  fail "test accuracy $accuracy below $min_accuracy"
echo "swarm_test: PASS"
