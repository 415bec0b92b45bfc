#!/usr/bin/env bash
# Prepare everything tests/v2vm/run.sh needs to boot a pure cgroup-v2 guest under QEMU/TCG:
#   - host tools: qemu-system-x86_64 and cpio (apt-get install, only if missing);
#     a static busybox (the installed busybox-static, else its .deb extracted into the cache);
#   - a Debian kernel (apt-get download + dpkg-deb -x): vmlinuz plus the modules needed to
#     share the host tree (virtio_pci, 9p, 9pnet, 9pnet_virtio, netfs, fscache) and overlay;
#   - an initramfs (busybox + those modules + tests/v2vm/init.sh as /init).
# Everything lands in tests/v2vm/work/ (gitignored). Idempotent: a second run with a warm
# cache touches neither apt nor the network and only rebuilds the initramfs if an input changed.
#
# Kernel flavour: Debian's *-cloud-amd64 kernels are built with CONFIG_NET_9P unset, so they
# cannot mount a virtio-9p share; we therefore use the generic *-amd64 flavour of the same
# Debian 12 kernel series (same source, same cgroup/namespace/seccomp config). See
# docs/testing-cgroup-v2.md.
#
# Usage: setup.sh [--refresh] [--quiet]
#   --refresh   re-pick the newest kernel package even if one is cached.
# Environment:
#   V2VM_WORK            cache dir (default: tests/v2vm/work)
#   V2VM_KERNEL_SERIES   kernel series to pick the newest of (default 6.1; 6.12 also works)
#   V2VM_KERNEL_PKG      exact package name, e.g. linux-image-6.1.0-56-amd64 (overrides series)
# Exit status: 0 ready; 2 usage; 3 host tools could not be installed; 4 kernel could not be
# downloaded/extracted; 5 initramfs build failed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
WORK=${V2VM_WORK:-$HERE/work}
SERIES=${V2VM_KERNEL_SERIES:-6.1}
REFRESH=0
QUIET=0
for a in "$@"; do
    case $a in
        --refresh) REFRESH=1 ;;
        --quiet) QUIET=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown argument: $a" >&2; exit 2 ;;
    esac
done

log() { [ "$QUIET" = 1 ] || echo "[v2vm-setup] $*" >&2; }
fail() { local rc=$1; shift; echo "[v2vm-setup] ERROR: $*" >&2; exit "$rc"; }

# Modules the guest loads, by name; dependencies are resolved from each module's modinfo.
WANT_MODULES=(virtio_pci 9pnet_virtio 9p overlay)

mkdir -p "$WORK"
# Serialise concurrent setups (two run.sh at once) on one cache.
exec 9>"$WORK/.lock"
flock 9

apt_retry() {  # apt-get "$@", and once more after an `apt-get update` if that failed
    DEBIAN_FRONTEND=noninteractive apt-get "$@" >/dev/null 2>"$WORK/apt.err" && return 0
    log "apt-get $1 failed; running apt-get update and retrying"
    apt-get update >/dev/null 2>>"$WORK/apt.err" || true
    DEBIAN_FRONTEND=noninteractive apt-get "$@" >/dev/null 2>>"$WORK/apt.err"
}

# ---- 1. host tools --------------------------------------------------------------------------
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || fail 3 "missing ${need[*]} and not root: install them with apt-get"
    log "installing ${need[*]}"
    apt_retry install -y --no-install-recommends "${need[@]}" \
        || fail 3 "apt-get install ${need[*]} failed: $(tail -3 "$WORK/apt.err")"
fi

# A static busybox for the initramfs. The installed busybox-static is preferred; otherwise its
# .deb is extracted into the cache rather than installed (it conflicts with the dynamic
# `busybox` package, which we must not remove from someone's machine).
BUSYBOX=""
if [ "$(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null || true)" = "install ok installed" ]; then
    BUSYBOX=/bin/busybox
elif [ -x "$WORK/busybox-static/bin/busybox" ]; then
    BUSYBOX=$WORK/busybox-static/bin/busybox
else
    log "downloading busybox-static (not installed; extracting into the cache)"
    rm -rf "$WORK/dl-bb" && mkdir -p "$WORK/dl-bb"
    (cd "$WORK/dl-bb" && apt_retry download busybox-static) \
        || fail 3 "apt-get download busybox-static failed: $(tail -3 "$WORK/apt.err")"
    rm -rf "$WORK/busybox-static"
    dpkg-deb -x "$WORK"/dl-bb/busybox-static_*.deb "$WORK/busybox-static"
    rm -rf "$WORK/dl-bb"
    BUSYBOX=$WORK/busybox-static/bin/busybox
fi
[ -x "$BUSYBOX" ] || fail 3 "no static busybox at $BUSYBOX"

