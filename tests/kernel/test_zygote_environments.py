"""Sandboxes and execution environments forked from a zygote (sandbox/zygote,
csrc/zygote.c): the same sandbox as a fresh one, seen from inside; nothing of
one function reaches another through the zygote; a zygote's death takes no
environment with it; its memory is charged to its own cgroup, removed at the
end; nothing is left."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time

import pytest

import conftest
import sandbox
from conftest import requires_sandbox_privileges
from probes.harness import REAL_PYTHON, last_json
from sandbox.launcher import _validated
from sandbox.plan import encoded_plan
from sandbox.zygote import ZygoteKind, close_service, service_for, spawn as zygote_spawn
from sandbox.zygote.client import wait_gone

pytestmark = [pytest.mark.kernel, requires_sandbox_privileges()]

PROBES = os.path.join(conftest.HERE, "probes")
KIND = ZygoteKind(REAL_PYTHON, PROBES, ())      # no runtime modules: probes are plain scripts
ARGV = [REAL_PYTHON, "-S", "-B", "-u", "/probes/inspect_self.py"]


@pytest.fixture
def supervisor(no_leaks):
    sup = sandbox.Supervisor(pool_size=1)
    yield sup
    close_service(sup)
    sup.close()


def _config(**kw):
    return sandbox.Config.create(binds=[f"{PROBES}:/probes"], init=True, **kw)


def _run(box, input=b""):
    result = box.communicate(input)
    return result, last_json(result.stdout)


def test_a_probe_sees_the_same_sandbox_as_in_a_fresh_one(supervisor):
    config = _config(env={"FOO": "bar"})
    fresh, seen_fresh = _run(sandbox.spawn(ARGV, config, stdin=sandbox.DEVNULL, stdout=sandbox.PIPE,
                                           stderr=sandbox.PIPE, supervisor=supervisor))
    forked, seen_forked = _run(zygote_spawn(ARGV, config, KIND, stdin=sandbox.DEVNULL, stdout=sandbox.PIPE,
                                            stderr=sandbox.PIPE, supervisor=supervisor))
    assert fresh.exit_code == 0 and forked.exit_code == 0, (fresh.stderr, forked.stderr)
    assert sorted(seen_forked["fds"]) == sorted(seen_fresh["fds"]) == ["0", "1", "2"]
    same = ("pid", "ppid", "sid", "uid", "gid", "groups", "hostname", "env", "cwd", "proc_pids", "root",
            "dev", "net_dev", "securebits", "pdeath_signal", "tty_nr", "max_user_namespaces")
    for key in same:
        assert seen_forked[key] == seen_fresh[key], (key, seen_forked[key], seen_fresh[key])
    for field in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"):
        assert seen_forked["status"][field] == seen_fresh["status"][field], field
    assert seen_forked["pid"] == 2 and seen_forked["status"]["Seccomp"] == "2"
    assert seen_forked["env"] == dict(seen_fresh["env"]) and seen_forked["env"]["FOO"] == "bar"
    # Mount points: the same tree (ids differ per namespace).
    def tree(seen):
        return [(m["mountpoint"], m["fstype"], m["root"], m["options"]) for m in seen["mounts"]]
    assert tree(seen_forked) == tree(seen_fresh)
    host_ns = {ns: os.stat(f"/proc/self/ns/{ns}").st_ino for ns in seen_forked["ns"]}
    assert all(seen_forked["ns"][ns] != host_ns[ns] for ns in ("pid", "mnt", "net", "ipc", "uts", "user", "cgroup"))


def test_setup_failure_is_reported_typed(supervisor, tmp_path):
    # The bind source is there when the plan is made and gone when the child
    # opens it: the child's setup fails and says which step, as in a fresh one.
    source = tmp_path / "vanishing"
    source.mkdir()
    config = sandbox.Config.create(binds=[f"{PROBES}:/probes", f"{source}:/x"], init=True)
    encoded_plan(_validated(config))   # both cached: spawn sees the plan made while it existed
    source.rmdir()
    with pytest.raises(sandbox.SandboxError) as info:
        zygote_spawn(ARGV, config, KIND, stdin=sandbox.DEVNULL, stdout=sandbox.PIPE, supervisor=supervisor)
    assert info.value.errno == errno.ENOENT and "open_tree" in str(info.value), info.value


def test_runs_only_the_interpreter_it_is(supervisor):
    with pytest.raises(sandbox.ConfigError):
        zygote_spawn(["/bin/sh", "-c", "true"], _config(), KIND, supervisor=supervisor)
    with pytest.raises(sandbox.ConfigError):
        zygote_spawn(ARGV, sandbox.Config.create(binds=[f"{PROBES}:/probes"]), KIND, supervisor=supervisor)


def test_a_killed_zygote_takes_no_sandbox_with_it(supervisor):
    box = zygote_spawn([*ARGV, "--wait"], _config(), KIND, stdin=sandbox.PIPE, stdout=sandbox.PIPE,
                       stderr=sandbox.PIPE, supervisor=supervisor)
    try:
        ready = json.loads(box.stdout.readline())
        assert ready == {"ready": 2}
        zygote = service_for(supervisor).zygotes()[0]
        zygote_pid = zygote.pid
        os.kill(zygote_pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while zygote.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not zygote.alive()
        assert box.poll() is None            # still running, a child of ours, not of the zygote
        with open(f"/proc/{box.pid}/status") as f:
            ppid = next(int(line.split()[1]) for line in f if line.startswith("PPid:"))
        assert ppid == os.getpid()
        result, seen = _run(box, b"go\n")
        assert result.exit_code == 0 and seen["pid"] == 2
    finally:
        box.close()
    # The next sandbox comes from a new zygote.
    again, seen = _run(zygote_spawn(ARGV, _config(), KIND, stdin=sandbox.DEVNULL, stdout=sandbox.PIPE,
                                    stderr=sandbox.PIPE, supervisor=supervisor))
    assert again.exit_code == 0 and seen["pid"] == 2
    assert service_for(supervisor).zygotes()[0].pid != zygote_pid


def _memory_cgroup(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(",") or controllers == "":
                return path
    return ""


def test_zygote_memory_is_its_own_cgroup_and_goes_at_the_end(supervisor):
    box = zygote_spawn([*ARGV, "--wait"], _config(memory_mb=64), KIND, stdin=sandbox.PIPE, stdout=sandbox.PIPE,
                       stderr=sandbox.PIPE, supervisor=supervisor)
    try:
        json.loads(box.stdout.readline())
        zygote = service_for(supervisor).zygotes()[0]
        assert zygote.cgroup is not None
        zygote_cg, env_cg = _memory_cgroup(zygote.pid), _memory_cgroup(box.pid)
        assert zygote_cg and env_cg and zygote_cg != env_cg
        assert os.path.dirname(zygote_cg) == os.path.dirname(env_cg)   # both under this supervisor's parent
        assert box._cgroup.stats().memory_peak_bytes > 0               # the environment's own, real peak
        assert zygote.cgroup.stats().memory_peak_bytes > 1 << 20       # what it imported after joining
        zygote_dirs, zygote_pid = zygote.cgroup.dirs, zygote.pid
        _run(box, b"go\n")
    finally:
        box.close()
    close_service(supervisor)
    assert wait_gone(zygote_pid)
    assert not any(os.path.exists(d) for d in zygote_dirs)


def test_zygote_made_sandboxes_get_block_io_limits(supervisor):
    """Config.io reaches a zygote-made sandbox's cgroup as it does a fresh one's
    (the two paths make their cgroups through one function, pool.sandbox_cgroup)."""
    st = os.stat("/var/tmp")
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    if not os.path.exists(f"/sys/dev/block/{dev}") or os.path.exists(f"/sys/dev/block/{dev}/partition"):
        pytest.skip(f"/var/tmp is not on a whole block device ({dev}): throttles apply to whole disks")
    box = zygote_spawn([*ARGV, "--wait"], _config(io=[f"{dev},wbps=4194304"]), KIND, stdin=sandbox.PIPE,
                       stdout=sandbox.PIPE, stderr=sandbox.PIPE, supervisor=supervisor)
    try:
        json.loads(box.stdout.readline())
        files = [os.path.join(d, name) for d in box._cgroup.dirs
                 for name in ("blkio.throttle.write_bps_device", "io.max") if os.path.exists(os.path.join(d, name))]
        assert files, box._cgroup.dirs
        assert any("4194304" in open(f).read() for f in files), [open(f).read() for f in files]
        _run(box, b"go\n")
    finally:
        box.close()


def test_closing_the_supervisor_stops_its_zygotes(no_leaks):
    """Supervisor.close() alone ends the zygotes and removes their cgroups:
    an embedder need not know about the zygote service."""
    sup = sandbox.Supervisor(pool_size=1)
    box = zygote_spawn(ARGV, _config(), KIND, stdin=sandbox.DEVNULL, stdout=sandbox.PIPE, stderr=sandbox.PIPE,
                       supervisor=sup)
    _run(box)
    zygote = service_for(sup).zygotes()[0]
    zygote_pid, zygote_dirs = zygote.pid, zygote.cgroup.dirs
    sup.close()
    assert wait_gone(zygote_pid)
    assert not any(os.path.exists(d) for d in zygote_dirs)


# -- execution environments ------------------------------------------------------------
HANDLER = """
import os, sys
def handler(event, context):
    if event.get("head"):
        return {"found": _scan(event["head"].encode(), event["tail"].encode())}
    return {"pid": os.getpid(), "name": os.environ.get("AWS_LAMBDA_FUNCTION_NAME"),
            "secret": os.environ.get("SECRET_TOKEN"), "argv": sys.argv, "main": sys.modules["__main__"].__file__,
            "zygote_modules": [m for m in ("protocol", "sandbox", "sandbox._core", "server") if m in sys.modules],
            "fastjson_c": getattr(sys.modules.get("_fastjson"), "__file__", None),
            "stream": context.log_stream_name == os.environ["AWS_LAMBDA_LOG_STREAM_NAME"],
            "context": [context.function_name, context.function_version, context.memory_limit_in_mb,
                        context.log_group_name, context.invoked_function_arn],
            "cmdline": open("/proc/self/cmdline", "rb").read().decode(errors="replace").split("\\0")}

