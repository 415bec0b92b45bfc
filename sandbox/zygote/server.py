"""A runtime zygote: one per runtime (and preload set), started by client.py as

    python -S -B -u server.py SOCK_FD PARENT_PID CORE CFFI_DIR RUNTIME_DIR MODULES PRELOAD LAST_CAP CGROUP

It joins its own cgroup, drops every host capability, imports the runtime's
modules (MODULES, compiled under the names they have inside the sandbox) and
the runtime-provided packages in PRELOAD, runs no function code, freezes its
heap for the garbage collector (gc.freeze: a child's first collection then
touches no shared page) and forks environments on request (protocol.py,
csrc/zygote.c).  It stays single-threaded and reads nothing but fixed-size
requests from the supervisor.

In a child, sbx_zygote_fork returns 0 when the sandbox is fully set up (pid
2 of its namespaces, privileges dropped, seccomp on); _become_runtime then
makes this interpreter look like `python -S -B -u <script> args...` started
fresh inside -- argv, environment, signal dispositions, sys.path, __main__ --
and runs the script.

Run outside the `sandbox` package on purpose (python -S, nothing else on
sys.path): an environment inherits every module the zygote has loaded.
"""
import builtins
import ctypes
import gc
import os
import signal
import socket
import sys
import time

import protocol

ZYGOTE_ONLY_MODULES = ("protocol", "sandbox._core")
_ZYGOTE_TZ = ":UTC"   # the TZ Lambda (and spec.platform_environment) gives every function
PRELOAD_ENV = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")  # = "1" at start: no threads


def _fatal(message: str, code: int = 70) -> None:
    sys.stderr.write(f"sandbox zygote: {message}\n")
    sys.stderr.flush()
    os._exit(code)


def _join_cgroup(spec: str) -> None:
    """First, so that everything below is charged to the zygote's own cgroup."""
    kind, _, fds = spec.partition(":")
    for fd in (int(x) for x in fds.split(",") if x):
        if kind == "v2":
            procs = os.open("cgroup.procs", os.O_WRONLY | os.O_CLOEXEC, dir_fd=fd)
            try:
                os.write(procs, b"0")
            finally:
                os.close(procs)
        else:
            os.write(fd, b"0")
        os.close(fd)


def _load_core(path: str, cffi_dir: str):
    """The C core by path, without importing the `sandbox` package (and so
    without putting it into every environment's interpreter).  Its backend,
    _cffi_backend, comes from `cffi_dir` (a site-packages we do not keep on
    sys.path)."""
    from _frozen_importlib import ModuleSpec
    from _frozen_importlib_external import ExtensionFileLoader

    sys.path.append(cffi_dir)
    try:
        import _cffi_backend  # noqa: F401  (the extension imports it by name)
    finally:
        sys.path.remove(cffi_dir)
    loader = ExtensionFileLoader("sandbox._core", path)
    module = loader.create_module(ModuleSpec("sandbox._core", loader, origin=path))
    loader.exec_module(module)
    return module.ffi, module.lib


def _preload_runtime(runtime_dir: str, names, mount: str = "/var/runtime") -> None:
    """Import the runtime's modules as the sandbox would see them: code objects
    named /var/runtime/<name>.py, so tracebacks and the runtime's own
    frame filter are the same as in a freshly started environment."""
    from _frozen_importlib import ModuleSpec
    from _frozen_importlib_external import SourceFileLoader

    _preload_extensions(runtime_dir, mount)
    for name in names:
        inside = f"{mount}/{name}.py"
        with open(os.path.join(runtime_dir, name + ".py"), "rb") as f:
            code = compile(f.read(), inside, "exec", dont_inherit=True)
        loader = SourceFileLoader(name, inside)
        module = type(sys)(name)
        module.__file__, module.__loader__ = inside, loader
        module.__spec__ = ModuleSpec(name, loader, origin=inside)
        module.__spec__.has_location = True
        sys.modules[name] = module
        exec(code, module.__dict__)


def _preload_extensions(runtime_dir: str, mount: str) -> None:
    """The runtime's C modules (_fastjson, _serve, _heap): loaded from the host's copy, named
    by their path inside, where a fresh environment imports them from (the
    host's path is not for an environment to see)."""
    from _frozen_importlib import ModuleSpec
    from _frozen_importlib_external import EXTENSION_SUFFIXES, ExtensionFileLoader

    for entry in sorted(os.listdir(runtime_dir)):
        suffix = next((s for s in EXTENSION_SUFFIXES if entry.endswith(s)), None)
        name = entry[:-len(suffix)] if suffix else ""
        if not name.isidentifier() or name in sys.modules:
            continue
        loader = ExtensionFileLoader(name, os.path.join(runtime_dir, entry))
        spec = ModuleSpec(name, loader, origin=loader.path)
        module = loader.create_module(spec)
        loader.exec_module(module)
        inside = f"{mount}/{entry}"
        module.__file__ = inside
        module.__spec__ = ModuleSpec(name, ExtensionFileLoader(name, inside), origin=inside)
        module.__spec__.has_location = True
        module.__loader__ = module.__spec__.loader
        sys.modules[name] = module


