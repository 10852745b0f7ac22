"""Backend selection by ``QWEN3MINI_BACKEND``, in fresh processes (the variable is read at import)."""
import os
import subprocess
import sys

import pytest

LATE_BACKEND = """
import torch
from qwen3mini import ops
{before}
class Mine(ops.get_backend("reference").__class__):
    pass
ops.register_backend("mine", Mine(), ["cpu"])
with torch.no_grad():
    print(ops.backend_name(torch.ones(1)))
"""

TOO_EARLY = """
try:
    ops.rms_norm(torch.ones(4), torch.ones(4), 1e-6)
except ValueError as error:
    print(error)
"""


def run(code, backend):
    env = {**os.environ, "QWEN3MINI_BACKEND": backend}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


def test_a_backend_registered_after_import_can_be_forced():
    assert run(LATE_BACKEND.format(before=""), "mine") == ["mine"]


def test_ops_before_the_named_backend_registers_are_an_error_naming_it():
    lines = run(LATE_BACKEND.format(before=TOO_EARLY), "mine")
    assert lines[0].startswith("QWEN3MINI_BACKEND=mine names no registered op backend")
    assert lines[1] == "mine"


def test_a_builtin_backend_is_forced_at_import():
    assert run(LATE_BACKEND.format(before="print(ops.backend_name(torch.ones(1)))"), "reference")[0] == "reference"


ISA_IN_USE = """
import torch
from qwen3mini import ops, _C
print(_C.isa())
"""


def run_with_isa(isa):
    env = {**os.environ, "QWEN3MINI_CPU_ISA": isa}
    return subprocess.run([sys.executable, "-c", ISA_IN_USE], capture_output=True, text=True, env=env, timeout=120)


def test_the_cpu_isa_variable_forces_the_kernels_of_one_instruction_set():
    """QWEN3MINI_CPU_ISA=baseline runs the portable kernels on any CPU; a name this CPU cannot run is an error
    that names the variable and what the CPU runs."""
    pytest.importorskip("qwen3mini._C", reason="the cpp backend (qwen3mini._C) is not built")
    forced = run_with_isa("baseline")
    assert forced.returncode == 0 and forced.stdout.split() == ["baseline"], forced.stderr
    wrong = run_with_isa("avx9")
    assert wrong.returncode != 0
    assert "QWEN3MINI_CPU_ISA=avx9: this CPU runs the kernels of" in wrong.stderr.splitlines()[-1]
