"""EnvironmentSpec: everything needed to start an execution environment of one
function version -- the sandbox Config, the bootstrap's command line, the
timeouts -- derived once per version from its FunctionConfiguration.

All environments of a version share one Config (per-environment values such as
the log stream name travel on the command line), so the isolation core can
keep pre-made sandboxes for the version ready.
"""
from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass

from ..config import Bind, Config
from .runtime_interface import PROVIDED_RUNTIMES, find_bootstrap, provided_environment

RUNTIME_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runtime")
TASK_ROOT = "/var/task"
RUNTIME_MOUNT = "/var/runtime"
INIT_TIMEOUT_S = 10.0            # Lambda's init phase limit
MB_PER_VCPU = 1769               # Lambda: CPU is proportional to memory, 1,769 MB = 1 vCPU
PROCESS_LIMIT = 1024             # Lambda's processes/threads quota
FILE_LIMIT = 1024                # Lambda's file descriptor quota
PYTHON_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}"


def real_interpreter() -> str:
    """The interpreter binary itself: sys.executable may be a symlink or a shim."""
    return os.path.realpath(sys.executable)


@dataclass(frozen=True)
class EnvironmentSpec:
    function_name: str
    version: str
    handler: str
    memory_mb: int
    timeout_s: float
    config: Config                 # the sandbox of every environment of this version
    init_timeout_s: float = INIT_TIMEOUT_S
    initialization_type: str = "on-demand"
    # provided* runtimes: the runtime is `bootstrap` (its path inside; "" when
    # none was found) and is served the Runtime API (runtime_interface/).
    runtime_api: bool = False
    bootstrap: str = ""
    # Fork environments from a zygote with these runtime-provided packages
    # preloaded (sandbox/zygote, docs/zygotes.md); None: a fresh interpreter.
    zygote: tuple[str, ...] | None = None

    def argv(self, environment_id: str) -> list[str]:
        return [real_interpreter(), "-S", "-B", "-u", f"{RUNTIME_MOUNT}/bootstrap.py",
                log_stream_name(self.version, environment_id), self.initialization_type]


def log_stream_name(version: str, environment_id: str) -> str:
    """Lambda's per-environment stream name: date/[version]id."""
    return f"{datetime.datetime.now(datetime.timezone.utc):%Y/%m/%d}/[{version}]{environment_id}"


def cpus_for(memory_mb: int) -> float:
    return max(0.01, memory_mb / MB_PER_VCPU)


def build_spec(configuration, code_path: str, *, region: str, max_lifetime_s: float, layers_dir: str | None = None,
               disable: frozenset[str] = frozenset(), init_timeout_s: float = INIT_TIMEOUT_S,
               credentials=None) -> EnvironmentSpec:
    """The spec of one version (`configuration` is a FunctionConfiguration;
    `code_path` its materialized code tree)."""
    fc = configuration
    env = platform_environment(fc, region)
    env.update(fc.environment)
    if credentials is not None:   # the execution role's, as Lambda hands them over
        env.update(credentials.environment())
    binds = [Bind(code_path, TASK_ROOT), Bind(RUNTIME_DIR, RUNTIME_MOUNT)]
    if layers_dir:
        binds.append(Bind(layers_dir, "/opt"))
    config = Config(
        memory_mb=fc.memory_mb,
        cpus=cpus_for(fc.memory_mb),
        pids=PROCESS_LIMIT,
        max_open_files=FILE_LIMIT,
        tmp_size_mb=fc.ephemeral_storage_mb,
        max_file_mb=max(1024, fc.ephemeral_storage_mb),
        # The sandbox's own deadline is the lease: the environment is recycled
        # before it, and the watchdog kills it if anything goes wrong.
        timeout_s=max_lifetime_s + 60,
        binds=tuple(binds),
        env=tuple(sorted(env.items())),
        policy=fc.policy,
        net="loopback",
        cwd=TASK_ROOT,
        # A tiny init is pid 1: it reaps what handlers leave behind, and the
        # runtime, as pid 2, can be signalled (even by itself) like any process.
        init="pid" not in disable,
        disable=disable,
    ).validated()
    provided = fc.runtime in PROVIDED_RUNTIMES
    return EnvironmentSpec(fc.function_name, fc.version, fc.handler, fc.memory_mb, float(fc.timeout_s), config,
                           init_timeout_s=init_timeout_s, runtime_api=provided,
                           bootstrap=find_bootstrap(code_path, layers_dir) if provided else "")


def platform_environment(fc, region: str) -> dict[str, str]:
    """The variables Lambda sets for every Python function (reserved names),
    or for a custom runtime's (provided*)."""
    env = {
        "AWS_LAMBDA_FUNCTION_NAME": fc.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": fc.version,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(fc.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{fc.function_name}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{PYTHON_VERSION}",
        "LAMBDA_TASK_ROOT": TASK_ROOT,
        "LAMBDA_RUNTIME_DIR": RUNTIME_MOUNT,
        "_HANDLER": fc.handler,
        "TZ": ":UTC",
        "LANG": "en_US.UTF-8",
        "PATH": "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
        "LD_LIBRARY_PATH": "/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib",
    }
    if fc.runtime in PROVIDED_RUNTIMES:
        env = provided_environment(env, os.path.dirname(real_interpreter()))
    return env


RESERVED_VARIABLES = frozenset((
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
))