# ---- 2. kernel --------------------------------------------------------------------------------
pick_kernel() {  # newest linux-image-<SERIES>...-amd64 (generic flavour) with an apt candidate
    local re cands pkg pol
    re="^linux-image-${SERIES//./\\.}\\.[0-9]+(-[0-9]+|\\+deb[0-9]+)-amd64\$"
    cands=$(apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$re" | sort -V -r || true)
    if [ -z "$cands" ]; then
        apt-get update >/dev/null 2>&1 || true
        cands=$(apt-cache pkgnames linux-image- 2>/dev/null | grep -E "$re" | sort -V -r || true)
    fi
    for pkg in $cands; do
        # (capture first: `apt-cache | grep -q` would fail under pipefail on SIGPIPE)
        pol=$(apt-cache policy "$pkg" 2>/dev/null || true)
        if [[ $pol == *"Candidate: "[0-9]* ]]; then
            echo "$pkg"; return 0
        fi
    done
    return 1
}

CUR=""
[ -f "$WORK/kernel/current" ] && CUR=$(cat "$WORK/kernel/current")
if [ -n "${V2VM_KERNEL_PKG:-}" ]; then
    PKG=$V2VM_KERNEL_PKG
elif [ -n "$CUR" ] && [ "$REFRESH" = 0 ] && [ -f "$WORK/kernel/$CUR/vmlinuz" ]; then
    PKG=$CUR      # warm cache: no apt, no network
else
    PKG=$(pick_kernel) || fail 4 "no linux-image-${SERIES}.*-amd64 package known to apt (apt-cache pkgnames)"
fi
KDIR=$WORK/kernel/$PKG

extract_kernel() {
    local dl=$WORK/dl-kernel x kver m f dep
    log "downloading $PKG"
    rm -rf "$dl" && mkdir -p "$dl"
    (cd "$dl" && apt_retry download "$PKG") \
        || fail 4 "apt-get download $PKG failed: $(tail -3 "$WORK/apt.err")"
    x=$dl/x
    dpkg-deb -x "$dl"/*.deb "$x" || fail 4 "dpkg-deb -x of $PKG failed"
    kver=$(ls "$x/lib/modules" | head -1)
    [ -n "$kver" ] && [ -f "$x/boot/vmlinuz-$kver" ] || fail 4 "$PKG has no vmlinuz/modules"
    rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp/modules"
    cp "$x/boot/vmlinuz-$kver" "$KDIR.tmp/vmlinuz"
    cp "$x/boot/config-$kver" "$KDIR.tmp/config"
    echo "$kver" > "$KDIR.tmp/kver"

    # Resolve WANT_MODULES and their dependencies (deps first), skipping built-ins.
    local -A seen=()
    local order=()
    visit() {
        local name=$1 norm path deps
        norm=${name//-/_}
        [ -n "${seen[$norm]:-}" ] && return 0
        seen[$norm]=1
        if grep -Eq "/${name}\\.ko\$|/${norm}\\.ko\$" "$x/lib/modules/$kver/modules.builtin"; then
            return 0
        fi
        path=$(find "$x/lib/modules/$kver/kernel" \( -name "$name.ko*" -o -name "$norm.ko*" \) | head -1)
        [ -n "$path" ] || fail 4 "module $name is neither built in nor shipped in $PKG"
        case $path in
            *.ko) cp "$path" "$KDIR.tmp/modules/$norm.ko" ;;
            *.ko.xz) xz -dc "$path" > "$KDIR.tmp/modules/$norm.ko" ;;
            *.ko.zst) zstd -qdc "$path" > "$KDIR.tmp/modules/$norm.ko" ;;
            *.ko.gz) gzip -dc "$path" > "$KDIR.tmp/modules/$norm.ko" ;;
            *) fail 4 "unknown module format: $path" ;;
        esac
        deps=$(tr '\0' '\n' < "$KDIR.tmp/modules/$norm.ko" | sed -n 's/^depends=//p' | tr ',' ' ')
        for dep in $deps; do visit "$dep"; done
        order+=("$norm")
    }
    for m in "${WANT_MODULES[@]}"; do visit "$m"; done
    printf '%s\n' "${order[@]}" > "$KDIR.tmp/modules.order"
    rm -rf "$KDIR" && mv "$KDIR.tmp" "$KDIR"
    rm -rf "$dl"
    log "kernel $kver ready; modules: ${order[*]}"
}

if [ ! -f "$KDIR/vmlinuz" ] || [ ! -f "$KDIR/modules.order" ]; then
    extract_kernel
fi
echo "$PKG" > "$WORK/kernel/current"
# Drop other cached kernels (each is ~10 MB; keep the cache from growing on every refresh).
for d in "$WORK"/kernel/*/; do
    [ "$(basename "$d")" = "$PKG" ] || rm -rf "$d"
done

# ---- 3. initramfs -----------------------------------------------------------------------------
INITRD=$WORK/initrd.gz
STAMP="$PKG $(sha256sum "$HERE/init.sh" "$BUSYBOX" | awk '{print $1}' | tr '\n' ' ')"
if [ -f "$INITRD" ] && [ "$(cat "$WORK/initrd.stamp" 2>/dev/null)" = "$STAMP" ]; then
    log "initramfs up to date"
else
    log "building initramfs"
    R=$WORK/initramfs.tmp
    rm -rf "$R" && mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,mnt,newroot,lib/v2vm,run,tmp}
    cp "$BUSYBOX" "$R/bin/busybox"
    ln -s busybox "$R/bin/sh"
    cp "$HERE/init.sh" "$R/init" && chmod 755 "$R/init"
    cp "$KDIR"/modules/*.ko "$KDIR/modules.order" "$R/lib/v2vm/"
    mknod -m 600 "$R/dev/console" c 5 1 || fail 5 "mknod dev/console (needs root)"
    mknod -m 666 "$R/dev/null" c 1 3
    (cd "$R" && find . -print0 | cpio --null -o -H newc --quiet | gzip -1) > "$INITRD.tmp" \
        || fail 5 "cpio/gzip failed"
    mv "$INITRD.tmp" "$INITRD"
    echo "$STAMP" > "$WORK/initrd.stamp"
    rm -rf "$R"
fi
ln -sfn "kernel/$PKG/vmlinuz" "$WORK/vmlinuz"
log "ready: $WORK/vmlinuz ($(cat "$KDIR/kver")) $INITRD"
