#!/usr/bin/env bash
# stop_slurm.sh - stop the single-node Slurm started by start_slurm.sh.
# Cancels the remaining jobs, then stops slurmd, slurmctld and munged by their pid
# files (never by process name). --purge also deletes the state and logs, so the next
# start is a clean cluster (job ids from 1).
set -uo pipefail
BASE=${DAMNIT_SLURM_BASE:-/var/tmp/damnit-dagster-slurm}
log() { printf '[stop_slurm %s] %s\n' "$(date +%T)" "$*" >&2; }

stop_pidfile() {  # NAME PIDFILE
  local f=$2 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$1" ]; then
    log "pid file $f is stale (pid $pid is not $1)"
    rm -f "$f"
    return 0
  fi
  log "stopping $1 (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$1 still alive after 15 s: SIGKILL"
    kill -KILL "$pid"
  fi
  rm -f "$f"
}

if [ "$(cat "/proc/$(cat "$BASE/run/slurmctld.pid" 2>/dev/null)/comm" 2>/dev/null)" = slurmctld ]; then
  jobs=$(squeue -h -o %i 2>/dev/null || true)
  if [ -n "$jobs" ]; then
    log "cancelling jobs: $(echo $jobs)"
    scancel $jobs 2>/dev/null || true
    for _ in $(seq 50); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
  fi
fi
stop_pidfile slurmd "$BASE/run/slurmd.pid"
stop_pidfile slurmctld "$BASE/run/slurmctld.pid"
stop_pidfile munged /run/munge/munged.pid

if [ "${1:-}" = "--purge" ]; then
  log "removing $BASE/state and $BASE/log"
  rm -rf "$BASE/state" "$BASE/log"
fi
