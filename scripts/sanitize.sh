#!/usr/bin/env bash
# Builds fastrnn's engine with AddressSanitizer and UndefinedBehaviorSanitizer in a
# scratch copy of this checkout and runs the kernel tests against it.
#
#   scripts/sanitize.sh [pytest arguments]     (default: the kernel and mask tests)
#
# Needs GCC (or Clang) with libasan/libubsan. Python itself is not instrumented, so
# the sanitizer runtimes are preloaded; leak detection is off (CPython keeps memory
# until exit by design). Any report makes the run fail (halt_on_error).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git -C "$here" ls-files -z | (cd "$here" && xargs -0 cp --parents -t "$work")
cd "$work"
FASTRNN_SANITIZE=1 python setup.py -q build_ext --inplace >/dev/null
cc="${CC:-gcc}"
export LD_PRELOAD="$($cc -print-file-name=libasan.so):$($cc -print-file-name=libubsan.so)"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1:allocator_may_return_null=1"  # huge sizes: MemoryError
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
export PYTHONPATH="$work"
if [ "$#" -eq 0 ]; then
    set -- -q -x tests/test_kernels.py tests/test_masks.py tests/test_packed.py tests/test_gemm.py tests/test_edge_cases.py \
        tests/test_activations.py tests/test_fuzz_functional.py \
        --deselect tests/test_fuzz_functional.py::test_a_crashing_child_is_reported_with_its_case  # ASan owns SIGSEGV
fi
python -c "import fastrnn, sys; print(\"sanitized build:\", fastrnn._engine.__file__)"
python -m pytest -p no:cacheprovider "$@"
