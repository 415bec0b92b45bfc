"""#10 (CVE-2022-29162 / CVE-2022-27650): exec of a binary carrying file
capabilities gains nothing inside the sandbox (empty bounding set, nosuid
binds, no_new_privs)."""
import os
import shutil
import struct
import subprocess
import tempfile

import pytest

import sandbox

pytestmark = [pytest.mark.hostile, pytest.mark.usefixtures("no_leaks")]

CAP_SETS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")
CAPS = "cap_net_raw,cap_sys_admin,cap_dac_override,cap_setuid"


def _set_file_caps(path):
    if shutil.which("setcap"):
        subprocess.run(["setcap", f"{CAPS}+eip", path], check=True)
        return
    # No libcap2-bin: write a VFS_CAP_REVISION_2 xattr (linux/capability.h)
    # with the same four capabilities, effective bit set.
    bits = (1 << 13) | (1 << 21) | (1 << 1) | (1 << 7)
    os.setxattr(path, "security.capability", struct.pack("<IIIII", 0x02000000 | 1, bits, bits, 0, 0))


@pytest.fixture
def cap_binary():
    """A copy of cat with file capabilities, in a directory uid 65534 can reach."""
    if os.geteuid() != 0:
        pytest.skip("setting file capabilities needs root")
    with tempfile.TemporaryDirectory(prefix="sbx-capbin-") as tmp:
        os.chmod(tmp, 0o755)
        target = os.path.join(tmp, "capcat")
        shutil.copy2("/usr/bin/cat", target)
        os.chmod(target, 0o755)
        _set_file_caps(target)
        assert os.getxattr(target, "security.capability"), "file capabilities were not set"
        yield tmp


def _caps(stdout):
    fields = dict(line.split(":", 1) for line in stdout.decode().splitlines() if ":" in line)
    return {k: int(fields[k], 16) for k in CAP_SETS}


def test_10_exec_of_file_with_capabilities_gains_nothing(probe_config, cap_binary):
    result = sandbox.run(["/capbin/capcat", "/proc/self/status"], probe_config(binds=[f"{cap_binary}:/capbin"]))
    assert result.exit_code == 0, result.stderr
    assert _caps(result.stdout) == dict.fromkeys(CAP_SETS, 0), result.stdout.decode()


def test_10_exec_from_inside_gains_nothing(probe_config, cap_binary):
    code = "import os; os.execv('/capbin/capcat', ['capcat', '/proc/self/status'])"
    result = sandbox.run(["python3", "-c", code], probe_config(binds=[f"{cap_binary}:/capbin"]))
    assert result.exit_code == 0, result.stderr
    assert _caps(result.stdout) == dict.fromkeys(CAP_SETS, 0), result.stdout.decode()


def test_10_control_the_binary_does_gain_capabilities_on_the_host(cap_binary):
    """Positive control: the same file raises capabilities where nothing stops
    it, so the two tests above test the sandbox, not a dud binary."""
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          f"{cap_binary}/capcat", "/proc/self/status"], capture_output=True)
    if out.returncode != 0:
        pytest.skip(f"cannot run the control as uid 65534: {out.stderr.decode()[-300:]}")
    assert _caps(out.stdout)["CapPrm"] != 0, out.stdout.decode()
