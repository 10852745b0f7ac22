"""Build and install qwen3mini.

    pip install torch==2.13.0                      # CPU build; pick your CUDA build on GPU machines
    pip install --no-build-isolation -e ".[test]"  # builds the C++ (and, with nvcc, CUDA) extensions

The extensions are optional: if one fails to build, pip says so and the package falls back to the plain
PyTorch reference ops (``qwen3mini.ops`` prints a one-line notice). The tokenizer folder ``tokenizer/`` is
installed as ``qwen3mini.tokenizer`` so that it cannot collide with the unrelated PyPI package ``tokenizer``.
The compiler flags are in ``csrc/build_flags.py`` (shared with ``csrc/cuda/build_jit.py``).
"""
import os
import sys

from setuptools import find_packages, setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))    # (pip's build backend does not add it)
from csrc import build_flags  # noqa: E402

ext_modules, cmdclass = [], {}

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension, CUDA_HOME
except ImportError:  # no torch at build time: pure-Python install, reference backend only
    torch = None

if torch is not None and os.environ.get("QWEN3MINI_NO_EXT") != "1":
    from pybind11.setup_helpers import Pybind11Extension

    # Byte-pair merge loop of the tokenizer: plain C++ with pybind11, no torch.
    bpe = Pybind11Extension("qwen3mini._bpe", build_flags.sources("bpe"), cxx_std=17,
                            extra_compile_args=build_flags.BPE_CXX)
    bpe._optional = True
    ext_modules.append(bpe)

    # CPU kernels of the op contract (csrc/README.md).
    cpu_sources = build_flags.sources("cpu")
    if cpu_sources:
        cpu = CppExtension("qwen3mini._C", cpu_sources, extra_compile_args=build_flags.CPU_CXX,
                           extra_link_args=build_flags.CPU_LINK)
        cpu._optional = True
        ext_modules.append(cpu)

    # CUDA kernels: only where a CUDA build of torch and nvcc are present.
    cuda_sources = build_flags.sources("cuda", (".cu", ".cpp"))
    if cuda_sources and torch.version.cuda and CUDA_HOME and os.environ.get("QWEN3MINI_NO_CUDA") != "1":
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", build_flags.CUDA_ARCHS)
        cuda = CUDAExtension("qwen3mini._cuda", cuda_sources,
                             extra_compile_args={"cxx": build_flags.CUDA_CXX, "nvcc": build_flags.CUDA_NVCC})
        cuda._optional = True
        ext_modules.append(cuda)
    cmdclass = {"build_ext": BuildExtension.with_options(use_ninja=True)}

setup(
    name="qwen3mini",
    version="0.1.0",
    description="A minimal, readable, C++/CUDA-accelerated implementation of Qwen3",
    python_requires=">=3.10",
    # every package under qwen3mini/, and tokenizer/ (with any subpackage) as qwen3mini.tokenizer
    packages=find_packages(include=["qwen3mini", "qwen3mini.*"])
    + ["qwen3mini." + name for name in find_packages(include=["tokenizer", "tokenizer.*"])],
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
