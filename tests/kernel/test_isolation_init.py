"""Config(init=True): a minimal pid 1 runs the command as its child (pid 2),
reaps orphans, passes on termination signals and exits with the command.
Pid 1 is a small separate program (csrc/sandbox_init.c, exec'd from a
descriptor), not a copy of the supervisor.
Checked from inside; where the point is a difference from init=False, the
same check runs without init too, so the test shows it can fail."""
import errno
import json
import os
import select
import signal
import subprocess
import time

import pytest

import sandbox
from probes.harness import REAL_PYTHON, expect_probe, last_json, pids_in_pid_namespace, sandbox_env
from sandbox import plan as plan_module
from sandbox.cgroups import detect_cgroups
from sandbox.errors import CgroupSetupError, ProcessSetupError
from sandbox.plan import HelperProgram, encoded_plan

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("no_leaks")]

SEGFAULT = "import ctypes; ctypes.string_at(0)"  # a real fault: forced even on pid 1
MiB = 1 << 20
POLICIES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "policies")


def py(code, config, **kw):
    return sandbox.run(["python3", "-c", code], config, **kw)


# -- config ----------------------------------------------------------------------------

def test_init_without_the_pid_layer_is_a_config_error():
    with pytest.raises(sandbox.ConfigError, match="pid namespace") as info:
        sandbox.Config.create(init=True, disable=["pid"])
    assert info.value.field == "init"


def test_init_counts_against_the_pids_limit():
    with pytest.raises(sandbox.ConfigError, match="pids must be >= 2") as info:
        sandbox.Config.create(init=True, pids=1)
    assert info.value.field == "pids"
    with pytest.raises(sandbox.ConfigError) as info:
        sandbox.Config(init=1).validated()
    assert info.value.field == "init"


def test_init_is_part_of_the_plan():
    """Pre-made shells are kept per encoded plan: an init shell must never
    serve a plain config or the other way round."""
    plain, init = encoded_plan(sandbox.Config()), encoded_plan(sandbox.Config(init=True))
    assert plain is not init
    assert (plain.base.init, init.base.init) == (0, 1)
    assert (plain.plan.init, init.plan.init) == (False, True)


# -- pid 1 and pid 2 -------------------------------------------------------------------

@pytest.mark.parametrize("extra", [{}, {"policy": "permissive"}, {"disable": ["seccomp"]}, {"disable": ["user"]}],
                         ids=["default", "permissive-policy", "no-seccomp", "no-userns"])
def test_command_is_pid_2_below_init(probe_config, extra):
    inside = expect_probe(probe_config(init=True, **extra), "inspect_self.py")
    assert (inside["pid"], inside["ppid"]) == (2, 1)
    assert inside["proc_pids"] == [1, 2], f"/proc shows other processes: {inside['proc_pids']}"
    # Neither init's status socket nor the init program's descriptor reach the command.
    assert sorted(inside["fds"]) == ["0", "1", "2"], inside["fds"]


def test_pid_1_is_the_sandbox_init(probe_config):
    code = ("import json, os\n"
            "st = open('/proc/1/stat').read().rsplit(')', 1)[1].split()\n"
            "print(json.dumps({'comm': open('/proc/1/comm').read().strip(), 'state': st[0],"
            " 'sid': os.getsid(0), 'init_sid': int(st[3])}))\n")
    result = py(code, probe_config(init=True))
    out = last_json(result.stdout)
    assert out is not None, result.stderr
    assert out["comm"] == "sandbox-init" and out["state"] == "S", out
    assert out["sid"] == out["init_sid"] == 1, "init leads the session (setsid) and the command is in it"


def test_pool_keeps_init_and_plain_shells_apart(probe_config):
    plain, init = probe_config(), probe_config(init=True)
    seen = [py("import os; print(os.getpid())", cfg).stdout for cfg in (plain, init) * 3]
    assert seen == [b"1\n", b"2\n"] * 3


# -- init's own guarantees ---------------------------------------------------------------

