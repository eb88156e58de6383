#!/usr/bin/env bash
# Install and start a one-node SLURM cluster on this machine (Debian's slurm-wlm and munge).
#
# Idempotent: packages already installed are not reinstalled, a running munged/slurmctld/slurmd is
# left alone, and the slurm.conf is rewritten only when its content would change. Needs root.
# Used by .ci/run and by developers:
#
#     sudo scripts/slurm-local.sh            # install + configure + start; waits until the node is idle
#     scripts/slurm-local.sh --status        # print sinfo and exit 0 when the node accepts jobs
#
# The cluster: one partition `debug` (default) holding this host with all its CPUs, no accounting
# database (so `sacct` is unavailable; job records are `scontrol show job` and the job's own output
# files), process tracking without cgroups so that it also runs inside containers.
set -euo pipefail

CONF_DIR=/etc/slurm
HOST="$(hostname -s)"
CPUS="$(nproc)"
MEMORY_MB="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"

node_ready() {
    command -v sinfo >/dev/null && sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'
}

if [ "${1:-}" = "--status" ]; then
    sinfo 2>&1 || true
    node_ready
    exit $?
fi

if [ "$(id -u)" != 0 ]; then
    echo "slurm-local.sh: run as root (it installs packages and starts daemons)" >&2
    exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
fi

# munge: the key exists after the package's postinst; create one if a minimal image skipped it
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! pgrep -x munged >/dev/null; then
    runuser -u munge -- /usr/sbin/munged
fi

mkdir -p "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
wanted="$(mktemp)"
cat >"$wanted" <<EOF
# written by aiida-mlip scripts/slurm-local.sh: a one-node cluster for tests and development
ClusterName=aiida-mlip-local
SlurmctldHost=${HOST}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
Waittime=0
NodeName=${HOST} CPUs=${CPUS} RealMemory=${MEMORY_MB} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
EOF
changed=0
if ! cmp -s "$wanted" "$CONF_DIR/slurm.conf"; then
    install -m 644 "$wanted" "$CONF_DIR/slurm.conf"
    changed=1
fi
rm -f "$wanted"

if [ "$changed" = 1 ]; then
    pkill -x slurmd 2>/dev/null || true
    pkill -x slurmctld 2>/dev/null || true
    sleep 1
fi
pgrep -x slurmctld >/dev/null || /usr/sbin/slurmctld
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd

for _ in $(seq 60); do
    if node_ready; then
        sinfo
        exit 0
    fi
    # a node left DOWN by an earlier unclean stop comes back with this
    scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
    sleep 1
done
echo "slurm-local.sh: the node did not become idle; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
exit 1
