#!/bin/sh
# /init of the v2vm initramfs (busybox sh, runs as PID 1 in the guest).
#
# 1. mount proc/sys/dev, load the 9p + overlay modules;
# 2. mount the host's / (virtio-9p tag "hostroot", read-only) and put a tmpfs-backed overlay on
#    top of it at /newroot (falls back to the read-only tree with tmpfs on /tmp, /run, /var/tmp);
# 3. mount proc, sysfs, devtmpfs, devpts, cgroup2 (only; the kernel is booted with
#    cgroup_no_v1=all) inside /newroot, enable +memory +pids +cpu, create /sys/fs/cgroup/test;
# 4. switch_root into /newroot (stage 2 of this script, run as PID 1 from /run/v2vm) and run
#    the job (v2vm_job=<host dir> on the kernel command line; run.sh wrote job.sh and job.conf
#    there) in its cgroup; print "V2VM-EXIT=<status> <nonce>" on the console; power off.
# Any harness failure prints "V2VM-EXIT=125 <nonce>" after a "[v2vm] FATAL:" line.

if [ "${1:-}" = stage2 ]; then
    # ---- stage 2: PID 1 on the new root ------------------------------------------------------------
    NONCE=$2 VERBOSE=$3 JOBCG=$4
    /run/v2vm/busybox --install -s /run/v2vm/bin
    PATH=/run/v2vm/bin
    export PATH
    exec </dev/console >/dev/console 2>&1
    finish() {
        echo "V2VM-EXIT=$1 $NONCE"
        sync
        poweroff -f
        sleep 5
        exit "$1"
    }
    [ "$VERBOSE" = 1 ] && echo "[v2vm] job starting in $JOBCG, up $(cut -d' ' -f1 /proc/uptime)s"
    echo "V2VM-START $NONCE"
    # env -i: the job gets only what job.sh exports (run.sh writes PATH, the caller's env, ...).
    sh -c 'echo $$ > "$1/cgroup.procs" || exit 125; exec env -i HOME=/root TERM=dumb LANG=C.UTF-8 /bin/sh /run/v2vm/job.sh </dev/null' \
        sh "$JOBCG"
    rc=$?
    [ "$VERBOSE" = 1 ] && echo "[v2vm] job exited $rc, up $(cut -d' ' -f1 /proc/uptime)s"
    finish $rc
fi

PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH
/bin/busybox --install -s

mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sysfs /sys

JOB=""
NONCE=none
VERBOSE=0
for w in $(cat /proc/cmdline); do
    case $w in
        v2vm_job=*) JOB=${w#*=} ;;
        v2vm_nonce=*) NONCE=${w#*=} ;;
        v2vm_verbose=1) VERBOSE=1 ;;
    esac
done
[ "$VERBOSE" = 1 ] || echo 1 > /proc/sys/kernel/printk   # keep kernel chatter (OOM reports) off the console

log() { [ "$VERBOSE" = 1 ] && echo "[v2vm] $*"; return 0; }
finish() {
    echo "V2VM-EXIT=$1 $NONCE"
    sync
    poweroff -f
    sleep 5
    exit "$1"   # PID 1 exiting panics; panic=-1 + -no-reboot make qemu exit
}
die() { echo "[v2vm] FATAL: $*"; finish 125; }

log "kernel $(uname -r), up $(cut -d' ' -f1 /proc/uptime)s"

# ---- modules ------------------------------------------------------------------------------------
for m in $(cat /lib/v2vm/modules.order); do
    insmod "/lib/v2vm/$m.ko" || die "insmod $m failed"
done

# ---- host tree ------------------------------------------------------------------------------------
mkdir -p /mnt/host /mnt/rw
# virtio-pci probing is asynchronous: retry until the 9p channel shows up.
i=0
until mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 hostroot /mnt/host 2>/tmp/9p.err; do
    i=$((i + 1))
    [ $i -ge 50 ] && die "mount 9p hostroot: $(cat /tmp/9p.err)"
    sleep 0.1
done
mount -t tmpfs -o mode=755 tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
if mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot 2>/tmp/ovl.err; then
    ROOTFS=overlay
else
    echo "[v2vm] warning: overlay failed ($(cat /tmp/ovl.err)); host tree is read-only except /tmp /run /var/tmp"
    mount --bind /mnt/host /newroot || die "bind host tree"
    ROOTFS=readonly
