"""The native CPU engine's build (edge_runtime/native/kernel.cpp); everything else is in pyproject.toml.

The kernel is built at install for the CPU it is installed on (``-march=native``; set
``EDGEAMP_NATIVE_MARCH`` to build for another target, e.g. ``x86-64-v3`` for an image that runs on
other machines). It is optional: without a C++ compiler the install goes on and edgeamp runs
OpenVINO only (``edgeamp devices`` says so).
"""

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildNative(build_ext):
    def build_extension(self, ext):
        march = os.environ.get("EDGEAMP_NATIVE_MARCH", "native")
        ext.extra_compile_args = ["-O3", "-std=c++17", "-fno-math-errno", f"-march={march}", "-DNDEBUG", "-Wno-psabi"]
        try:
            super().build_extension(ext)
        except Exception as exc:  # optional: no compiler, or one that refuses the flags
            print(f"edgeamp: the native CPU engine was not built ({exc}); OpenVINO runs alone")

    def get_export_symbols(self, ext):  # a plain C library loaded with ctypes: no PyInit_ symbol
        return []

    def get_ext_filename(self, fullname):
        # a versioned library name, not a Python module's (tools that import every module of edgeamp
        # must not try it); edge_runtime/native.py finds it beside itself
        return os.path.join(*fullname.split(".")[:-1], LIBRARY)


LIBRARY = "libedgeamp_native.so.1"


setup(
    ext_modules=[Extension("edgeamp.edge_runtime._native", ["edge_runtime/native/kernel.cpp"], language="c++",
                           optional=True)],
    cmdclass={"build_ext": BuildNative},
)
