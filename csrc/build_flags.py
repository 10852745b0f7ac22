"""What the compiled extensions are built from and with, written once: ``setup.py`` (pip install) and
``csrc/cuda/build_jit.py`` (an in-place CUDA build) both read it."""
import os

HERE = os.path.dirname(os.path.abspath(__file__))

BPE_CXX = ["-O3"]
CPU_CXX = ["-O3", "-fopenmp", "-std=c++17", "-Wno-psabi"]   # (-Wno-psabi: GCC's note on 32-byte vector ABI)
CPU_LINK = ["-fopenmp"]
CUDA_CXX = ["-O3", "-std=c++17"]
CUDA_NVCC = ["-O3", "-std=c++17", "--use_fast_math", "-lineinfo", "--expt-relaxed-constexpr"]
CUDA_ARCHS = "8.0;9.0"                                       # TORCH_CUDA_ARCH_LIST unless the environment sets it


def sources(folder: str, extensions=(".cpp",)) -> list:
    """The source files of ``csrc/<folder>`` with these extensions, sorted, as paths relative to the repository."""
    path = os.path.join(HERE, folder)
    return sorted(os.path.relpath(os.path.join(path, f), os.path.dirname(HERE)) for f in os.listdir(path)
                  if f.endswith(extensions))
