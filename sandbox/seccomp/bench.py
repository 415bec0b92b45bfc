"""Measure a policy: instruction count, compile and cached-load time, kernel load
time, and the per-call cost of a cached (number-only) and an argument-checked
syscall.  Not a test; numbers go into docs/seccomp.md.

    python3 -m sandbox.seccomp.bench [NAME|PATH ...]

The kernel side is timed in C (a throw-away cffi module compiled on first use,
so SECCOMP_SET_MODE_FILTER and friends come from the system headers), in a
forked child because a filter cannot be removed once loaded.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
import tempfile
import time

from . import compiler, load_policy, policy_path

CALLS = 200_000
_C_SOURCE = r"""
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double per_call(int which, int fd, long calls) {
    int avail;
    long long start = now_ns();
    for (long i = 0; i < calls; i++) {
        if (which == 0) syscall(SYS_getppid);
        else ioctl(fd, FIONREAD, &avail);
    }
    return (double)(now_ns() - start) / calls;
}

/* out: getppid before/after, ioctl before/after (ns per call), load (ns). */
int sbx_bench(const unsigned char *bpf, unsigned long len, long calls, double *out) {
    int fds[2];
    if (pipe(fds)) return -errno;
    out[0] = per_call(0, -1, calls);
    out[2] = per_call(1, fds[0], calls);
    struct sock_fprog prog = { .len = len / sizeof(struct sock_filter),
                               .filter = (struct sock_filter *)bpf };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) return -errno;
    long long start = now_ns();
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog)) return -errno;
    out[4] = (double)(now_ns() - start);
    out[1] = per_call(0, -1, calls);
    out[3] = per_call(1, fds[0], calls);
    return 0;
}
"""


def _native():
    """Build (once per temp dir) and import the C timing helper."""
    from cffi import FFI

    build = tempfile.mkdtemp(prefix="sbx-seccomp-bench-")
    ffi = FFI()
    ffi.cdef("int sbx_bench(const unsigned char *bpf, unsigned long len, long calls, "
             "double *out);")
    ffi.set_source("_sbx_seccomp_bench", _C_SOURCE)
    ffi.compile(tmpdir=build, verbose=False)
    sys.path.insert(0, build)
    try:
        return importlib.import_module("_sbx_seccomp_bench")
    finally:
        sys.path.remove(build)


def _kernel_numbers(bpf: bytes, native) -> dict:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the filter stays with this child, which exits right after
        try:
            out = native.ffi.new("double[5]")
            rc = native.lib.sbx_bench(bpf, len(bpf), CALLS, out)
            os.write(write_fd, json.dumps({"rc": rc, "values": list(out)}).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    raw = os.read(read_fd, 65536)
    os.close(read_fd)
    os.waitpid(pid, 0)
    result = json.loads(raw)
    if result["rc"]:
        return {"kernel_error": os.strerror(-result["rc"])}
    v = result["values"]
    return {"kernel_load_us": v[4] / 1000, "getppid_ns": [v[0], v[1]], "ioctl_ns": [v[2], v[3]]}


def measure(name_or_path: str, native=None) -> dict:
    compiler.clear_cache()
    start = time.perf_counter()
    compiled = load_policy(name_or_path)
    cold_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    for _ in range(100):
        load_policy(name_or_path)
    cached_us = (time.perf_counter() - start) * 1e6 / 100
    result = {"policy": compiled.name, "path": str(policy_path(name_or_path)),
              "instructions": compiled.instructions, "cold_compile_ms": cold_ms,
              "cached_load_us": cached_us}
    if native is not None:
        result.update(_kernel_numbers(compiled.bpf, native))
    return json.loads(json.dumps(result), parse_float=lambda x: round(float(x), 1))


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or ["default", "permissive"]
    native = _native()
    for name in names:
        print(json.dumps(measure(name, native)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