fi
[ -f "/mnt/host$JOB/job.sh" ] || die "no job script at $JOB/job.sh (kernel cmdline v2vm_job=)"
# job.conf: LAYOUT=..., written by run.sh (plain words only).
. "/mnt/host$JOB/job.conf" || die "cannot read $JOB/job.conf"

N=/newroot
mount -t proc proc $N/proc || die "mount proc"
mount -t sysfs sysfs $N/sys || die "mount sysfs"
mount -t devtmpfs devtmpfs $N/dev || die "mount devtmpfs"
mkdir -p $N/dev/pts $N/dev/shm $N/dev/mqueue
mount -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts $N/dev/pts || die "mount devpts"
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $N/dev/shm
mount -t mqueue mqueue $N/dev/mqueue 2>/dev/null
ln -sfn /proc/self/fd $N/dev/fd
ln -sfn /proc/self/fd/0 $N/dev/stdin
ln -sfn /proc/self/fd/1 $N/dev/stdout
ln -sfn /proc/self/fd/2 $N/dev/stderr
# The checkout may live below /tmp (CI clones anywhere): keep it visible through the
# fresh tmpfs by moving a bind of it back on top.
REPO_HELD=""
case "$REPO" in
    /tmp/*|/var/tmp/*|/run/*)
        mkdir -p /mnt/repo && mount --bind "$N$REPO" /mnt/repo && REPO_HELD=1 || die "hold repo $REPO" ;;
esac
for d in tmp var/tmp; do
    mkdir -p $N/$d 2>/dev/null
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs $N/$d || die "mount tmpfs on /$d"
done
mount -t tmpfs -o mode=755,nosuid,nodev tmpfs $N/run || die "mount tmpfs on /run"
if [ -n "$REPO_HELD" ]; then
    mkdir -p "$N$REPO" && mount --move /mnt/repo "$N$REPO" || die "re-expose repo $REPO"
fi
mkdir -p $N/run/v2vm
cp "/mnt/host$JOB/job.sh" $N/run/v2vm/job.sh

# ---- cgroup v2 only ------------------------------------------------------------------------------
CG=$N/sys/fs/cgroup
# Same mount options systemd uses on cgroup-v2 hosts.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 $CG 2>/dev/null \
    || mount -t cgroup2 cgroup2 $CG || die "mount cgroup2"
grep -q ' cgroup ' /proc/mounts && die "a cgroup v1 hierarchy is mounted"
for c in memory pids cpu; do
    echo "+$c" > $CG/cgroup.subtree_control || die "enable +$c in the root cgroup"
done
mkdir -p $CG/test || die "mkdir /sys/fs/cgroup/test"
case $LAYOUT in
    leaf)
        # /test is a delegated subtree with the controllers enabled; the job lives in the leaf
        # /test/runner so that children of /test can use memory/pids/cpu (no-internal-process rule).
        for c in memory pids cpu; do
            echo "+$c" > $CG/test/cgroup.subtree_control || die "enable +$c in /test"
        done
        mkdir -p $CG/test/runner
        JOBCG=$CG/test/runner ;;
    delegated)
        # The job lives in /test itself, whose subtree_control is empty (like a systemd
        # Delegate=yes unit or a container): the code under test must move itself to a leaf.
        JOBCG=$CG/test ;;
    root)
        # Not representative of real v2 hosts (systemd never leaves services in the root), but
        # the one place where a cgroup may hold processes and delegate controllers at once.
        JOBCG=$CG ;;
    *) die "unknown cgroup layout '$LAYOUT'" ;;
esac

# ---- sanity ---------------------------------------------------------------------------------------
userns=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)
[ "$userns" -gt 0 ] 2>/dev/null || die "user namespaces unavailable (max_user_namespaces=$userns)"
hostname v2vm
ip link set lo up 2>/dev/null
log "rootfs=$ROOTFS layout=$LAYOUT cgroup=${JOBCG#$CG} userns=$userns up $(cut -d' ' -f1 /proc/uptime)s"

# ---- switch to the host tree ----------------------------------------------------------------------
# switch_root, not chroot: the kernel refuses unshare(CLONE_NEWUSER) to a chrooted process
# (EPERM), so the job's root must be the mount namespace's root. Stage 2 (below) is this same
# script run by busybox from /run/v2vm on the new root.
mkdir -p $N/run/v2vm/bin
cp /bin/busybox $N/run/v2vm/busybox
cp /init $N/run/v2vm/init
exec switch_root $N /run/v2vm/busybox sh /run/v2vm/init stage2 "$NONCE" "$VERBOSE" "${JOBCG#$N}"
die "switch_root failed"
