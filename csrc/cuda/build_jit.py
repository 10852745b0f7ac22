"""Build qwen3mini._cuda in place with torch's JIT loader (faster to iterate than ``pip install -e .``).

    TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 python csrc/cuda/build_jit.py     # writes qwen3mini/_cuda.so

The sources and flags of the setup.py entry (csrc/build_flags.py), plus the compiler's register/spill report
(-Xptxas -v).
"""
import os
import shutil
import sys

from torch.utils.cpp_extension import load

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, root)
from csrc import build_flags  # noqa: E402

os.environ.setdefault("TORCH_CUDA_ARCH_LIST", build_flags.CUDA_ARCHS)
build_dir = os.environ.get("QWEN3MINI_BUILD_DIR", "/tmp/qwen3mini_cuda_build")
os.makedirs(build_dir, exist_ok=True)
sources = [os.path.join(root, path) for path in build_flags.sources("cuda", (".cu", ".cpp"))]
module = load("_cuda", sources, build_directory=build_dir, extra_cflags=build_flags.CUDA_CXX,
              extra_cuda_cflags=build_flags.CUDA_NVCC + ["-Xptxas=-v"], verbose=True)
target = os.path.join(root, "qwen3mini", "_cuda.so")
shutil.copy(module.__file__, target)
print("built", os.path.abspath(target))
