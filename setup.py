"""Build and install the sandbox package.  Two C build products: the core, a
cffi module (csrc/build_core.py), and the init program, an executable installed
as sandbox/_sandbox_init (csrc/build_init.py), built by the same build_ext."""
import os
import runpy

from setuptools import find_packages, setup
from setuptools.command.build_ext import build_ext

INIT_PROGRAM = os.path.join("sandbox", "_sandbox_init")  # in the package: sandbox/plan.py opens it


class build_ext_with_init(build_ext):
    """build_ext (cffi wraps it for the core), then the init program with the
    same compiler: into build_lib for a wheel, next to the sources as well for
    an editable install (like the extension modules)."""

    def run(self):
        super().run()
        from setuptools._distutils.ccompiler import new_compiler
        from setuptools._distutils.sysconfig import customize_compiler

        compiler = self.compiler  # the one that built the core, once build_ext ran
        if compiler is None or isinstance(compiler, str):  # no extension was built: still the option
            compiler = new_compiler(compiler=compiler, verbose=self.verbose, dry_run=self.dry_run, force=self.force)
            customize_compiler(compiler)
        build = runpy.run_path(os.path.join("csrc", "build_init.py"))["build_init_program"]
        built = build(compiler, self.build_temp, os.path.join(self.build_lib, INIT_PROGRAM), force=self.force)
        if self.inplace:
            self.copy_file(built, self._inplace_init_program(), level=self.verbose)

    def _inplace_init_program(self):
        package_dir = self.get_finalized_command("build_py").get_package_dir("sandbox")
        return os.path.join(package_dir, os.path.basename(INIT_PROGRAM))

    def get_outputs(self):
        outputs = super().get_outputs()
        if self.inplace:
            return outputs + [self._inplace_init_program()]
        return outputs + [os.path.join(self.build_lib, INIT_PROGRAM)]

    def get_output_mapping(self):
        mapping = super().get_output_mapping()
        if self.inplace:
            mapping[os.path.join(self.build_lib, INIT_PROGRAM)] = self._inplace_init_program()
        return mapping


setup(
    name="sandbox",
    version="0.1.0",
    description="Lambda-style isolated execution environments on plain Linux",
    python_requires=">=3.11",
    packages=find_packages(include=["sandbox", "sandbox.*"]),
    setup_requires=["cffi>=1.15"],
    cffi_modules=["csrc/build_core.py:ffibuilder"],
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