def test_init_holds_no_descriptor_of_the_command(probe_config):
    """The command closes its stdout and a pass_fds pipe and stays alive: the
    caller must see EOF on both at once, so init kept no copy."""
    r, w = os.pipe()
    box = sandbox.spawn(["python3", "-c", "import os, time; os.close(1); os.close(3); time.sleep(30)"],
                        probe_config(init=True), stdin=sandbox.DEVNULL, stdout=sandbox.PIPE,
                        stderr=sandbox.DEVNULL, pass_fds=[w])
    os.close(w)
    try:
        for fd in (box.stdout.fileno(), r):
            assert select.select([fd], [], [], 10)[0], "no EOF: someone in the sandbox still holds the pipe"
            assert os.read(fd, 1) == b""
        assert box.poll() is None, "the command should still be running"
    finally:
        os.close(r)
        box.close()


@pytest.fixture(params=["0", "1"], ids=["suid_dumpable=0", "suid_dumpable=1"])
def suid_dumpable(request):
    """fs.suid_dumpable decides dumpability after the child's setresuid; with 1
    only init's own PR_SET_DUMPABLE keeps it unreadable (restored after)."""
    path = "/proc/sys/fs/suid_dumpable"
    with open(path) as f:
        before = f.read().strip()
    if request.param != before:
        if not os.access(path, os.W_OK):
            pytest.skip("needs root to change fs.suid_dumpable")
        with open(path, "w") as f:
            f.write(request.param)
    try:
        yield
    finally:
        if request.param != before:
            with open(path, "w") as f:
                f.write(before)


@pytest.mark.usefixtures("suid_dumpable")
def test_init_memory_is_not_readable_by_the_command(probe_config):
    """Init is a copy-on-write image of the supervisor: the command (same uid)
    must not read it, nor its environment."""
    code = ("import json, os\n"
            "out = {}\n"
            "for name in ('mem', 'environ'):\n"
            "    try:\n"
            "        with open(f'/proc/1/{name}', 'rb') as f: f.read(1); out[name] = 'OK'\n"
            "    except OSError as e: out[name] = e.errno\n"
            "print(json.dumps(out))\n")
    out = last_json(py(code, probe_config(init=True)).stdout)
    assert out == {"mem": errno.EACCES, "environ": errno.EACCES}, out


@pytest.fixture
def big_supervisor():
    """This process (the supervisor) with ~200 MiB more resident: what init
    would carry as a copy-on-write image if it were a fork of it."""
    ballast = bytearray(b"\x01") * (200 * MiB)  # written, so resident
    yield ballast
    del ballast


def _status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_pid_1_holds_none_of_the_supervisor(probe_config, big_supervisor):
    """Init is its own small program: a few KiB resident (the old in-core init
    showed the supervisor's whole RSS, here > 200 MiB), and /proc/1/cmdline is
    its own, not the supervisor's command line."""
    code = ("import json\n"
            "rss = [l.split()[1] for l in open('/proc/1/status') if l.startswith('VmRSS:')]\n"
            "print(json.dumps({'rss_kib': int(rss[0]), 'cmdline': open('/proc/1/cmdline', 'rb').read().hex()}))\n")
    supervisor_kib = _status_kib(os.getpid(), "VmRSS")
    assert supervisor_kib > 200 * 1024, "the ballast should be resident"
    with sandbox.spawn(["python3", "-c", code], probe_config(init=True), stdin=sandbox.DEVNULL,
                       stdout=sandbox.PIPE, stderr=sandbox.PIPE) as box:
        result = box.communicate()
    out = last_json(result.stdout)
    assert result.exit_code == 0 and out is not None, result
    assert out["rss_kib"] < 4 * 1024, f"pid 1 has {out['rss_kib']} KiB resident (supervisor: {supervisor_kib} KiB)"
    # Exactly init's own arguments (the command's pid, the status socket's number).
    name, command, status_fd, *rest = bytes.fromhex(out["cmdline"]).split(b"\0")
    assert (name, command, status_fd.isdigit(), rest) == (b"sandbox-init", b"2", True, [b""]), out["cmdline"]


