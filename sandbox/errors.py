"""Typed errors.  Every isolation step that can fail has its own class, and each
error names the step, the syscall (or file) and the errno, and says what to do.

All of them are ``SandboxError``, itself an ``OSError`` so ``.errno`` works.
"""
import errno as _errno
import os


class SandboxError(OSError):
    """Base class: the sandbox could not be set up or used as asked."""

    step = "sandbox"

    def __init__(self, err=0, message="", detail=None, *, hint=None):
        self.detail = detail
        self.hint = hint
        text = f"{self.step}{'' if message.startswith('(') else ':'} {message}" if message else self.step
        if err:
            text += f": [{_errno.errorcode.get(err, err)}] {os.strerror(err)}"
        if hint:
            text += f" ({hint})"
        super().__init__(err, text)

    def __str__(self):
        return self.strerror or ""


class ConfigError(SandboxError, ValueError):
    """The configuration (or a policy, or a CLI argument) is invalid."""

    step = "config"

    def __init__(self, message, *, field=None):
        self.field = field
        super().__init__(_errno.EINVAL, f"{field}: {message}" if field else message)


class HostUnsupportedError(SandboxError):
    """The host lacks a feature that was asked for (or is on by default)."""

    step = "host"


class SpawnError(SandboxError):
    """clone3 itself failed: no child ran."""

    step = "clone"


class SetupError(SandboxError):
    """A step between clone and exec failed inside the child."""

    step = "setup"

    def __init__(self, err, syscall, stage_name):
        self.syscall = syscall
        self.stage_name = stage_name
        super().__init__(err, syscall)


class NamespaceError(SetupError):
    step = "namespaces"


class CgroupError(SetupError):
    step = "cgroups"


class MountError(SetupError):
    step = "filesystem"


class PivotRootError(MountError):
    step = "pivot_root"


class NetworkError(SetupError):
    step = "network"


class ProcessSetupError(SetupError):
    step = "process"


class CapabilityError(SetupError):
    step = "capabilities"


class SeccompError(SetupError):
    step = "seccomp"


class ExecError(SetupError):
    step = "exec"


class PolicyError(ConfigError):
    """A seccomp policy file is invalid (with file and line)."""

    step = "policy"


class CgroupSetupError(SandboxError):
    """Creating, limiting or removing a cgroup in the parent failed."""

    step = "cgroups"


# Child stage number (csrc/sandbox_core.h, enum sbx_stage) -> (name, class).
STAGES = {
    1: ("clone", SpawnError),
    2: ("parent-sync", NamespaceError),
    3: ("signals", ProcessSetupError),
    4: ("death-signal", ProcessSetupError),
    5: ("cgroup-join", CgroupError),
    6: ("cgroup-namespace", NamespaceError),
    7: ("mount-propagation", MountError),
    8: ("bind-source", MountError),
    9: ("root-tmpfs", MountError),
    10: ("mkdir", MountError),
    11: ("bind", MountError),
    12: ("mount", MountError),
    13: ("symlink", MountError),
    14: ("write-file", MountError),
    15: ("read-only", MountError),
    16: ("pivot-root", PivotRootError),
    17: ("unmount-old-root", PivotRootError),
    18: ("hostname", NamespaceError),
    19: ("loopback", NetworkError),
    20: ("setsid", ProcessSetupError),
    21: ("rlimit", ProcessSetupError),
    22: ("fds", ProcessSetupError),
    23: ("securebits", CapabilityError),
    24: ("capability-bounding-set", CapabilityError),
    25: ("setgroups", CapabilityError),
    26: ("setgid", CapabilityError),
    27: ("setuid", CapabilityError),
    28: ("capset", CapabilityError),
    29: ("no-new-privs", CapabilityError),
    30: ("chdir", ProcessSetupError),
    31: ("seccomp", SeccompError),
    32: ("exec", ExecError),
    33: ("ambient-capabilities", CapabilityError),
    34: ("plan", SetupError),
    35: ("launch", ProcessSetupError),
    36: ("init-exec", ProcessSetupError),
    37: ("netns-join", NetworkError),
    38: ("shell-exec", ProcessSetupError),
}


def error_from_child(stage, err, detail):
    """Build the typed exception for a child's (stage, errno, detail) record."""
    name, cls = STAGES.get(stage, (f"stage-{stage}", SetupError))
    label = "" if name == cls.step else f"({name})"
    return cls(err, f"{label} {detail}".strip() if detail else label, name)
