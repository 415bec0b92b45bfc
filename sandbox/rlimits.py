"""Resource limits (setrlimit) applied in the child; every one finite."""
from __future__ import annotations

from .config import MiB, Config
from .constants import kernel_constant as K


def plan_rlimits(config: Config) -> tuple[tuple[int, int, int], ...]:
    """(resource, soft, hard) triples, soft == hard so the payload cannot raise them."""
    limits = (
        ("RLIMIT_NOFILE", config.max_open_files),
        ("RLIMIT_FSIZE", config.max_file_mb * MiB),
        ("RLIMIT_CORE", 0),                 # no core dumps (they would leak memory to disk)
        ("RLIMIT_NPROC", config.pids),      # per-user count; the pids cgroup is the real bound
        ("RLIMIT_MEMLOCK", 64 * 1024),
        ("RLIMIT_MSGQUEUE", 800 * 1024),
        ("RLIMIT_SIGPENDING", 4096),
    )
    return tuple((K(name), value, value) for name, value in limits)
