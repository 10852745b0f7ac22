"""Build qwen3mini._cuda in place with torch's JIT loader (faster to iterate than ``pip install -e .``).

    TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 python csrc/cuda/build_jit.py     # writes qwen3mini/_cuda.so

Same sources and flags as the setup.py entry; prints the compiler's register/spill report (-Xptxas -v).
"""
import glob
import os
import shutil

from torch.utils.cpp_extension import load

here = os.path.dirname(os.path.abspath(__file__))
sources = sorted(glob.glob(os.path.join(here, "*.cu")) + glob.glob(os.path.join(here, "*.cpp")))
build_dir = os.environ.get("QWEN3MINI_BUILD_DIR", "/tmp/qwen3mini_cuda_build")
os.makedirs(build_dir, exist_ok=True)
module = load("_cuda", sources, build_directory=build_dir,
              extra_cflags=["-O3"],
              extra_cuda_cflags=["-O3", "--use_fast_math", "-lineinfo", "--expt-relaxed-constexpr", "-Xptxas=-v"],
              verbose=True)
target = os.path.join(here, "..", "..", "qwen3mini", "_cuda.so")
shutil.copy(module.__file__, target)
print("built", os.path.abspath(target))
