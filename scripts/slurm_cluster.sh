#!/usr/bin/env bash
# A real single-host Slurm cluster for tests and CI: Debian's slurm-wlm (22.05 on bookworm), one munged,
# one slurmctld and N slurmd daemons (n1..nN, all NodeAddr=127.0.0.1, one port each), optional fake GPUs
# (gres gpu backed by character devices), job end records through jobcomp/filetxt (`sacct -c`).
# Nothing is written outside $SLURM_CLUSTER_DIR except the Debian packages themselves.
#
#   scripts/slurm_cluster.sh up       install when missing, configure, start, wait until every node is idle
#   scripts/slurm_cluster.sh env      print the exports callers need (also in $SLURM_CLUSTER_DIR/env)
#   scripts/slurm_cluster.sh status   daemons and sinfo
#   scripts/slurm_cluster.sh smoke    2-node srun job, failing job, scancel, sacct -c
#   scripts/slurm_cluster.sh stop     cancel every job, stop the daemons by their recorded PIDs
#
# Settings (environment): SLURM_CLUSTER_DIR (/tmp/tao-slurm), SLURM_CLUSTER_NODES (2),
# SLURM_CLUSTER_GPUS (fake GPUs per node, 2; 0 = no gres), SLURM_CLUSTER_PORT_BASE (16800),
# SLURM_CLUSTER_NO_INSTALL=1 (fail instead of running apt-get), SLURM_CLUSTER_TIMEOUT (seconds, 60).
# `up` records DOCKER_HOST in the env file when it is set, so jobs submitted with it reach that engine.
set -euo pipefail

DIR=${SLURM_CLUSTER_DIR:-/tmp/tao-slurm}
NODES=${SLURM_CLUSTER_NODES:-2}
GPUS=${SLURM_CLUSTER_GPUS:-2}
PORT_BASE=${SLURM_CLUSTER_PORT_BASE:-16800}
TIMEOUT=${SLURM_CLUSTER_TIMEOUT:-60}
PARTITION=debug
CONF="$DIR/etc/slurm.conf"
export SLURM_CONF="$CONF"

