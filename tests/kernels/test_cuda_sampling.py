"""The one-kernel sampler (ops.cuda.GumbelSampler, csrc/cuda/sampling.cu) against the distribution it must draw
from, softmax(logits / T), which the PyTorch path of qwen3mini/sampling.py (the reference) samples.

Draws are checked with Pearson's chi-square test: the token counts of n draws against n times the probabilities
(tokens expected fewer than 5 times pooled into one cell, the usual condition for the test), its p-value from
the chi-square distribution (torch.special.gammaincc). A correct sampler fails a check with probability
FALSE_ALARM, whatever n; a wrong one fails once its error is large beside the counts' own spread, which shrinks
as 1/sqrt(n). The same check runs on the reference, on the CPU too, which shows that the check itself is sound.
GPU parts are skipped without a GPU.

Run on a GPU machine:  pytest tests/kernels/test_cuda_sampling.py
"""

import pytest
import torch

from qwen3mini.sampling import Sampler, SamplingParams

from kernel_checks import built_cuda_module

FALSE_ALARM = 1e-6
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
gpu = [pytest.mark.gpu, needs_cuda]


@pytest.fixture(scope="module")
def cuda_ops():
    return built_cuda_module()


def assert_draws_follow(tokens, probs, what):
    """Pearson's chi-square test of the drawn ``tokens`` (any shape) against ``probs`` [V] (float64); tokens of
    probability 0 must never be drawn."""
    counts = torch.bincount(tokens.flatten().cpu(), minlength=probs.numel()).double()
    assert counts.numel() == probs.numel(), f"{what}: token ids beyond the vocabulary"
    probs = probs.cpu()
    possible = probs > 0
    assert counts[~possible].sum() == 0, f"{what}: drew tokens of probability 0"
    counts, expected = counts[possible], probs[possible] * counts.sum()
    rare = expected < 5
    if rare.any():
        counts = torch.cat([counts[~rare], counts[rare].sum()[None]])
        expected = torch.cat([expected[~rare], expected[rare].sum()[None]])
    statistic = ((counts - expected) ** 2 / expected).sum()
    dof = torch.tensor(counts.numel() - 1.0, dtype=torch.float64)
    p_value = torch.special.gammaincc(dof / 2, statistic / 2).item()
    assert p_value > FALSE_ALARM, (f"{what}: chi-square {statistic.item():.1f} on {int(dof)} degrees of freedom "
                                   f"(p = {p_value:.1e}, smallest expected count {expected.min().item():.0f})")


# (vocab, logit scale): the vocabularies are not multiples of the kernel's groups of 4 elements
SHAPES = [(5, 2.0), (37, 1.5), (1003, 0.5)]
KINDS = [pytest.param("cpu", "reference", id="cpu-reference"),
         pytest.param("cuda", "reference", id="cuda-reference", marks=gpu),
         pytest.param("cuda", "fused", id="cuda-fused", marks=gpu)]


@pytest.mark.parametrize("device,kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
@pytest.mark.parametrize("vocab,scale", SHAPES)
def test_draws_follow_the_softmax(request, monkeypatch, device, kind, dtype, temperature, vocab, scale):
    """4 distributions, each on a quarter of 4,096 rows (interleaved), 16 calls: 16,384 draws of each. The
    logits are a strided view (rows of a wider buffer), as logits sliced out of a larger output would be."""
    if kind == "fused":
        request.getfixturevalue("cuda_ops")
    else:
        monkeypatch.setenv("QWEN3MINI_FUSED_SAMPLER", "0")       # the switch for A/B comparisons
    g = torch.Generator().manual_seed(vocab)
    table = torch.randn(4, vocab, generator=g, dtype=torch.float64) * scale
    rows, calls = 4096, 16
    wide = torch.zeros(rows, vocab + 3, dtype=dtype)
    wide[:, :vocab] = table.repeat(rows // 4, 1).to(dtype)
    logits = wide.to(device)[:, :vocab]
    draw = Sampler(SamplingParams(temperature=temperature, seed=0), rows, vocab, device)
    assert (draw.fused is not None) == (kind == "fused")
    tokens = torch.stack([draw.pick(logits) for _ in range(calls)], dim=1)     # [rows, calls]
    assert tokens.dtype == torch.long and tokens.device.type == device
    probs = torch.softmax(table.to(dtype).double() / temperature, dim=-1)
    for which in range(4):
        assert_draws_follow(tokens[which::4], probs[which], f"{kind} on {device}, {dtype}, T={temperature}, "
                                                            f"V={vocab}, distribution {which}")


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_vocabulary_with_few_finite_logits(cuda_ops, dtype):
    """Qwen3's 151,936 ids, all -inf but five (the first, the last ones, one in the middle): the chi-square test
    on those five; and rows that are -inf everywhere but one place, anywhere, always draw that place."""
    vocab, rows = 151_936, 2048
    finite = torch.tensor([0, 7, 70_001, 151_934, 151_935])
    values = torch.tensor([0.0, 1.0, 2.0, 0.5, -1.0], dtype=torch.float64)
    logits = torch.full((rows, vocab), float("-inf"), dtype=dtype, device="cuda")
    logits[:, finite.cuda()] = values.to(dtype).cuda()
    draw = cuda_ops.GumbelSampler(1.0, 3, "cuda")
    tokens = torch.stack([draw(logits) for _ in range(32)])
    probs = torch.zeros(vocab, dtype=torch.float64)
    probs[finite] = torch.softmax(values.to(dtype).double(), dim=0)
    assert_draws_follow(tokens, probs, f"five finite logits of {vocab}, {dtype}")

    only = torch.randint(0, vocab, (rows,), device="cuda")
    only[:2] = torch.tensor([0, vocab - 1])
    logits.fill_(float("-inf"))
    logits[torch.arange(rows, device="cuda"), only] = torch.randn(rows, device="cuda").to(dtype)
    for _ in range(3):
        assert torch.equal(draw(logits), only)


@pytest.mark.gpu
@needs_cuda
def test_same_seed_same_draws(cuda_ops):
    """A seed fixes the draws (through the Sampler, which uses the kernel here); successive calls, other seeds
    and other rows draw differently; seed None follows torch.manual_seed."""
    rows, vocab = 512, 1000
    logits = torch.randn(rows, vocab, device="cuda").to(torch.bfloat16)
    same = logits[:1].expand(rows, vocab)

    def draws(seed, calls=3, x=logits):
        made = Sampler(SamplingParams(temperature=1.0, seed=seed), rows, vocab, "cuda")
        assert made.fused is not None
        return [made.pick(x) for _ in range(calls)]

    first, again, other = draws(11), draws(11), draws(12)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1]) and not torch.equal(first[0], other[0])
    rows_alike = draws(11, calls=1, x=same)[0]
    assert len(set(rows_alike.tolist())) > 50, "rows with equal logits must draw independently"
    torch.manual_seed(5)
    unseeded = draws(None)
    torch.manual_seed(5)
    assert all(torch.equal(a, b) for a, b in zip(unseeded, draws(None)))
    assert not torch.equal(unseeded[0], first[0])


