"""Pure parts of sandbox/zygote: which preloads a function's own code shadows,
which commands a zygote runs, and the request check of the zygote itself."""
import os
import socket
import sys

import pytest

from sandbox.config import Bind
from sandbox.errors import ConfigError
from sandbox.zygote import ZygoteKind, protocol, unshadowed
from sandbox.zygote.service import check_command

sys.path.insert(0, os.path.dirname(protocol.__file__))
import server  # noqa: E402  (the zygote's main module, importable as a plain script)

KIND = ZygoteKind("/usr/bin/python3.11", "/rt", ())


def test_a_package_in_the_code_or_a_layer_is_not_preloaded(tmp_path):
    code, layer = tmp_path / "code", tmp_path / "layer"
    (code / "numpy").mkdir(parents=True)
    (layer / "python").mkdir(parents=True)
    (layer / "python" / "pandas.py").write_text("")
    binds = (Bind(str(code), "/var/task"), Bind(str(layer), "/opt"))
    assert unshadowed(("numpy", "pandas", "scipy.linalg"), binds, "3.11") == ("scipy.linalg",)
    assert unshadowed(("numpy",), (), "3.11") == ("numpy",)


@pytest.mark.parametrize("argv", [
    ["/bin/sh", "-c", "true"],
    ["/usr/bin/python3.11", "-c", "pass"],
    ["/usr/bin/python3.11", "-S", "-B", "-u", "-c", "pass"],
    ["/usr/bin/python3.11", "-S", "-B", "/x.py"],
    ["/usr/bin/python3", "-S", "-B", "-u", "/x.py"],
])
def test_a_zygote_runs_only_its_interpreter_on_a_script(argv):
    with pytest.raises(ConfigError):
        check_command(argv, KIND)


def test_the_command_it_runs():
    check_command(["/usr/bin/python3.11", "-S", "-B", "-u", "/var/runtime/bootstrap.py", "a", "b"], KIND)


def _request(flags=0, n_procs=1, plan_len=100, magic=protocol.MAGIC):
    return protocol.REQUEST.pack(magic, flags, 0, plan_len, n_procs)


@pytest.mark.parametrize("data,fds,flags,ok", [
    (_request(), [5, 6, 7], 0, True),
    (_request(flags=protocol.FLAG_CGROUP_DIR, n_procs=0), [5, 6, 7], 0, True),
    (_request(), [5, 6], 0, False),                         # a descriptor missing
    (_request(magic=1), [5, 6, 7], 0, False),
    (_request(flags=2), [5, 6, 7], 0, False),               # unknown flag
    (_request(plan_len=0), [5, 6, 7], 0, False),
    (_request(n_procs=protocol.MAX_PROCS_FDS + 1), [5, 6, 7], 0, False),
    (_request() + b"x", [5, 6, 7], 0, False),               # oversized
    (_request(), [5, 6, 7], socket.MSG_CTRUNC, False),     # descriptors cut off
])
def test_the_zygote_takes_only_well_formed_requests(data, fds, flags, ok):
    assert (server._check(data, fds, flags) == 0) == ok
