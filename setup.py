"""Build and install the sandbox package.  Seven C build products: the core, a
cffi module (csrc/build_core.py); the function runtime's JSON, serve-loop and
heap modules and the supervisor's warm invoke path, plain CPython extensions
(csrc/fastjson*.c, csrc/runtime_serve.c, csrc/runtime_heap.c,
csrc/warm_exchange.c); and two
executables installed in the package (csrc/build_init.py), built by the same
build_ext: the init program (sandbox/_sandbox_init) and the shell program
(sandbox/_sandbox_shell)."""
import os
import runpy

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

# In the package: sandbox/plan.py opens them.  (build function in csrc/build_init.py, path)
PROGRAMS = (("build_init_program", os.path.join("sandbox", "_sandbox_init")),
            ("build_shell_program", os.path.join("sandbox", "_sandbox_shell")))

# In the runtime directory, bound at /var/runtime: there it is the top-level
# module _fastjson, run by the host's interpreter (so the full C API is fine).
FASTJSON = Extension("sandbox.functions.runtime._fastjson",
                     [os.path.join("csrc", "fastjson.c"), os.path.join("csrc", "fastjson_decode.c"), os.path.join("csrc", "fastjson_encode.c")],
                     depends=[os.path.join("csrc", "fastjson.h")],
                     extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"])
# Also there: the runtime's warm serve loop, _serve.  Optional: where it does
# not build, lambda_runtime.py runs the same loop in Python (slower), and
# tests/unit/test_runtime_serve.py fails, so our own builds never lack it.
RUNTIME_SERVE = Extension("sandbox.functions.runtime._serve",
                          [os.path.join("csrc", "runtime_serve.c"), os.path.join("csrc", "runtime_serve_channel.c")],
                          depends=[os.path.join("csrc", "runtime_serve.h")], extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"], optional=True)
# And the runtime's heap policy (mallopt), _heap.
RUNTIME_HEAP = Extension("sandbox.functions.runtime._heap", [os.path.join("csrc", "runtime_heap.c")],
                         extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"])

# The supervisor's warm invoke path (sandbox/functions/environment.py): it
# shares csrc/channel.c's wait loop with the cffi core.
WARM_EXCHANGE = Extension("sandbox.functions._warm",
                          [os.path.join("csrc", "warm_exchange.c"), os.path.join("csrc", "channel.c")],
                          depends=[os.path.join("csrc", "channel.h")],
                          extra_compile_args=["-O2", "-Wall", "-Wextra", "-std=gnu11"])


class build_ext_with_init(build_ext):
    """build_ext (cffi wraps it for the core), then the programs with the same
    compiler: into build_lib for a wheel, next to the sources as well for an
    editable install (like the extension modules)."""

    def run(self):
        super().run()
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler

        compiler = self.compiler  # the one that built the core, once build_ext ran
        if compiler is None or isinstance(compiler, str):  # no extension was built: still the option
            compiler = new_compiler(compiler=compiler, verbose=self.verbose, dry_run=self.dry_run, force=self.force)
            customize_compiler(compiler)
        builders = runpy.run_path(os.path.join("csrc", "build_init.py"))
        for function, program in PROGRAMS:
            built = builders[function](compiler, self.build_temp, os.path.join(self.build_lib, program),
                                       force=self.force)
            if self.inplace:
                self.copy_file(built, self._inplace(program), level=self.verbose)

    def _inplace(self, program):
        package_dir = self.get_finalized_command("build_py").get_package_dir("sandbox")
        return os.path.join(package_dir, os.path.basename(program))

    def get_outputs(self):
        outputs = super().get_outputs()
        if self.inplace:
            return outputs + [self._inplace(program) for _, program in PROGRAMS]
        return outputs + [os.path.join(self.build_lib, program) for _, program in PROGRAMS]

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        if self.inplace:
            for _, program in PROGRAMS:
                mapping[os.path.join(self.build_lib, program)] = self._inplace(program)
        return mapping


setup(
    name="sandbox",
    version="0.1.0",
    description="Lambda-style isolated execution environments on plain Linux",
    python_requires=">=3.11",
    packages=find_packages(include=["sandbox", "sandbox.*"]),
    setup_requires=["cffi>=1.15"],
    cffi_modules=["csrc/build_core.py:ffibuilder"],
    ext_modules=[FASTJSON, RUNTIME_SERVE, RUNTIME_HEAP, WARM_EXCHANGE],
    cmdclass={"build_ext": build_ext_with_init},
    install_requires=[
        "cffi>=1.15",
        "pyseccomp>=0.1.2",
        "python-prctl>=1.8",
        "cgroupspy>=0.2",
        "pyroute2>=0.7",
        "cryptography>=41",          # AES-GCM for code at rest
        "prometheus_client>=0.17",   # metrics in Prometheus text format
    ],
    extras_require={"bench": ["matplotlib>=3.5"]},   # PNG plots of `sandbox bench`
    entry_points={"console_scripts": ["sandbox=sandbox.cli:main"]},
    zip_safe=False,
)
