#!/usr/bin/env bash
# Start a real single-node Slurm cluster on this machine from Debian's packages (slurm-wlm, munge), for the
# tests of the Slurm executor (tests/app/test_slurm.py). Idempotent: installs, configures and starts only what is
# missing, then waits until `sinfo` shows the node usable. Runs as root (or through sudo).
#
#   bash .ci/slurm.sh            # set up / check the cluster
#   SLURM_PARTITION=name bash .ci/slurm.sh   # another partition name (default: debug)
#
# The daemons run as root and jobs run as the submitting user on this same machine, so job output lands in
# the same file system the tests read. A slurm.conf that this script did not write is used as it is.
set -euo pipefail

PARTITION="${SLURM_PARTITION:-debug}"
CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
MARK="# written by amltui .ci/slurm.sh"
STATE_DIR=/var/lib/slurm
LOG_DIR=/var/log/slurm
WAIT_S=60

say() { echo "slurm.sh: $*"; }
die() { echo "slurm.sh: ERROR: $*" >&2; exit 1; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "must run as root (or have sudo) to install and start Slurm"
  SUDO="sudo"
fi

# -- packages ----------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sinfo >/dev/null \
    || ! command -v munged >/dev/null; then
  say "installing slurm-wlm and munge from Debian"
  $SUDO apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge >/dev/null \
    || die "apt-get install slurm-wlm munge failed"
else
  say "slurm-wlm and munge are installed"
fi

# -- munge -------------------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
  say "creating the munge key"
  $SUDO mkdir -p /etc/munge
  $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
# munged refuses keys and directories that other users can read or write.
$SUDO chown munge:munge /etc/munge/munge.key
$SUDO chmod 0400 /etc/munge/munge.key
$SUDO mkdir -p /run/munge /var/lib/munge /var/log/munge
$SUDO chown munge:munge /run/munge /var/lib/munge /var/log/munge
$SUDO chmod 0755 /run/munge

if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "munged is running"
else
  say "starting munged"
  $SUDO runuser -u munge -- /usr/sbin/munged || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 1 20); do
    if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then break; fi
    sleep 0.5
  done
  munge -n | unmunge >/dev/null 2>&1 || die "munged started but munge/unmunge fails (see /var/log/munge/munged.log)"
fi

# -- slurm.conf --------------------------------------------------------------------------------------------
HOST="$(hostname -s)"
# The node line must not claim more than slurmd detects (else the node is drained), so take slurmd's own view.
HW="$(slurmd -C | head -n 1)" || die "slurmd -C failed"
field() { echo "$HW" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
CPUS="$(field CPUs)"; SOCKETS="$(field SocketsPerBoard)"; CORES="$(field CoresPerSocket)"
THREADS="$(field ThreadsPerCore)"; MEM_MB="$(field RealMemory)"
[ -n "$CPUS" ] && [ -n "$MEM_MB" ] || die "could not read the CPU count / memory from 'slurmd -C': $HW"
# A bit below the real memory: slurmd drains a node whose RealMemory exceeds what it finds at start.
NODE_MEM=$(( MEM_MB * 95 / 100 ))

new_conf="$(cat <<EOF
$MARK
ClusterName=amltui
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
MailProg=/bin/true
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# A cancelled job's processes get SIGTERM, then SIGKILL after KillWait seconds.
KillWait=15
StateSaveLocation=$STATE_DIR/slurmctld
SlurmdSpoolDir=$STATE_DIR/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS SocketsPerBoard=$SOCKETS CoresPerSocket=$CORES ThreadsPerCore=$THREADS RealMemory=$NODE_MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)"

running() { [ -s "$1" ] && $SUDO kill -0 "$(cat "$1")" 2>/dev/null; }

$SUDO mkdir -p "$CONF_DIR" "$STATE_DIR/slurmctld" "$STATE_DIR/slurmd" "$LOG_DIR"
restart=0
if [ -f "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
  say "$CONF was not written by this script: using it as it is"
elif [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$new_conf" ]; then
  say "$CONF is up to date ($CPUS CPUs, RealMemory=$NODE_MEM MB, partition $PARTITION)"
else
  say "writing $CONF ($CPUS CPUs, RealMemory=$NODE_MEM MB, partition $PARTITION)"
  echo "$new_conf" | $SUDO tee "$CONF" >/dev/null
  $SUDO chmod 0644 "$CONF"
  restart=1
fi

# -- daemons -----------------------------------------------------------------------------------------------
stop() {  # stop a daemon we (or an earlier run of this script) started, by the pid in its pid file
  local pidfile="$1" name="$2"
  if running "$pidfile"; then
    say "restarting $name for the new configuration"
    $SUDO kill "$(cat "$pidfile")"
    for _ in $(seq 1 20); do running "$pidfile" || break; sleep 0.5; done
  fi
}
if [ "$restart" = 1 ]; then
  stop /run/slurmd.pid slurmd
  stop /run/slurmctld.pid slurmctld
fi

if running /run/slurmctld.pid; then
  say "slurmctld is running"
else
  say "starting slurmctld"
  $SUDO /usr/sbin/slurmctld || die "slurmctld did not start (see $LOG_DIR/slurmctld.log)"
fi
for _ in $(seq 1 30); do
  if scontrol ping 2>/dev/null | grep -q "is UP"; then break; fi
  sleep 0.5
done
scontrol ping 2>/dev/null | grep -q "is UP" || die "slurmctld does not answer 'scontrol ping' (see $LOG_DIR/slurmctld.log)"

if running /run/slurmd.pid; then
  say "slurmd is running"
else
  say "starting slurmd"
  $SUDO /usr/sbin/slurmd || die "slurmd did not start (see $LOG_DIR/slurmd.log)"
fi

# -- wait for the node -------------------------------------------------------------------------------------
deadline=$(( $(date +%s) + WAIT_S ))
resumed=0
while :; do
  state="$(sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n 1 || true)"
  case "$state" in
    idle|mixed|allocated|completing)
      say "node $HOST is $state; partition $PARTITION is ready:"
      sinfo
      exit 0 ;;
    down*|drain*|drained*|fail*)
      if [ "$resumed" = 0 ]; then
        say "node $HOST is $state; resuming it"
        $SUDO scontrol update NodeName="$HOST" State=RESUME || true
        resumed=1
      fi ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    reason="$(sinfo -h -N -n "$HOST" -o '%T %E' 2>/dev/null || true)"
    die "node $HOST not usable after ${WAIT_S}s (sinfo: '${reason:-no answer}'); see $LOG_DIR/slurmd.log and $LOG_DIR/slurmctld.log"
  fi
  sleep 1
done