def _scan(head, tail):
    # head+tail in every readable mapping of this process (the heap it
    # inherited included), without ever making head+tail ourselves.
    found = 0
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if "r" not in perms or "[vvar" in line or "[vsyscall" in line:
                continue
            start, end = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(start)
                data = mem.read(end - start)
            except OSError:
                continue
            at = data.find(head)
            while at >= 0:
                found += data[at + len(head):at + len(head) + len(tail)] == tail
                at = data.find(head, at + 1)
    return found
"""


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    code = tmp_path_factory.mktemp("zygote-fn")
    (code / "app.py").write_text(HANDLER)
    conftest._drain_supervisor()
    before = conftest.LeakSnapshot()
    sup = sandbox.Supervisor(pool_size=1)
    runtime = sandbox.Runtime(zygotes=True, supervisor=sup)
    runtime.code_dir = str(code)
    try:
        yield runtime
    finally:
        runtime.close()
        close_service(sup)   # the zygote, its cgroup and its pre-forked children
        sup.close()
    conftest.assert_no_leaks(before)


def test_environment_from_a_zygote_answers_as_a_fresh_one(rt):
    rt.create_function("zy-answer", rt.code_dir, "app.handler", memory_mb=256, environment={"SECRET_TOKEN": "t1"})
    out = rt.invoke("zy-answer", b"{}")
    assert out.function_error is None, out.payload
    seen = json.loads(out.payload)
    assert seen["pid"] == 2 and seen["name"] == "zy-answer" and seen["secret"] == "t1"
    assert seen["main"] == "/var/runtime/bootstrap.py" and seen["argv"][0] == "/var/runtime/bootstrap.py"
    assert seen["zygote_modules"] == [] and seen["stream"]
    # The runtime's C JSON module came with the zygote, named by its path inside.
    assert seen["fastjson_c"] is not None and seen["fastjson_c"].startswith("/var/runtime/_fastjson."), seen
    # The runtime module is the zygote's (imported once, before any function
    # existed): the function's identity must still be this function's.
    assert seen["context"][:4] == ["zy-answer", "$LATEST", "256", "/aws/lambda/zy-answer"], seen["context"]
    assert seen["context"][4].endswith(":function:zy-answer"), seen["context"]
    # The command line is the environment's own, not the zygote's (host paths).
    cmdline = [a for a in seen["cmdline"] if a]
    assert cmdline[1:5] == ["-S", "-B", "-u", "/var/runtime/bootstrap.py"], seen["cmdline"]
    assert not any("zygote" in a or "server.py" in a for a in seen["cmdline"]), seen["cmdline"]
    assert service_for(rt._manager.supervisor).zygotes()   # it did come from a zygote


def test_one_functions_secrets_never_reach_another(rt):
    token = "zygote-secret-" + os.urandom(8).hex()
    rt.create_function("zy-victim", rt.code_dir, "app.handler", memory_mb=256, environment={"SECRET_TOKEN": token})
    assert json.loads(rt.invoke("zy-victim", b"{}").payload)["secret"] == token
    # Environments made after it, by the same zygote, of another function:
    rt.create_function("zy-thief", rt.code_dir, "app.handler", memory_mb=256)
    for _ in range(2):
        out = rt.invoke("zy-thief", json.dumps({"head": token[:14], "tail": token[14:]}).encode())
        assert out.function_error is None, out.payload
        assert json.loads(out.payload) == {"found": 0}
        rt.update_function_configuration("zy-thief", description="a new environment")
    # The scan does find what is there (the victim's own token in its memory).
    out = rt.invoke("zy-victim", json.dumps({"head": token[:14], "tail": token[14:]}).encode())
    assert json.loads(out.payload)["found"] > 0


SIGINT_IGNORED = """
import json, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)   # as under nohup, or in a shell's background job
import sandbox
from sandbox.zygote import close_service, service_for
sup = sandbox.Supervisor(pool_size=1)
rt = sandbox.Runtime(zygotes=True, supervisor=sup)
try:
    rt.create_function("sigint", sys.argv[1], "app.handler", memory_mb=256)
    out = rt.invoke("sigint", b"{}")
    print(json.dumps([out.function_error, out.json(), bool(service_for(sup).zygotes())]))
finally:
    rt.close()
    close_service(sup)
    sup.close()
"""


def test_a_supervisor_started_with_sigint_ignored_still_gets_zygote_environments(no_leaks, tmp_path):
    """The zygote inherits an ignored SIGINT through exec; it must still start,
    and its environments see SIGINT as a fresh environment's interpreter does."""
    (tmp_path / "app.py").write_text("import signal\n\n\ndef handler(event, context):\n"
                                     "    return getattr(signal.getsignal(signal.SIGINT), '__name__', 'other')\n")
    done = subprocess.run([REAL_PYTHON, "-c", SIGINT_IGNORED, str(tmp_path)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": os.path.dirname(conftest.HERE)})
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [None, "default_int_handler", True]
