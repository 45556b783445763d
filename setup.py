"""Build of fastrnn's compiled engine: fastrnn/_engine.pyx plus the C kernels in src_c/.

- OpenMP is used when the compiler accepts it; otherwise the engine builds
  serial, with a warning, and `fastrnn.openmp_enabled()` returns False.
  FASTRNN_NO_OPENMP=1 forces the serial build.
- SIMD is chosen at run time (AVX-512 / AVX2+FMA / portable C): each ISA's
  kernels are compiled into the same extension with their own target, so the
  build runs on any x86-64 (or ARM, where only the portable kernels are built).
- FASTRNN_NATIVE=1 adds -march=native for a local build tuned to this machine.
- FASTRNN_SANITIZE=1 builds with AddressSanitizer and UndefinedBehaviorSanitizer
  (slow; for checking the kernels: see scripts/sanitize.sh).
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

SOURCES = ["fastrnn/_engine.pyx", "src_c/dispatch.c", "src_c/kernels_generic.c",
           "src_c/kernels_avx2.c", "src_c/kernels_avx512.c"]


def _compiler():
    return os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"


def _accepts(flags, link_flags=()):
    """Does the C compiler build and link a small OpenMP program with `flags`?"""
    src = "#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel\n{n=omp_get_num_threads();}\nreturn n<1;}\n"
    cc = _compiler().split()
    with tempfile.TemporaryDirectory() as tmp:
        c_file = os.path.join(tmp, "probe.c")
        with open(c_file, "w") as f:
            f.write(src)
        cmd = cc + list(flags) + [c_file, "-o", os.path.join(tmp, "probe")] + list(link_flags)
        try:
            return subprocess.run(cmd, capture_output=True).returncode == 0
        except OSError:
            return False


def openmp_flags():
    if os.environ.get("FASTRNN_NO_OPENMP"):
        warnings.warn("fastrnn: FASTRNN_NO_OPENMP is set; building without OpenMP (serial kernels)")
        return [], []
    candidates = [(["-fopenmp"], ["-fopenmp"])]
    if sys.platform == "darwin":
        candidates.append((["-Xpreprocessor", "-fopenmp"], ["-lomp"]))
    for cflags, lflags in candidates:
        if _accepts(cflags, lflags):
            return cflags, lflags
    msg = ("fastrnn: the C compiler does not support OpenMP; building the kernels serial "
           "(fastrnn.openmp_enabled() will return False)")
    warnings.warn(msg)
    print("WARNING: " + msg, file=sys.stderr)
    return [], []


def extension():
    omp_c, omp_l = openmp_flags()
    # The kernels use GCC/Clang vector extensions: the compiler must be GCC or Clang
    # (MinGW on Windows). No fast-math flags: NaN and Inf must keep their meaning.
    cflags = ["-O3", "-fno-math-errno", "-std=gnu11", "-Wno-unused-function"]
    cflags += ["-march=native"] if os.environ.get("FASTRNN_NATIVE") else []  # opt-in, local builds only
    lflags = []
    if os.environ.get("FASTRNN_SANITIZE"):
        san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
        cflags = [f for f in cflags if f != "-O3"] + ["-O1", "-g", "-fno-omit-frame-pointer"] + san
        lflags = san
    return Extension(
        "fastrnn._engine",
        sources=SOURCES,
        include_dirs=["src_c", numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=cflags + omp_c,
        extra_link_args=omp_l + lflags,
        depends=[os.path.join("src_c", f) for f in os.listdir("src_c") if f.endswith(".h")],
    )


setup(ext_modules=cythonize([extension()], language_level=3))
