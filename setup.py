"""Build and install qwen3mini.

    pip install torch==2.13.0                      # CPU build; pick your CUDA build on GPU machines
    pip install --no-build-isolation -e ".[test]"  # builds the C++ (and, with nvcc, CUDA) extensions

The extensions are optional: if one fails to build, pip says so and the package falls back to the plain
PyTorch reference ops (``qwen3mini.ops`` prints a one-line notice). The tokenizer folder ``tokenizer/`` is
installed as ``qwen3mini.tokenizer`` so that it cannot collide with the unrelated PyPI package ``tokenizer``.
"""
import os
import sys

from setuptools import setup

ext_modules, cmdclass = [], {}

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension, CUDA_HOME
except ImportError:  # no torch at build time: pure-Python install, reference backend only
    torch = None

if torch is not None and os.environ.get("QWEN3MINI_NO_EXT") != "1":
    from pybind11.setup_helpers import Pybind11Extension

    # Byte-pair merge loop of the tokenizer: plain C++ with pybind11, no torch.
    bpe = Pybind11Extension("qwen3mini._bpe", ["csrc/bpe/bpe.cpp"], cxx_std=17,
                            extra_compile_args=["-O3"])
    bpe._optional = True
    ext_modules.append(bpe)

    # CPU kernels of the op contract (csrc/README.md).
    cpu_sources = sorted(os.path.join("csrc/cpu", f) for f in os.listdir("csrc/cpu") if f.endswith(".cpp"))
    if cpu_sources:
        cpu = CppExtension("qwen3mini._C", cpu_sources,
                           extra_compile_args=["-O3", "-fopenmp", "-std=c++17", "-Wno-psabi"],
                           extra_link_args=["-fopenmp"])
        cpu._optional = True
        ext_modules.append(cpu)

    # CUDA kernels: only where a CUDA build of torch and nvcc are present.
    cuda_sources = sorted(os.path.join("csrc/cuda", f) for f in os.listdir("csrc/cuda")
                          if f.endswith((".cu", ".cpp")))
    if cuda_sources and torch.version.cuda and CUDA_HOME and os.environ.get("QWEN3MINI_NO_CUDA") != "1":
        arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        os.environ["TORCH_CUDA_ARCH_LIST"] = arch
        cuda = CUDAExtension("qwen3mini._cuda", cuda_sources,
                             extra_compile_args={"cxx": ["-O3", "-std=c++17"],
                                                 "nvcc": ["-O3", "-std=c++17", "--use_fast_math",
                                                          "-lineinfo", "--expt-relaxed-constexpr"]})
        cuda._optional = True
        ext_modules.append(cuda)
    cmdclass = {"build_ext": BuildExtension.with_options(use_ninja=True)}

setup(
    name="qwen3mini",
    version="0.1.0",
    description="A minimal, readable, C++/CUDA-accelerated implementation of Qwen3",
    python_requires=">=3.10",
    packages=["qwen3mini", "qwen3mini.ops", "qwen3mini.tokenizer"],
    package_dir={"qwen3mini": "qwen3mini", "qwen3mini.tokenizer": "tokenizer"},
    install_requires=["torch>=2.5", "numpy", "regex", "tqdm", "safetensors"],
    extras_require={
        "test": ["pytest", "hypothesis", "transformers>=4.51", "tokenizers", "tiktoken", "pybind11", "ninja",
                 "jinja2", "matplotlib"],
        "train": ["matplotlib"],
        "hub": ["huggingface_hub"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