HOG = ("import json, os\n"
       "pid = os.fork()\n"
       "if pid == 0:\n"
       "    chunks = []\n"
       "    while True:\n"
       "        chunks.append(b'\\x01' * (1 << 20))\n"
       "_, status = os.waitpid(pid, 0)\n"
       "print(json.dumps({'hog_signal': os.WTERMSIG(status) if os.WIFSIGNALED(status) else None}))\n")


def _cgroup_version():
    try:
        return detect_cgroups().version
    except CgroupSetupError:
        return None


def test_oom_killer_picks_the_hog_not_init(probe_config, big_supervisor):
    """Under a memory limit the OOM killer takes the process with the most
    resident memory.  The command forks a hog that grows without bound: the hog
    must die and the command live on to report it.  (With init as a copy of a
    large supervisor, init was picked and the whole sandbox died.)"""
    if _cgroup_version() != 1:
        pytest.skip("the victim matters with cgroup v1 only: v2 sets memory.oom.group=1, so an OOM kill "
                    "takes the whole sandbox whoever is picked (and no cgroups: no memory limit)")
    result = py(HOG, probe_config(init=True, memory_mb=64, timeout_s=60))
    out = last_json(result.stdout)
    assert out == {"hog_signal": signal.SIGKILL}, result
    assert (result.exit_code, result.signal, result.oom_killed) == (0, None, True), result


# -- the init program: opened by the supervisor, exec'd from a descriptor -------------------

@pytest.fixture
def init_program(monkeypatch):
    """Swap the supervisor's init program for another file (a fresh config, so
    no pre-made shell holds the real one)."""
    def use(path):
        monkeypatch.setattr(plan_module, "_init_program", HelperProgram(path, "init-program"))
    return use


def test_missing_init_program_is_a_typed_error(probe_config, init_program):
    init_program("/nonexistent/sandbox-init")
    with pytest.raises(ProcessSetupError) as info:
        sandbox.run(["true"], probe_config(init=True, hostname="init-missing"))
    assert info.value.errno == errno.ENOENT and info.value.stage_name == "init-program", info.value
    assert "/nonexistent/sandbox-init" in str(info.value)


def test_init_program_that_cannot_exec_fails_closed(probe_config, init_program, tmp_path):
    """The command already runs when pid 1 execs init (it is pid 2, exec'd
    first): a failed exec reports a typed error naming the step, and pid 1's
    exit takes the command with it (it never gets to write its file)."""
    os.chmod(tmp_path, 0o777)
    init_program("/etc/passwd")  # a regular file without execute permission
    with pytest.raises(ProcessSetupError) as info:
        sandbox.run(["sh", "-c", "sleep 0.5; echo ran > /out/ran"],
                    probe_config(init=True, hostname="init-noexec", binds=[f"{tmp_path}:/out:rw"]))
    assert info.value.errno == errno.EACCES and info.value.stage_name == "init-exec", info.value
    time.sleep(1)
    assert not (tmp_path / "ran").exists(), "the command outlived a failed init"


def test_policy_without_execveat_fails_closed(probe_config, tmp_path):
    """Init is exec'd with execveat after seccomp: a custom policy must allow
    it; one that does not gets the same typed error, not a sandbox without init."""
    include = os.path.join(POLICIES, "include")
    with open(os.path.join(include, "allow-base.policy")) as f:
        base = f.read()
    assert "execveat, " in base
    (tmp_path / "no-execveat.policy").write_text(
        "default errno ENOSYS\n"
        f"@include {include}/deny-dangerous.policy\n"
        f"@include {include}/arg-filters.policy\n"
        "@include base.policy\n")
    (tmp_path / "base.policy").write_text(base.replace("execveat, ", ""))
    config = probe_config(init=True, policy=str(tmp_path / "no-execveat.policy"))
    with pytest.raises(ProcessSetupError) as info:
        sandbox.run(["true"], config)
    assert info.value.errno == errno.ENOSYS and info.value.stage_name == "init-exec", info.value
    assert sandbox.run(["true"], probe_config(policy=str(tmp_path / "no-execveat.policy"))).exit_code == 0


