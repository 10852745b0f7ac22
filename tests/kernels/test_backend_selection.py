"""Backend selection by ``QWEN3MINI_BACKEND``, in fresh processes (the variable is read at import)."""
import os
import subprocess
import sys

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
