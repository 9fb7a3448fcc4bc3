#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests/test_slurm.py (Debian's Slurm 22.05, no systemd).
#
#   tests/slurm/cluster.sh install   apt-get install slurmctld slurmd slurm-client munge (idempotent)
#   tests/slurm/cluster.sh up        start munged, slurmctld and slurmd (idempotent); prints the two variables a
#                                    client needs: `export SLURM_CONF=... PATH=<dir>/bin:$PATH`
#   tests/slurm/cluster.sh down      stop exactly the daemons `up` started (their pid files), nothing else
#   tests/slurm/cluster.sh status    the daemons' pids and `sinfo`
#
# Everything lives in $DAT_SLURM_DIR (default /tmp/dat-slurm-<uid>): slurm.conf, gres.conf, a private munge key and
# socket, state, spool, logs and pid files. Commands find this cluster through SLURM_CONF=$DAT_SLURM_DIR/slurm.conf;
# /etc/slurm and any system munged are left alone. Ports 16817/16818 (DAT_SLURM_PORT, +1) avoid a system Slurm.
#
# The node is declared bigger than the machine (SlurmdParameters=config_overrides): 16 CPUs, 2 count-only GPUs
# (no device files, CUDA stays invisible) and 128 GB, so that profiles/slurm's real requests (cpus_per_gpu: 8,
# gpu: 1, mem_mb: 64000) are granted as they are; memory and CPUs are not enforced (no cgroups in a container).
# A requeued job waits cred_expire=10 s before it may start again (Slurm default 120 s). Partitions: `cpu` and `gpu`
# (the names in profiles/slurm, PriorityTier 1) and `urgent` (PriorityTier 2), which
# preempts them (PreemptType=preempt/partition_prio, PreemptMode=REQUEUE, GraceTime 0: the preempted job is killed at
# once and requeued; it resumes from its last periodic checkpoint). MinJobAge=65533 (18 h) keeps finished jobs in
# squeue for the executor plugin's squeue status command (there is no slurmdbd, so no sacct).
set -euo pipefail

DIR=${DAT_SLURM_DIR:-/tmp/dat-slurm-$(id -u)}
PORT=${DAT_SLURM_PORT:-16817}
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export SLURM_CONF="$DIR/slurm.conf"

have_binaries() { command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
  && command -v munged >/dev/null; }

running() {  # running <name>: the pid in $DIR/<name>.pid is alive and is that program
  local pidfile="$DIR/$1.pid" pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$1" ]
}

install() {
  if have_binaries; then echo "cluster.sh: slurm and munge already installed"; return; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurmctld slurmd slurm-client munge
}

write_config() {
  local host mem
  host=$(hostname -s)
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
  chmod 755 "$DIR"  # job users reach the munge socket through it
  if [ ! -s "$DIR/munge.key" ]; then
    (umask 077 && head -c 1024 /dev/urandom > "$DIR/munge.key")
  fi
  mem=131072
  cat > "$DIR/slurm.conf.new" <<EOF
# written by tests/slurm/cluster.sh; the machine's own topology: $(slurmd -C | head -1)
ClusterName=datci
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MailProg=/bin/true
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=65533
KillWait=30
JobRequeue=1
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=$host NodeAddr=127.0.0.1 CPUs=16 Boards=1 SocketsPerBoard=1 CoresPerSocket=16 ThreadsPerCore=1 RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=$host MaxTime=INFINITE State=UP PriorityTier=2
EOF
  mv "$DIR/slurm.conf.new" "$DIR/slurm.conf"

  # Slurm drops a GPU without a character device: /dev/null and /dev/zero stand in (task/none: nothing is bound)
  printf 'AutoDetect=off\nNodeName=%s Name=gpu File=/dev/null\nNodeName=%s Name=gpu File=/dev/zero\n' \
    "$host" "$host" > "$DIR/gres.conf"
}

write_srun() {
  # snakemake-executor-plugin-slurm-jobstep 0.6 drops every SLURM_* variable (SLURM_CONF too) before its srun inside a
  # job, so that srun would look for /etc/slurm/slurm.conf: jobs find this one through an srun first on their PATH.
  mkdir -p "$DIR/bin"
  printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$SLURM_CONF" "$(command -v srun)" > "$DIR/bin/srun.new"
  chmod 755 "$DIR/bin/srun.new" && mv "$DIR/bin/srun.new" "$DIR/bin/srun"
}

wait_for() {  # wait_for <seconds> <command...>
  local n=$1; shift
  for _ in $(seq "$n"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  return 1
}

up() {
  have_binaries || { echo "cluster.sh: slurm is not installed (run: $0 install)" >&2; exit 1; }
  if ! running slurmctld || ! running slurmd || ! running munged; then
    write_config
  fi
  if ! running munged; then
    $SUDO munged --force --socket="$DIR/munge.socket" --pid-file="$DIR/munged.pid" --key-file="$DIR/munge.key" \
      --log-file="$DIR/log/munged.log" --seed-file="$DIR/state/munged.seed"
    wait_for 10 running munged || { echo "cluster.sh: munged did not start" >&2; exit 1; }
  fi
  if ! running slurmctld; then
    # -c: a fresh cluster (no jobs or node states of an earlier one in $DIR)
    $SUDO env SLURM_CONF="$SLURM_CONF" slurmctld -c
    wait_for 20 running slurmctld || { echo "cluster.sh: slurmctld did not start; $DIR/log/slurmctld.log:" >&2;
      tail -n 20 "$DIR/log/slurmctld.log" >&2; exit 1; }
  fi
  if ! running slurmd; then
    $SUDO env SLURM_CONF="$SLURM_CONF" slurmd
    wait_for 20 running slurmd || { echo "cluster.sh: slurmd did not start; $DIR/log/slurmd.log:" >&2;
      tail -n 20 "$DIR/log/slurmd.log" >&2; exit 1; }
  fi
  if ! wait_for 60 node_idle; then
    echo "cluster.sh: the node did not come up; sinfo:" >&2; sinfo -N -l >&2 || true
    tail -n 20 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2; exit 1
  fi
  write_srun
  echo "export SLURM_CONF=$SLURM_CONF PATH=$DIR/bin:\$PATH"
}

node_idle() {  # the node takes jobs (idle, mixed or allocated, not down/drained)
  local state
  state=$(sinfo -h -N -p cpu -o %T 2>/dev/null | head -1)
  case "$state" in idle | mixed | allocated | completing) return 0 ;; *) return 1 ;; esac
}

down() {
  local name pid
  for name in slurmd slurmctld munged; do
    if running "$name"; then
      pid=$(cat "$DIR/$name.pid")
      $SUDO kill "$pid"
      for _ in $(seq 30); do [ -d "/proc/$pid" ] || break; sleep 0.5; done
      if [ -d "/proc/$pid" ]; then $SUDO kill -9 "$pid"; fi
      echo "cluster.sh: stopped $name ($pid)"
    fi
    $SUDO rm -f "$DIR/$name.pid"
  done
}

status() {
  local name rc=0
  for name in munged slurmctld slurmd; do
    if running "$name"; then echo "$name: running ($(cat "$DIR/$name.pid"))"; else echo "$name: stopped"; rc=1; fi
  done
  if [ "$rc" = 0 ]; then sinfo; fi
  return "$rc"
}

case "${1:-}" in
  install) install ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
