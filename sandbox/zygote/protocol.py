"""The supervisor <-> zygote messages: fixed-size, typed, nothing else.

Shared verbatim by both ends: the zygote (sandbox/zygote/server.py, run with
`python -S`, outside the package) imports it as plain `protocol`, so it may
import nothing but `struct`.

Over a SOCK_SEQPACKET socketpair, one request then one reply at a time:

  request  = REQUEST  (magic, flags, clone flags, plan length, number of v1 cgroup.procs fds)
             + SCM_RIGHTS: plan memfd, init program, [v2 cgroup dir], cgroup.procs fds...
  reply    = REPLY    (magic, result: the child's pid, or -errno)
             + SCM_RIGHTS (when result > 0): pidfd, error pipe, sync pipe, launch socket

The zygote reads nothing else from anyone: the plan travels in the memfd that
only the new child maps (csrc/zygote.c), argv and stdio go from the
supervisor to the child over the launch socket.
"""
import struct

MAGIC = 0x5A594730          # "ZYG0"
REQUEST = struct.Struct("<IIQQI")
REPLY = struct.Struct("<Ii")
READY = b"R"                # the zygote's first message: imports done, serving

FLAG_CGROUP_DIR = 1         # a v2 cgroup directory fd follows the init program (CLONE_INTO_CGROUP)
MAX_PROCS_FDS = 16          # csrc/zygote.c ZYGOTE_MAX_PROCS_FDS
MAX_REQUEST_FDS = 3 + MAX_PROCS_FDS
REPLY_FDS = 4
