# Shell helpers of the bench scripts that start ps_server and worker
# processes (failover.sh, restart_stress.sh), sourced by them. The sourcing
# script adds each process's pid to the array `pids`.

# SIGKILLs every process in `pids` and reaps them.
kill_started() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  wait 2>/dev/null
}

# Prints the port a process wrote to port file $1, once it has, while the
# process (pid $2) lives; fails after 30 s or when it exits.
wait_port() {
  for _ in $(seq 300); do
    [[ -s "$1" ]] && { cat "$1"; return 0; }
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
