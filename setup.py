"""Build and install the sandbox package; the C core is built by cffi (csrc/build_core.py)."""
from setuptools import find_packages, setup

setup(
    name="sandbox",
    version="0.1.0",
    description="Lambda-style isolated execution environments on plain Linux",
    python_requires=">=3.11",
    packages=find_packages(include=["sandbox", "sandbox.*"]),
    setup_requires=["cffi>=1.15"],
    cffi_modules=["csrc/build_core.py:ffibuilder"],
    install_requires=[
        "cffi>=1.15",
        "pyseccomp>=0.1.2",
        "python-prctl>=1.8",
        "cgroupspy>=0.2",
        "pyroute2>=0.7",
    ],
    entry_points={"console_scripts": ["sandbox=sandbox.cli:main"]},
    zip_safe=False,
)
