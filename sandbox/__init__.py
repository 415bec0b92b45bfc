"""sandbox: run untrusted commands and handlers in isolated Linux sandboxes.

    import sandbox
    result = sandbox.run(["python3", "-c", "print(1)"], sandbox.Config())
"""
from .config import Bind, Config, LAYERS
from .errors import (CapabilityError, CgroupError, CgroupSetupError, ConfigError, ExecError,
                     HostUnsupportedError, MountError, NamespaceError, PolicyError, SandboxError,
                     SeccompError, SetupError, SpawnError)
from .launcher import DEVNULL, PIPE, Result, Sandbox, run, spawn
from .supervisor import Supervisor
from .functions import InvokeResult, Runtime

__all__ = [
    "Bind", "Config", "LAYERS", "Result", "Sandbox", "Supervisor", "run", "spawn", "PIPE", "DEVNULL",
    "SandboxError", "ConfigError", "HostUnsupportedError", "SpawnError", "SetupError", "NamespaceError",
    "CgroupError", "CgroupSetupError", "MountError", "CapabilityError", "SeccompError", "ExecError",
    "PolicyError", "Runtime", "InvokeResult",
]