def _preload_packages(names) -> None:
    """Runtime-provided packages (the interpreter's site-packages, which the
    runtime puts last on sys.path too)."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = f"{sys.prefix}/lib/{version}/site-packages"
    sys.path.append(site)
    try:
        for name in names:
            __import__(name)
    finally:
        sys.path.remove(site)


def _check_signals() -> None:
    """The dispositions every child keeps (csrc/sandbox_core.c,
    interpreter_signal) must be a fresh interpreter's.  A SIGINT ignored by
    whoever started the supervisor (nohup, a background job of a shell) is
    ignored here too, inherited through exec, and Python then leaves it so:
    a fresh environment's interpreter starts with every disposition reset to
    default and installs its handler, so the zygote does the same first."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    fresh = {signal.SIGINT: signal.default_int_handler, signal.SIGPIPE: signal.SIG_IGN,
             signal.SIGXFSZ: signal.SIG_IGN}
    for sig, handler in fresh.items():
        if signal.getsignal(sig) is not handler:
            _fatal(f"signal {sig} is {signal.getsignal(sig)!r}, not a fresh interpreter's {handler!r}", 73)


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


def main(argv) -> None:
    sock_fd, parent, core, cffi_dir, runtime_dir, modules, preload, last_cap, cgroup = argv
    _join_cgroup(cgroup)
    _check_signals()
    ffi, lib = _load_core(core, cffi_dir)
    rc = lib.sbx_zygote_harden(int(parent), int(last_cap))
    if rc < 0:
        _fatal(f"harden: {os.strerror(-rc)}")
    sock = socket.socket(fileno=int(sock_fd))
    _preload_runtime(runtime_dir, [m for m in modules.split(",") if m])
    try:
        _preload_packages([p for p in preload.split(",") if p])
    except Exception as exc:  # reported to the client, which raises it typed
        _fatal(f"preload: {type(exc).__name__}: {exc}", 71)
    if _threads() != 1:
        _fatal(f"{_threads()} threads after the imports: forking would lose all but one", 72)
    # What every child would otherwise undo on pages it shares with us, undone
    # once here: the host paths' import finders and the zygote's own
    # environment (a child replaces both).  Iterating or clearing them in a
    # child writes the reference counts of every entry -- ~0.4 MiB per child.
    sys.path_importer_cache.clear()
    _strings(ffi, ffi.new("char *[]", [ffi.new("char[]", b"X=1"), ffi.NULL]))   # cffi's string path, warmed here once
    os.environ.clear()
    os.environ["TZ"] = _ZYGOTE_TZ   # and the time zone every function gets (spec.py), set once here
    time.tzset()
    del os.environ["TZ"]
    gc.collect()
    gc.freeze()   # after this, the children's collections leave the shared heap alone
    sock.sendall(protocol.READY)
    if _serve(sock, ffi, lib):
        _become_runtime(sock, ffi, lib)


def _serve(sock, ffi, lib) -> bool:
    """Fork environments until the supervisor hangs up.  Returns True in a
    child (it must become the runtime), False when the supervisor is gone."""
    before, after_parent = ctypes.pythonapi.PyOS_BeforeFork, ctypes.pythonapi.PyOS_AfterFork_Parent
    # Allocated once: the requests leave the heap (that every child shares) alone.
    args = ffi.new("struct sbx_zygote_fork_args *")
    out = ffi.new("struct sbx_spawn *")
    procs = ffi.new("int[]", protocol.MAX_PROCS_FDS)
    args.cgroup_procs_fds = procs
    while True:
        try:
            data, fds, msg_flags, _ = socket.recv_fds(sock, protocol.REQUEST.size + 1, protocol.MAX_REQUEST_FDS,
                                                      socket.MSG_CMSG_CLOEXEC)
        except InterruptedError:
            continue
        if not data:
            return False
        result = _check(data, fds, msg_flags)
        if result == 0:
            _, flags, clone_flags, plan_len, n_procs = protocol.REQUEST.unpack(data)
            args.clone_flags, args.plan_len = clone_flags, plan_len
            args.plan_fd, args.init_fd = fds[0], fds[1]
            rest = fds[2:]
            args.cgroup_fd = rest.pop(0) if flags & protocol.FLAG_CGROUP_DIR else -1
            for i, fd in enumerate(rest):
                procs[i] = fd
            args.n_cgroup_procs_fds = n_procs
            before()
            result = lib.sbx_zygote_fork(args, out)
            if result == 0:
                return True   # the child: its setup closed what it does not keep
            after_parent()
        for fd in fds:
            os.close(fd)
        reply = protocol.REPLY.pack(protocol.MAGIC, result)
        if result > 0:
            mine = [out.pidfd, out.error_fd, out.sync_fd, out.control_fd]
            try:
                socket.send_fds(sock, [reply], mine)
            finally:
                for fd in mine:
                    os.close(fd)
        else:
            sock.sendall(reply)


