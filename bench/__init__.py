"""LLMConfig-Bench: configure expensive LLM experiments from cheap ones, on real outcomes."""

import os
import platform

__version__ = "0.1.0"

# The same numbers on every x86-64 machine with AVX2. NumPy, OpenBLAS, MKL and PyTorch pick their
# kernels by CPU (AVX-512 builds of exp, log and pow, BLAS kernels that sum in another order), and a
# difference in the last bit changes, through argmaxes, whole episodes, simulated tables (grpo) and
# trained checkpoints. So they are held to their AVX2 kernels, before any of them loads (in a worker
# or training process, `bench` is imported first); a value the user has set is kept.
SAME_KERNELS = {
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",  # NumPy's dispatch targets above AVX2
    "OPENBLAS_CORETYPE": "Haswell",  # NumPy's and SciPy's OpenBLAS: the AVX2 kernels
    # PyTorch's MKL: conditional numerical reproducibility on its AVX2 code path. Without it, MKL's
    # results depend on memory alignment: FSBO trained on data_mixture gave two different
    # checkpoints in two processes of one machine at one commit.
    "MKL_CBWR": "AVX2",
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's vectorised kernels
}


def _has_avx2() -> bool:
    """The first processor's flags (one machine's cores share them): a many-core machine's
    /proc/cpuinfo is not read whole by every process that imports bench."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return "avx2" in flags.split()


# Whether this machine's kernels are held: Linux on x86-64 with AVX2.
HOLDS_KERNELS = platform.system() == "Linux" and platform.machine() == "x86_64" and _has_avx2()
if HOLDS_KERNELS:
    for _name, _value in SAME_KERNELS.items():
        os.environ.setdefault(_name, _value)