@pytest.mark.parametrize("init", [False, True], ids=["no-init", "init"])
def test_orphaned_daemon_is_reaped(probe_config, init):
    """A daemon whose parent exits is reparented to pid 1.  Without init the
    command is pid 1 and never reaps it (a zombie stays); init reaps it."""
    code = ("import json, os, time\n"
            "r, w = os.pipe()\n"
            "child = os.fork()\n"
            "if child == 0:\n"
            "    grandchild = os.fork()\n"
            "    if grandchild == 0:\n"
            "        while os.getppid() != 1: time.sleep(0.005)\n"
            "        os.write(w, b'reparented'); os._exit(0)\n"
            "    os.write(w, str(grandchild).encode() + b' '); os._exit(0)\n"
            "os.waitpid(child, 0)\n"
            "os.close(w)\n"
            "data = b''\n"
            "while chunk := os.read(r, 100): data += chunk\n"
            "gc, note = data.split(b' ')\n"
            "deadline = time.monotonic() + 3\n"
            "while time.monotonic() < deadline:\n"
            "    try: state = open(f'/proc/{int(gc)}/stat').read().rsplit(')', 1)[1].split()[0]\n"
            "    except (FileNotFoundError, ProcessLookupError): state = 'reaped'; break\n"
            "    time.sleep(0.02)\n"
            "print(json.dumps({'note': note.decode(), 'end': state}))\n")
    result = py(code, probe_config(init=init))
    out = last_json(result.stdout)
    assert out is not None, result.stderr
    assert out["note"] == "reparented"
    assert out["end"] == ("reaped" if init else "Z"), out


@pytest.mark.parametrize("init", [False, True], ids=["no-init", "init"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_command_can_kill_itself(probe_config, init, sig):
    """A pid 1 ignores signals it sends itself (even SIGKILL); as pid 2 the
    command dies of them like anywhere else, and the Result says so."""
    result = py(f"import os; os.kill(os.getpid(), {int(sig)}); print('survived')", probe_config(init=init))
    if init:
        assert (result.exit_code, result.signal, result.stdout) == (None, sig, b""), result
        assert result.shell_status == 128 + sig
    else:
        assert (result.exit_code, result.stdout) == (0, b"survived\n"), result


# -- statuses reach the caller as without init -----------------------------------------------

@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_code_propagates(probe_config, code):
    result = py(f"raise SystemExit({code})", probe_config(init=True))
    assert (result.exit_code, result.signal) == (code, None)


def test_fault_is_reported_as_signal(probe_config):
    result = py(SEGFAULT, probe_config(init=True))
    assert (result.exit_code, result.signal) == (None, signal.SIGSEGV), result


@pytest.mark.parametrize("argv0,err", [("/nonexistent/binary", errno.ENOENT), ("no-such-command-sbx", errno.ENOENT),
                                       ("/etc/passwd", errno.EACCES)])
def test_exec_failure_is_the_same_typed_error(probe_config, argv0, err):
    with pytest.raises(sandbox.ExecError) as info:
        sandbox.run([argv0], probe_config(init=True))
    assert info.value.errno == err and info.value.stage_name == "exec"


def test_exit_status_with_daemon_left_running(probe_config, tmp_path):
    """The command exits while a daemon (stdio closed) still runs: init exits
    with the command, the kernel kills the daemon, EOF and Result come at once."""
    os.chmod(tmp_path, 0o777)
    started = time.monotonic()
    result = sandbox.run(["python3", "-B", "/probes/daemon.py", "/out/hb"],
                         probe_config(init=True, binds=[f"{tmp_path}:/out:rw"]))
    assert result.exit_code == 0 and last_json(result.stdout) == {"daemon": True}, result
    assert time.monotonic() - started < 10
    beat = (tmp_path / "hb").read_text()
    time.sleep(0.3)
    assert (tmp_path / "hb").read_text() == beat, "the daemon outlived its sandbox"


# -- signals from outside ------------------------------------------------------------------

def test_termination_signals_are_forwarded(probe_config):
    """SIGTERM to the sandbox (its pid 1) reaches the command's handler;
    without init a pid 1 with no handler would have dropped it."""
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *a: sys.exit(42))\n"
            "print('ready', flush=True)\n"
            "time.sleep(30)\n")
    with sandbox.spawn(["python3", "-c", code], probe_config(init=True), stdin=sandbox.DEVNULL,
                       stdout=sandbox.PIPE, stderr=sandbox.DEVNULL) as box:
        assert box.stdout.readline() == b"ready\n"
        os.kill(box.pid, signal.SIGTERM)
        result = box.wait(timeout=10)
    assert result is not None and (result.exit_code, result.signal) == (42, None), result


