"""Block I/O limits (Config.io: blkio.throttle.* on cgroup v1, io.max on v2),
measured from inside: O_DIRECT writes and reads of a file on the host's disk
(a writable bind) run at the set rate within +-20%, and without the limit
much faster.  Direct I/O because v1 blkio cannot throttle buffered writeback."""
import os
import tempfile

import pytest

import sandbox
from probes.harness import last_json

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leaks")]

CODE = """
import json, mmap, os, sys, time
mode, n = sys.argv[1], int(sys.argv[2])
buf = mmap.mmap(-1, 1 << 16)
buf.write(b"x" * (1 << 16))
flags = os.O_DIRECT | (os.O_WRONLY | os.O_CREAT | os.O_TRUNC if mode == "write" else os.O_RDONLY)
fd = os.open("/out/f", flags, 0o600)
start = time.monotonic()
for _ in range(n):
    (os.write if mode == "write" else os.readv)(fd, buf if mode == "write" else [buf])
os.fsync(fd)
print(json.dumps({"bytes": n << 16, "ops": n, "seconds": time.monotonic() - start}))
"""


@pytest.fixture
def disk_dir():
    base = "/var/tmp"
    st = os.stat(base)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    if not os.path.exists(f"/sys/dev/block/{dev}") or os.path.exists(f"/sys/dev/block/{dev}/partition"):
        pytest.skip(f"{base} is not on a whole block device ({dev}): throttles apply to whole disks")
    with tempfile.TemporaryDirectory(dir=base) as d:
        os.chmod(d, 0o777)
        yield d, dev


def _measure(d, io, mode, n):
    config = sandbox.Config.create(binds=[f"{d}:/out:rw"], io=io)
    result = sandbox.run(["python3", "-c", CODE, mode, str(n)], config)
    out = last_json(result.stdout)
    assert result.exit_code == 0 and out, result.stderr[-2000:]
    return out


@pytest.mark.parametrize("key, mode", [("wbps", "write"), ("rbps", "read")])
def test_bandwidth_limit_is_met_within_20_percent(disk_dir, key, mode):
    d, dev = disk_dir
    rate = 4 << 20
    _measure(d, [], "write", 192)  # the file to read back (unthrottled)
    out = _measure(d, [f"{dev},{key}={rate}"], mode, 192)  # 12 MiB: ~3 s
    measured = out["bytes"] / out["seconds"]
    assert 0.8 * rate <= measured <= 1.2 * rate, measured


def test_iops_limit_is_met_within_20_percent(disk_dir):
    d, dev = disk_dir
    iops = 50
    out = _measure(d, [f"{dev},wiops={iops}"], "write", 120)
    measured = out["ops"] / out["seconds"]
    assert 0.8 * iops <= measured <= 1.2 * iops, measured