@pytest.mark.gpu
@needs_cuda
def test_graph_replays_draw_fresh_noise(cuda_ops):
    """Captured in a CUDA graph, each replay draws anew (the kernel advances its own state on the device) and
    replays draw what eager calls with the same seed draw; the draws follow the softmax."""
    rows, vocab, replays = 1024, 64, 48
    logits = torch.linspace(-2, 2, vocab, device="cuda").repeat(rows, 1)
    captured, eager = cuda_ops.GumbelSampler(1.0, 9, "cuda"), cuda_ops.GumbelSampler(1.0, 9, "cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        warm = captured(logits)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static = captured(logits)
    out = []
    for _ in range(replays):
        graph.replay()
        out.append(static.clone())
    assert captured.rng[1].item() == replays + 1                  # the warm-up call and every replay
    assert torch.equal(warm, eager(logits))
    for step, tokens in enumerate(out):
        assert torch.equal(tokens, eager(logits)), f"replay {step} differs from the eager call"
    assert all(not torch.equal(a, b) for a, b in zip(out, out[1:]))
    assert_draws_follow(torch.stack(out), torch.softmax(logits[0].double().cpu(), dim=0), "graph replays")


@pytest.mark.gpu
@needs_cuda
def test_sampler_uses_the_kernel_only_where_it_applies(cuda_ops):
    """Filters and penalties keep the PyTorch path; so does greedy, and a forced reference backend at call time."""
    from qwen3mini import ops

    def fused(**settings):
        return Sampler(SamplingParams(**settings), 4, 100, "cuda").fused is not None

    assert fused(temperature=1.0) and fused(temperature=0.7, seed=1)
    assert not any([fused(temperature=0.0), fused(temperature=1.0, top_k=20), fused(temperature=1.0, top_p=0.9),
                    fused(temperature=1.0, min_p=0.1), fused(temperature=1.0, presence_penalty=1.0)])
    made = Sampler(SamplingParams(temperature=1.0, seed=0), 4, 100, "cuda")
    with ops.backend("reference"):
        made.pick(torch.randn(4, 100, device="cuda"))
    assert made.fused.rng[1].item() == 0


def test_sampler_on_the_cpu_keeps_the_pytorch_path():
    assert Sampler(SamplingParams(temperature=1.0), 4, 100, "cpu").fused is None


@pytest.mark.gpu
@needs_cuda
def test_sampled_generation_is_reproducible(cuda_ops):
    """generate_completions at T=1 with no filter (the RL rollout setting, the kernel's case): a seed gives the
    same completions through graph replays and eager steps, another seed others."""
    from qwen3mini.generation import generate_completions
    from test_cuda_graphs import small_model
    model = small_model("small")
    prompts = [[5, 6, 7, 8, 9], [1, 2], [3] * 40]

    def run(seed, graphs=True):
        done = generate_completions(model, prompts, 24, SamplingParams(temperature=1.0, seed=seed), [],
                                    cuda_graphs=graphs)
        return [c.tokens for c in done]

    assert run(1) == run(1) == run(1, graphs=False)
    assert run(1) != run(2)