log() { printf 'slurm_cluster: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Poll "$@" every 0.2 s until it succeeds, for at most $1 seconds.
wait_for() {
  local limit=$1; shift
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}

install_packages() {
  local missing=()
  for bin in slurmctld slurmd sbatch munged; do command -v "$bin" >/dev/null 2>&1 || missing+=("$bin"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "${SLURM_CLUSTER_NO_INSTALL:-0}" = 1 ] && die "missing ${missing[*]} and SLURM_CLUSTER_NO_INSTALL=1"
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; run as root to install slurm-wlm and munge"
  log "installing slurmctld slurmd slurm-client munge"
  # The packages' maintainer scripts would start system-wide services; refuse that for the install.
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    slurmctld slurmd slurm-client munge >/dev/null
  [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

node_list() { if [ "$NODES" -eq 1 ]; then echo n1; else echo "n[1-$NODES]"; fi; }

write_config() {
  mkdir -p "$DIR"/{etc,state,spool,run,log,munge,dev}
  chmod 755 "$DIR" "$DIR/munge"   # munged wants o+x on its socket dir; job users need to reach it
  if [ ! -s "$DIR/munge/munge.key" ]; then
    head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
    chmod 600 "$DIR/munge/munge.key"
  fi
  local first=$((PORT_BASE + 201)) last=$((PORT_BASE + 200 + NODES)) gres="" ports
  ports=$first; [ "$NODES" -gt 1 ] && ports="$first-$last"
  : >"$DIR/etc/gres.conf"
  if [ "$GPUS" -gt 0 ]; then
    gres="Gres=gpu:$GPUS"
    for i in $(seq 1 "$NODES"); do
      for g in $(seq 0 $((GPUS - 1))); do
        # Character devices like /dev/null: slurmd only needs File= to exist and be a device.
        [ -c "$DIR/dev/n$i-gpu$g" ] || mknod "$DIR/dev/n$i-gpu$g" c 1 3
      done
      echo "NodeName=n$i Name=gpu File=$DIR/dev/n$i-gpu[0-$((GPUS - 1))]" >>"$DIR/etc/gres.conf"
    done
  fi
  cat >"$CONF" <<EOF
ClusterName=ci
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$((PORT_BASE + 17))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.sock
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool/%n
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
KillWait=10
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
MinJobAge=3600
GresTypes=gpu
NodeName=$(node_list) NodeHostname=localhost NodeAddr=127.0.0.1 Port=$ports CPUs=1 RealMemory=1000 $gres
PartitionName=$PARTITION Nodes=$(node_list) Default=YES MaxTime=INFINITE State=UP
EOF
  {
    echo "export SLURM_CONF=$CONF"
    echo "export SLURM_CLUSTER_DIR=$DIR"
    echo "export SLURM_CLUSTER_PARTITION=$PARTITION"
    echo "export SLURM_CLUSTER_NODES=$NODES"
    echo "export SLURM_CLUSTER_GPUS=$GPUS"
    if [ -n "${DOCKER_HOST:-}" ]; then echo "export DOCKER_HOST=$DOCKER_HOST"; fi
  } >"$DIR/env"
}

# A PID from a pidfile counts only while that process still runs the daemon named (PIDs get reused).
live_pid() {
  local file=$1 name=$2 pid
  [ -s "$file" ] || return 1
  pid=$(tr -dc '0-9' <"$file")
  [ -n "$pid" ] && grep -qa "$name" "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

all_idle() {
  local states
  states=$(sinfo -h -N -p "$PARTITION" -o '%t' 2>/dev/null) || return 1
  [ "$(grep -c '^idle$' <<<"$states")" -eq "$NODES" ]
}

# Detached from the caller's session, so a CI step or shell ending does not take the daemons with it.
spawn() { local out=$1; shift; setsid "$@" </dev/null >>"$out" 2>&1 & }

start() {
  if live_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null && all_idle; then
    log "already up ($NODES nodes idle) in $DIR"; return 0
  fi
  install_packages
  write_config
  if ! live_pid "$DIR/munge/munged.pid" munged >/dev/null; then
    spawn "$DIR/log/munged.out" munged -F --force --key-file="$DIR/munge/munge.key" \
      --socket="$DIR/munge/munge.sock" --pid-file="$DIR/munge/munged.pid" \
      --seed-file="$DIR/munge/munged.seed" --log-file="$DIR/log/munged.log"
    wait_for 15 test -S "$DIR/munge/munge.sock" || die "munged did not start: $(tail -3 "$DIR/log/munged.log")"
  fi
  if ! live_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null; then
    spawn "$DIR/log/slurmctld.out" slurmctld -D -i
    wait_for "$TIMEOUT" scontrol ping || die "slurmctld did not answer: $(tail -5 "$DIR/log/slurmctld.log")"
  fi
  for i in $(seq 1 "$NODES"); do
    live_pid "$DIR/run/slurmd-n$i.pid" slurmd >/dev/null || spawn "$DIR/log/slurmd-n$i.out" slurmd -D -N "n$i"
  done
  wait_for "$TIMEOUT" all_idle || die "nodes not idle after ${TIMEOUT}s: $(sinfo -h -N -o '%N %t %E' 2>&1)"
  log "up: $NODES nodes idle, partition $PARTITION; eval \"\$($0 env)\""
}

stop() {
  if [ -f "$CONF" ] && live_pid "$DIR/run/slurmctld.pid" slurmctld >/dev/null; then
    scancel --full --quiet --partition="$PARTITION" 2>/dev/null || true
    wait_for 20 test -z "$(squeue -h -o %i 2>/dev/null)" || log "jobs still listed after 20 s"
  fi
  local pids=() pid f
  for f in "$DIR"/run/slurmd-*.pid; do pid=$(live_pid "$f" slurmd) && pids+=("$pid"); done
  pid=$(live_pid "$DIR/run/slurmctld.pid" slurmctld) && pids+=("$pid")
  pid=$(live_pid "$DIR/munge/munged.pid" munged) && pids+=("$pid")
  [ ${#pids[@]} -eq 0 ] && { log "nothing running in $DIR"; return 0; }
  kill -TERM "${pids[@]}" 2>/dev/null || true
  local end=$((SECONDS + 15)) left
  while :; do
    left=()
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left+=("$pid"); done
    [ ${#left[@]} -eq 0 ] && break
    if [ "$SECONDS" -ge "$end" ]; then kill -KILL "${left[@]}" 2>/dev/null || true; break; fi
    sleep 0.2
  done
  log "stopped ${#pids[@]} daemons"
}

status() {
  local f
  for f in "$DIR"/munge/munged.pid "$DIR"/run/*.pid; do
    [ -e "$f" ] || continue
    printf '%-28s %s\n' "$(basename "$f")" "$(live_pid "$f" "$(basename "$f" .pid | sed 's/-.*//')" || echo dead)"
  done
  sinfo -N -o '%N %P %t %G' 2>&1 || true
}

job_state() { scontrol show job "$1" -o | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }

smoke() {
  eval "$(cat "$DIR/env")"
  local out="$DIR/smoke" id state
  mkdir -p "$out"
  # The script file (not --wrap) so each task expands $SLURM_NODEID itself.
  printf '#!/bin/bash\nsrun -l bash -c '\''echo node=$SLURM_NODEID name=$SLURMD_NODENAME'\''\n' >"$out/two.sh"
  id=$(sbatch --parsable -N "$NODES" -o "$out/two.out" "$out/two.sh")
  wait_for 30 sh -c "scontrol show job $id -o | grep -q JobState=COMPLETED" || die "2-node job $id: $(job_state "$id")"
  [ "$(grep -c 'node=' "$out/two.out")" -eq "$NODES" ] || die "expected $NODES task lines: $(cat "$out/two.out")"
  id=$(sbatch --parsable -o /dev/null --wrap 'exit 3')
  wait_for 30 sh -c "scontrol show job $id -o | grep -q 'JobState=FAILED.*ExitCode=3:0'" || die "job $id not FAILED 3"
  id=$(sbatch --parsable -N "$NODES" -o /dev/null --wrap 'srun sleep 300')
  wait_for 30 sh -c "scontrol show job $id -o | grep -q JobState=RUNNING" || die "job $id never ran"
  scancel "$id"
  wait_for 30 sh -c "scontrol show job $id -o | grep -q JobState=CANCELLED" || die "job $id not CANCELLED"
  wait_for 10 sh -c "sacct -c -j $id -P -n -o State | grep -q CANCELLED" || die "no jobcomp record for $id"
  log "smoke passed: 2-node srun, FAILED exit 3, scancel, sacct -c"
}

case "${1:-}" in
  up|start) start ;;
  env) cat "$DIR/env" ;;
  status) status ;;
  smoke) smoke ;;
  stop|down) stop ;;
  *) echo "usage: $0 up|env|status|smoke|stop" >&2; exit 2 ;;
esac