def _check(data: bytes, fds, msg_flags) -> int:
    """0 for a well-formed request, else -errno (EPROTO)."""
    if msg_flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC) or len(data) != protocol.REQUEST.size:
        return -71
    magic, flags, _, plan_len, n_procs = protocol.REQUEST.unpack(data)
    extra = 1 if flags & protocol.FLAG_CGROUP_DIR else 0
    if magic != protocol.MAGIC or flags & ~protocol.FLAG_CGROUP_DIR or n_procs > protocol.MAX_PROCS_FDS \
            or len(fds) != 2 + extra + n_procs or not plan_len:
        return -71
    return 0


def _strings(ffi, array) -> list:
    out, i = [], 0
    while array != ffi.NULL and array[i] != ffi.NULL:
        out.append(ffi.string(array[i]).decode("utf-8", "surrogateescape"))
        i += 1
    return out


def _set_command_line(argv) -> None:
    """Make /proc/self/cmdline the environment's command line, not the
    zygote's (which names host paths, the supervisor's pid and the cgroup):
    overwrite the original argument area in place, as setproctitle does --
    the kernel reads that memory back.  Its bounds come from /proc/self/stat
    (arg_start, arg_end); CPython keeps copies of its arguments, so nothing
    reads the area again.  What does not fit is cut; the rest is NULs."""
    with open("/proc/self/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    start, end = int(fields[45]), int(fields[46])   # fields 48 and 49 of proc(5), counted after the comm
    size = end - start
    if size <= 0:
        return
    text = b"\0".join(a.encode("utf-8", "surrogateescape") for a in argv) + b"\0"
    text = text[:size - 1] + b"\0" if len(text) > size else text
    ctypes.memmove(start, text.ljust(size, b"\0"), size)


def _become_runtime(sock, ffi, lib) -> None:
    """In the new environment (pid 2): become `python -S -B -u SCRIPT ARGS`."""
    ctypes.pythonapi.PyOS_AfterFork_Child()   # what os.fork() does: locks, threading, at-fork hooks (random)
    sock.detach()   # the C child closed it: the number may be reused, never close it again
    argv = _strings(ffi, lib.sbx_zygote_argv())
    env = _strings(ffi, lib.sbx_zygote_envp())
    lib.sbx_zygote_release_plan()   # copied out: its pages need not stay ours
    if len(argv) < 5 or argv[0] != sys.executable or argv[1:4] != ["-S", "-B", "-u"] or argv[4].startswith("-"):
        _fatal(f"cannot run {argv[:5]!r}: a zygote only runs `{sys.executable} -S -B -u SCRIPT`", 127)
    # Signal dispositions: the C setup reset every one to default but those a
    # fresh interpreter sets up (SIGINT, SIGPIPE, SIGXFSZ), which it kept as
    # ours -- checked at start (_check_signals) to be a fresh interpreter's.
    os.environ.clear()
    for item in env:
        key, sep, value = item.partition("=")
        if sep and key:
            os.environ[key] = value
    if os.environ.get("TZ") != _ZYGOTE_TZ:
        time.tzset()   # TZ is the function's now (Lambda's is :UTC, as the zygote's)
    script = argv[4]
    sys.argv, sys.orig_argv = argv[4:], argv
    _set_command_line(argv)
    sys.path[0] = os.path.dirname(script)
    for name in ZYGOTE_ONLY_MODULES:
        sys.modules.pop(name, None)
    for key in [k for k in sys.path_importer_cache if k not in sys.path]:
        del sys.path_importer_cache[key]   # the zygote's host paths mean nothing in here
    main_module = type(sys)("__main__")
    from _frozen_importlib_external import SourceFileLoader

    main_module.__file__, main_module.__builtins__, main_module.__cached__ = script, builtins, None
    main_module.__loader__ = SourceFileLoader("__main__", script)
    sys.modules["__main__"] = main_module
    with open(script, "rb") as f:
        code = compile(f.read(), script, "exec", dont_inherit=True)
    del argv, env, sock, ffi, lib
    exec(code, main_module.__dict__)


if __name__ == "__main__":
    main(sys.argv[1:])
