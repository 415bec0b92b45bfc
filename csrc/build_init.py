"""Build the init program (csrc/sandbox_init.c) and the shell program
(csrc/sandbox_shell.c) into executables: setup.py's build_ext runs
`build_init_program` and `build_shell_program` next to the cffi module.

Compiled by the same compiler object and with the same flags as the C core
(COMPILE_ARGS, shared with build_core.py), plus what a freestanding static
executable needs: no libc, no stack protector (it would read a TLS canary that
nobody set up), no dynamic loader, fixed addresses.  Not packaged: build code.
"""
import glob
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "sandbox_init.c")
COMPILE_ARGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-std=gnu11"]
FREESTANDING_ARGS = ["-ffreestanding", "-fno-stack-protector", "-fno-asynchronous-unwind-tables"]
LINK_ARGS = ["-nostdlib", "-static", "-no-pie", "-Wl,--build-id=none", "-s"]


def build_init_program(compiler, build_temp: str, output: str, force: bool = False) -> str:
    """Compile and link the init program to `output` (a path) with `compiler`, a
    customized distutils CCompiler; skipped when `output` is newer than the
    source.  Returns `output`."""
    from setuptools._distutils.dep_util import newer

    if not (force or newer(SOURCE, output)):
        return output
    objects = compiler.compile([SOURCE], output_dir=build_temp, extra_postargs=COMPILE_ARGS + FREESTANDING_ARGS)
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    compiler.link_executable(objects, os.path.basename(output), output_dir=os.path.dirname(output) or ".",
                             extra_postargs=LINK_ARGS)
    os.chmod(output, 0o755)
    return output


SHELL_SOURCE = os.path.join(HERE, "sandbox_shell.c")
# The shell links the core's child side, so most C sources and headers change it.
SHELL_DEPENDS = sorted(glob.glob(os.path.join(HERE, "*.[ch]")))
# Static with libc: exec'd once per pre-made sandbox, so no dynamic loader work.
SHELL_LINK_ARGS = ["-static", "-Wl,--build-id=none", "-s"]


def build_shell_program(compiler, build_temp: str, output: str, force: bool = False) -> str:
    """Compile and link the shell program to `output`, like build_init_program."""
    from setuptools._distutils.dep_util import newer_group

    if not (force or newer_group(SHELL_DEPENDS, output)):
        return output
    sources = [SHELL_SOURCE] + [os.path.join(HERE, name) for name in ("sandbox_core.c", "rootfs.c", "plan_blob.c")]
    # Objects of their own: the cffi module compiles sandbox_core.c too.
    objects = compiler.compile(sources, output_dir=os.path.join(build_temp, "shell"), extra_postargs=COMPILE_ARGS)
    os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
    compiler.link_executable(objects, os.path.basename(output), output_dir=os.path.dirname(output) or ".",
                             extra_postargs=SHELL_LINK_ARGS)
    os.chmod(output, 0o755)
    return output
