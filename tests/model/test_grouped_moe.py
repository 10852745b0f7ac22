"""The MoE experts' training path (issue 20): grouped GEMMs forward and backward against the reference dispatch,
under the op contract's tolerance rule (qwen3mini/ops/tolerance.py) for the output and every gradient. On the
CPU the grouped GEMM is its per-group stand-in; on a GPU with ``torch._grouped_mm`` the real kernel."""
import dataclasses

import pytest
import torch

from qwen3mini import ops
from qwen3mini.config import PRESETS
from qwen3mini.model import Qwen3ForCausalLM
from qwen3mini.ops import grouped_moe
from qwen3mini.ops.reference import ReferenceBackend
from qwen3mini.ops.tolerance import assert_within_tolerance

REFERENCE = ReferenceBackend()
GPU = torch.device("cuda") if torch.cuda.is_available() else None
needs_grouped_gpu = pytest.mark.skipif(GPU is None or not grouped_moe.grouped_mm_available(GPU),
                                       reason="needs a GPU with torch._grouped_mm (sm90+)")


def moe_inputs(tokens, experts, top_k, hidden, inter, seed=0, skip_expert=True):
    """x, ids, weights, w_gate_up, w_down in float64 (the exact problem); expert 0 unused when ``skip_expert``,
    its weights NaN (the contract: experts no token chose are never touched)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(tokens, experts, generator=g, dtype=torch.float64)
    if skip_expert:
        logits[:, 0] = -1e9
    weights, ids = torch.softmax(logits, -1).topk(top_k, -1)
    w_gate_up = torch.randn(experts, 2 * inter, hidden, generator=g, dtype=torch.float64) / hidden ** 0.5
    w_down = torch.randn(experts, hidden, inter, generator=g, dtype=torch.float64) / inter ** 0.5
    if skip_expert:
        w_gate_up[0], w_down[0] = float("nan"), float("nan")
    return (torch.randn(tokens, hidden, generator=g, dtype=torch.float64), ids, weights / weights.sum(-1, keepdim=True),
            w_gate_up, w_down)


def output_and_grads(function, inputs, dtype, device):
    """The output and the gradients of x, the weights of the experts and the routing weights under a fixed
    upstream gradient."""
    x, ids, weights, w_gate_up, w_down = inputs
    leaves = [t.detach().to(device, dtype).clone().requires_grad_() for t in (x, weights, w_gate_up, w_down)]
    out = function(leaves[0], ids.to(device), leaves[1], leaves[2], leaves[3])
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out.backward(upstream.to(device, dtype))
    return [out] + [t.grad for t in leaves]


def check_against_reference(inputs, dtype, device):
    check_against_reference_with(grouped_moe.moe_experts, inputs, dtype, device)


def check_against_reference_with(function, inputs, dtype, device):
    names = ("output", "grad x", "grad routing weights", "grad w_gate_up", "grad w_down")
    exact = output_and_grads(REFERENCE.moe_experts, inputs, torch.float64, "cpu")
    rounded = output_and_grads(REFERENCE.moe_experts, inputs, dtype, device)
    got = output_and_grads(function, inputs, dtype, device)
    for name, g, e, r in zip(names, got, exact, rounded):
        assert_within_tolerance(g, e, r, f"grouped MoE {name} ({dtype})")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("tokens", [1, 37])
def test_grouped_path_on_the_cpu(dtype, tokens):
    """The sort, the padded groups, the weighting and the scatter back, with per-group products."""
    check_against_reference(moe_inputs(tokens, experts=8, top_k=2, hidden=32, inter=16), dtype, "cpu")


@pytest.mark.skipif(not hasattr(torch, "_grouped_mm"), reason="this torch has no torch._grouped_mm")
def test_grouped_path_compiles_into_one_graph(monkeypatch):
    """Nothing in the path waits on the host: Dynamo sees one graph, without the break that a value read back
    from the device (an .item(), a shape that depends on the data) makes, and the compiled path (the CPU's
    ``torch._grouped_mm`` standing in for the GPU's) agrees with the reference in forward and backward."""
    monkeypatch.setattr(grouped_moe, "grouped_mm_available", lambda device: True)
    monkeypatch.setattr(torch._dynamo.config, "capture_scalar_outputs", False)
    monkeypatch.setattr(torch._dynamo.config, "capture_dynamic_output_shape_ops", False)
    torch._dynamo.reset()
    inputs = moe_inputs(37, experts=8, top_k=2, hidden=32, inter=16)
    x, ids, weights, w_gate_up, w_down = (t if t.dtype == torch.int64 else t.to(torch.bfloat16) for t in inputs)
    explained = torch._dynamo.explain(grouped_moe.moe_experts)(x, ids, weights, w_gate_up, w_down)
    assert explained.graph_break_count == 0, [str(b.reason) for b in explained.break_reasons]
    compiled = torch.compile(grouped_moe.moe_experts, fullgraph=True, backend="aot_eager")
    check_against_reference_with(compiled, inputs, torch.bfloat16, "cpu")


def test_grouped_path_serves_bf16_only(monkeypatch):
    """The grouped GEMM takes bf16 operands: float32 keeps the reference dispatch wherever the kernel exists."""
    monkeypatch.setattr(grouped_moe, "grouped_mm_available", lambda device: True)
    assert grouped_moe.serves(torch.zeros(2, 4, dtype=torch.bfloat16))
    assert not grouped_moe.serves(torch.zeros(2, 4))


def test_cpu_training_keeps_the_reference_dispatch(monkeypatch):
    """Without a grouped kernel the model trains through the reference op, as before."""
    calls = []
    monkeypatch.setattr(grouped_moe, "moe_experts", lambda *a: calls.append(a))
    model = Qwen3ForCausalLM(PRESETS["tiny-moe"])
    model(torch.randint(0, 512, (2, 8))).sum().backward()
    assert calls == [] and model.model.layers[0].mlp.experts.down_proj.grad is not None


@pytest.mark.gpu
@needs_grouped_gpu
@pytest.mark.parametrize("tokens", [5, 300])
def test_grouped_gemm_on_the_gpu(tokens):
    check_against_reference(moe_inputs(tokens, experts=8, top_k=2, hidden=160, inter=256), torch.bfloat16, GPU)


@pytest.mark.gpu
@needs_grouped_gpu
def test_gpu_training_step_takes_the_grouped_path(monkeypatch):
    """The student MoE's training forward and backward under bf16 autocast: the grouped path runs, and its
    loss and gradients stay beside the reference dispatch's (forced) ones."""
    check_training_step(monkeypatch, GPU)


def test_training_step_on_the_cpu(monkeypatch):
    """The same under the CPU's bf16 autocast, the grouped GEMM's per-group stand-in serving. The path rounds where
    the reference does: bf16 routing weights times bf16 outputs is a bf16 product, and a token's copies sum their
    gradients in the activations' fp32 (a version that weighted in fp32 left the gradients beyond this bound)."""
    monkeypatch.setattr(grouped_moe, "serves", lambda x: grouped_moe.computes_in(x) == torch.bfloat16)
    check_training_step(monkeypatch, torch.device("cpu"))


def check_training_step(monkeypatch, device):
    calls, grouped_experts = [], grouped_moe.moe_experts
    monkeypatch.setattr(grouped_moe, "moe_experts", lambda *a: calls.append(1) or grouped_experts(*a))
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(dataclasses.replace(PRESETS["student-moe"], num_hidden_layers=2)).to(device)
    tokens = torch.randint(0, model.config.vocab_size, (4, 128), device=device)
    grouped = loss_and_grads(model, tokens)
    assert len(calls) == 2                                  # one per MoE layer
    with ops.backend("reference"):
        assert_beside(grouped, loss_and_grads(model, tokens))


@pytest.mark.gpu
@needs_grouped_gpu
def test_compiled_grouped_path_on_the_gpu():
    """The grouped path as the compiled MoE student runs it (Inductor, one graph) against the reference, forward
    and backward. (A whole compiled model is not compared gradient for gradient with an eager one: the router's
    bf16 logits tie exactly at the top-k boundary for a few tokens in a thousand of a fresh model's, and the
    compiled top-k breaks those ties its own way, so whole tokens move to other experts.)"""
    torch._dynamo.reset()
    compiled = torch.compile(grouped_moe.moe_experts, fullgraph=True)
    check_against_reference_with(compiled, moe_inputs(300, experts=8, top_k=2, hidden=160, inter=256), torch.bfloat16,
                                 GPU)


@pytest.mark.gpu
@needs_grouped_gpu
def test_float32_training_keeps_the_reference_dispatch(monkeypatch):
    """The grouped GEMM takes bf16 operands only: a float32 step on the GPU trains through the reference op."""
    calls = []
    monkeypatch.setattr(grouped_moe, "moe_experts", lambda *a: calls.append(a))
    model = Qwen3ForCausalLM(dataclasses.replace(PRESETS["student-moe"], num_hidden_layers=1)).to(GPU)
    model(torch.randint(0, model.config.vocab_size, (2, 16), device=GPU)).sum().backward()
    assert calls == [] and model.model.layers[0].mlp.experts.down_proj.grad is not None


def loss_and_grads(model, tokens):
    """The next-token loss and every parameter's gradient of one bf16-autocast step."""
    model.zero_grad()
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(tokens[:, :-1]).float().flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    return loss.item(), {n: p.grad.float().clone() for n, p in model.named_parameters()}


def assert_beside(got, expected):
    """Loss within 1%, each gradient within 5% of its largest entry (bf16 products, routing near ties)."""
    assert got[0] == pytest.approx(expected[0], rel=1e-2)
    for name, grad in expected[1].items():
        scale = grad.abs().max().item()
        assert (got[1][name] - grad).abs().max().item() <= 0.05 * scale + 1e-6, name
