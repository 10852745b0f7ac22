"""Conformance suite of the op contract: every test runs once per backend under test.

    pytest tests/kernels                       # every registered backend (reference, cpp, cuda, ...)
    pytest tests/kernels --backend cpp         # one backend: the porter's checklist
    QWEN3MINI_KERNEL_EXAMPLES=500 pytest tests/kernels   # hypothesis examples per test (default 40)
    QWEN3MINI_CPU_ISA=baseline pytest tests/kernels      # the C++ kernels of one instruction set only

The C++ backend runs once per instruction set this CPU executes (``cpp-avx2``, ``cpp-baseline``, ...:
``qwen3mini._C.isas()``), or only on the one ``QWEN3MINI_CPU_ISA`` forces.

With QWEN3MINI_REQUIRE_EXT=1 (CI) a compiled backend that is missing fails the run instead of being skipped.
"""
import os

import pytest
import torch

from qwen3mini import ops

from kernel_checks import COMPILED, backend_device


def pytest_addoption(parser):
    parser.addoption("--backend", action="append", default=None,
                     help="op backend to run the kernel conformance suite for (repeatable; default: all registered)")


def _requested(config):
    try:
        return config.getoption("--backend")
    except ValueError:                                  # option not registered: conftest not loaded at startup
        return None


def _must_exist(name) -> bool:
    """CI (QWEN3MINI_REQUIRE_EXT=1) wants the compiled backends of this machine: their tests then fail, not skip."""
    if os.environ.get("QWEN3MINI_REQUIRE_EXT") != "1" or name not in COMPILED:
        return False
    return COMPILED[name] == "cpu" or torch.cuda.is_available()


def pytest_generate_tests(metafunc):
    if "backend" not in metafunc.fixturenames:
        return
    names = _requested(metafunc.config) or ops.available_backends() + [
        name for name in COMPILED if _must_exist(name) and name not in ops.available_backends()]
    params = []
    for name in names:
        marks = []
        if name not in ops.available_backends() and not _must_exist(name):
            marks.append(pytest.mark.skip(reason=f"op backend {name!r} is not available "
                                                 f"(registered: {ops.available_backends()})"))
        if backend_device(name) == "cuda":
            marks.append(pytest.mark.gpu)
        for isa in _cpu_isas() if name == "cpp" and name in ops.available_backends() else [None]:
            params.append(pytest.param(name, isa, id=name if isa is None else f"{name}-{isa}", marks=marks))
    metafunc.parametrize(("backend", "cpu_isa"), params, indirect=["cpu_isa"])


def _cpu_isas():
    """The instruction sets to test the C++ kernels on: the forced one, else every one this CPU executes."""
    from qwen3mini import _C
    forced = os.environ.get("QWEN3MINI_CPU_ISA")
    return [forced] if forced else _C.isas()


@pytest.fixture
def cpu_isa(request):
    """Runs the test on the C++ kernels of the instruction set it was parametrised with (none: unchanged)."""
    isa = getattr(request, "param", None)
    if isa is None:
        yield None
        return
    from qwen3mini import _C
    previous = _C.isa()
    _C.set_isa(isa)
    try:
        yield isa
    finally:
        _C.set_isa(previous)


@pytest.fixture(autouse=True)
def _backend_must_be_built(request, cpu_isa):
    """A backend CI requires but that is not built fails here, once, before hypothesis starts."""
    name = getattr(request.node, "callspec", None) and request.node.callspec.params.get("backend")
    if name and name not in ops.available_backends():
        pytest.fail(f"op backend {name!r} is required (QWEN3MINI_REQUIRE_EXT=1) but not built: "
                    f"pip install --no-build-isolation -e .", pytrace=False)