def test_unhandled_forwarded_signal_kills_the_command(probe_config):
    with sandbox.spawn(["sleep", "30"], probe_config(init=True), stdin=sandbox.DEVNULL, stdout=sandbox.DEVNULL,
                       stderr=sandbox.DEVNULL) as box:
        time.sleep(0.1)
        os.kill(box.pid, signal.SIGINT)
        result = box.wait(timeout=10)
    assert result is not None and (result.exit_code, result.signal) == (None, signal.SIGINT), result


def test_kill_and_timeout_are_sigkill(probe_config):
    box = sandbox.spawn(["sleep", "30"], probe_config(init=True), stdin=sandbox.DEVNULL, stdout=sandbox.DEVNULL,
                        stderr=sandbox.DEVNULL)
    box.kill()
    result = box.wait(timeout=10)
    assert result is not None and result.signal == signal.SIGKILL and not result.timed_out
    result = sandbox.run(["sleep", "30"], probe_config(init=True, timeout_s=0.5))
    assert result.timed_out and result.signal == signal.SIGKILL, result


SUPERVISOR = """
import json, sys, time
import sandbox
config = sandbox.Config.create(init=True, binds=[sys.argv[1] + ":/probes"])
box = sandbox.spawn(["python3", "-c", "import subprocess, sys, time\\n"
                     "subprocess.run([sys.executable, '-B', '/probes/daemon.py', '/tmp/hb'], check=True,"
                     " stdout=subprocess.DEVNULL)\\n"
                     "print('ready', flush=True)\\n"
                     "time.sleep(3600)\\n"], config, stdin=sandbox.DEVNULL, stdout=sandbox.PIPE,
                    stderr=sandbox.DEVNULL)
assert box.stdout.readline() == b"ready\\n"
print(json.dumps({"pid": box.pid}), flush=True)
time.sleep(3600)
"""


def test_supervisor_death_kills_init_and_everything_below(probe_path):
    """The command (pid 2) has no parent-death signal of its own: init's
    (re-armed after the last credential change) fires, and init's end takes
    the whole pid namespace with it."""
    proc = subprocess.Popen([REAL_PYTHON, "-c", SUPERVISOR, os.path.dirname(probe_path("daemon.py"))],
                            stdout=subprocess.PIPE, env=sandbox_env())
    pidfd = -1
    try:
        pid = json.loads(proc.stdout.readline() or b"null")["pid"]
        pidfd = os.pidfd_open(pid)
        ns = os.readlink(f"/proc/{pid}/ns/pid")
        assert len(pids_in_pid_namespace(ns)) >= 3, "expected init, the command and a daemon"
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 5
        while pids_in_pid_namespace(ns) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not pids_in_pid_namespace(ns), "sandbox processes outlived the supervisor"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        if pidfd >= 0:
            if not select.select([pidfd], [], [], 0)[0]:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.close(pidfd)
        # The dead supervisor's cgroups are removed by its reaper (another test's concern).
