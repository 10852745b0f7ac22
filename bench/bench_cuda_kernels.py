"""Benchmarks of the CUDA kernels (csrc/cuda) against their peers and the device's physical limits.

    python bench/bench_cuda_kernels.py [--quick]   # on a CUDA machine with qwen3mini._cuda built

Measures, in one run: the two ceilings (device-to-device copy bandwidth, counting bytes read + written; bf16
matmul TFLOP/s), prefill attention vs torch SDPA (flash and cuDNN backends, same shapes), decode attention
bytes/s vs the copy, and the MoE block at the Qwen3-30B-A3B shape vs transformers' Qwen3MoeSparseMoeBlock
(eager loop) and its torch._grouped_mm path. Times are medians of CUDA-event-timed repeats
(triton.testing.do_bench) after warm-up; inputs are random, never zeros. Prints a table; see bench/RESULTS.md.
"""
import argparse
import json
import math

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from bench_cuda_profile import kernel_breakdown
from qwen3mini.ops import cuda as cuda_ops
from qwen3mini.ops.reference import ReferenceBackend

REF = ReferenceBackend()
ROWS = []


def timed(fn, reps_ms=200):
    return do_bench(fn, warmup=50, rep=reps_ms, return_mode="median") * 1e-3  # seconds


def graph_time(fns):
    """Seconds per call of ``fns`` captured back to back in one CUDA graph (no launch gaps; inputs rotate
    through several sets so that repeated replays do not just re-read the L2 cache)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for fn in fns:
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for fn in fns:
            fn()
    return timed(graph.replay) / len(fns)


def record(area, case, seconds, metric, value, peer=None, peer_value=None, limit=None, note=""):
    row = dict(area=area, case=case, ms=seconds * 1e3, metric=metric, value=value, peer=peer,
               peer_value=peer_value, ratio=(value / peer_value) if peer_value else None, limit=limit, note=note)
    ROWS.append(row)
    ratio = f"{row['ratio']:.2f}x" if row["ratio"] else ""
    print(f"{area:8s} {case:44s} {seconds*1e3:9.3f} ms  {value:9.1f} {metric:8s} "
          f"{(peer or ''):22s} {peer_value or 0:9.1f}  {ratio:7s} {note}", flush=True)


# ------------------------------------------------------------------------------------------------ ceilings
def ceilings():
    src = torch.randn(512 * 2**20 // 4, device="cuda")  # 512 MiB
    dst = torch.empty_like(src)
    t = timed(lambda: dst.copy_(src))
    copy_bw = 2 * src.numel() * 4 / t
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    t_mm = timed(lambda: a @ b)
    mm = 2 * 8192**3 / t_mm
    record("ceiling", "d2d copy 512 MiB (read+write)", t, "GB/s", copy_bw / 1e9)
    record("ceiling", "bf16 matmul 8192^3", t_mm, "TFLOP/s", mm / 1e12)
    return copy_bw, mm


# ------------------------------------------------------------------------------------------------- prefill
def sdpa_time(q, k, v, backend):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    chosen = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}[backend]
    try:
        with sdpa_kernel([chosen]):
            F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True))
    except RuntimeError as error:
        print(f"  sdpa {backend} unavailable: {str(error)[:100]}")
        return None


def bench_prefill(batch, length, n_heads, n_kv, d, mm_peak):
    backend = cuda_ops.CudaBackend()
    dtype = torch.bfloat16
    q = torch.randn(batch * length, n_heads, d, device="cuda", dtype=dtype)
    k = torch.randn(batch * length, n_kv, d, device="cuda", dtype=dtype)
    v = torch.randn(batch * length, n_kv, d, device="cuda", dtype=dtype)
    cu = torch.arange(0, batch + 1, device="cuda", dtype=torch.int32) * length
    scale = d ** -0.5
    t = timed(lambda: backend.attention_prefill(q, k, v, cu, cu, scale))
    flops = 4 * d * n_heads * batch * length * (length + 1) / 2  # causal: only visible (q, k) pairs
    # SDPA on the same shapes, K/V expanded to all heads (the flash backend takes no GQA)
    qs = q.view(batch, length, n_heads, d).transpose(1, 2)
    ks = k.view(batch, length, n_kv, d).transpose(1, 2).repeat_interleave(n_heads // n_kv, 1)
    vs = v.view(batch, length, n_kv, d).transpose(1, 2).repeat_interleave(n_heads // n_kv, 1)
    case = f"B{batch} L{length} h{n_heads}/{n_kv} d{d} causal"
    peers = {name: sdpa_time(qs, ks, vs, name) for name in ("flash", "cudnn")}
    for name, tp in peers.items():
        if tp is not None:
            record("prefill", case, t, "TFLOP/s", flops / t / 1e12, f"sdpa-{name}", flops / tp / 1e12,
                   note=f"matmul ceiling {mm_peak/1e12:.0f}")


# -------------------------------------------------------------------------------------------------- decode
def bench_decode(batch, context, n_heads, n_kv, d, copy_bw):
    backend = cuda_ops.CudaBackend()
    dtype = torch.bfloat16
    nbytes = 2 * batch * context * n_kv * d * 2 + 2 * batch * n_heads * d * 2
    sets = max(1, min(8, int(256e6 // nbytes)))  # rotate through >= 256 MB of caches (L2 is 50 MB)
    calls = []
    for _ in range(sets):
        q = torch.randn(batch, n_heads, d, device="cuda", dtype=dtype)
        kc = torch.randn(batch, context, n_kv, d, device="cuda", dtype=dtype)
        vc = torch.randn(batch, context, n_kv, d, device="cuda", dtype=dtype)
        lens = torch.full((batch,), context, device="cuda", dtype=torch.int32)
        calls.append(lambda q=q, kc=kc, vc=vc, lens=lens: backend.attention_decode(q, kc, vc, lens, d ** -0.5))
    case = f"B{batch} ctx{context} h{n_heads}/{n_kv} d{d}"
    t = timed(calls[0])
    record("decode", case + " eager", t, "GB/s", nbytes / t / 1e9, "d2d copy", copy_bw / 1e9)
    t = graph_time(calls)
    record("decode", case + f" graph x{sets}", t, "GB/s", nbytes / t / 1e9, "d2d copy", copy_bw / 1e9)


# ---------------------------------------------------------------------------------------------------- GEMV
def bench_gemv(rows, features_in, features_out, copy_bw):
    """Decode projections (a few rows): our GEMV vs cuBLAS (F.linear), both graph-timed over rotating weights."""
    backend = cuda_ops.CudaBackend()
    nbytes = features_in * features_out * 2
    sets = max(1, min(64, int(256e6 // nbytes)))
    ws = [torch.randn(features_out, features_in, device="cuda", dtype=torch.bfloat16) for _ in range(sets)]
    x = torch.randn(rows, features_in, device="cuda", dtype=torch.bfloat16)
    t = graph_time([lambda w=w: backend.linear(x, w) for w in ws])
    t_blas = graph_time([lambda w=w: F.linear(x, w) for w in ws])
    record("gemv", f"M{rows} {features_in}->{features_out} graph x{sets}", t, "GB/s", nbytes / t / 1e9,
           "cuBLAS F.linear", nbytes / t_blas / 1e9, note=f"copy {copy_bw / 1e9:.0f} GB/s")


# ----------------------------------------------------------------------------------------------------- MoE
def hf_moe_block(experts_impl, hidden, experts, top_k, inter, weights):
    from transformers.models.qwen3_moe.configuration_qwen3_moe import Qwen3MoeConfig
    from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock
    config = Qwen3MoeConfig(hidden_size=hidden, num_experts=experts, num_experts_per_tok=top_k,
                            moe_intermediate_size=inter, norm_topk_prob=True)
    config._experts_implementation = experts_impl
    block = Qwen3MoeSparseMoeBlock(config).to(device="cuda", dtype=torch.bfloat16)
    router, w_gate_up, w_down = weights
    with torch.no_grad():
        block.gate.weight.copy_(router)
        block.experts.gate_up_proj.copy_(w_gate_up)
        block.experts.down_proj.copy_(w_down)
    return block


def our_moe_block(x, router, w_gate_up, w_down, top_k, backend):
    """The model's MoE block (model.MoE) on the CUDA ops: router projection, moe_route (fp32 softmax, top-k,
    renormalise: one kernel), then the fused expert dispatch."""
    ids, weights = backend.moe_route(backend.linear(x, router), top_k, True)
    return backend.moe_experts(x, ids, weights, w_gate_up, w_down)


def bench_moe(tokens, copy_bw, hidden=2048, experts=128, top_k=8, inter=768):
    backend = cuda_ops.CudaBackend()
    g = torch.Generator(device="cuda").manual_seed(0)
    dtype = torch.bfloat16
    router = (torch.randn(experts, hidden, device="cuda", generator=g) * hidden ** -0.5).to(dtype)
    w_gate_up = (torch.randn(experts, 2 * inter, hidden, device="cuda", generator=g) * hidden ** -0.5).to(dtype)
    w_down = (torch.randn(experts, hidden, inter, device="cuda", generator=g) * inter ** -0.5).to(dtype)
    xs = [torch.randn(tokens, hidden, device="cuda", generator=g).to(dtype) for _ in range(4)]
    x = xs[0]
    ours = lambda x=x: our_moe_block(x, router, w_gate_up, w_down, top_k, backend)
    out = ours()
    t = timed(ours)
    # bytes that must move: the weights of the experts actually chosen, the router, x in and out
    def active_bytes(x):
        with torch.no_grad():
            chosen = torch.softmax(F.linear(x, router).float(), -1).topk(top_k, -1).indices.unique().numel()
        return chosen, chosen * 3 * inter * hidden * 2 + router.numel() * 2 + 2 * x.numel() * 2
    chosen, nbytes = active_bytes(x)
    flops = 2 * tokens * top_k * 3 * inter * hidden
    case = f"N{tokens} (H{hidden} E{experts} k{top_k} I{inter}) {chosen} active"
    record("moe", case + " eager", t, "GB/s", nbytes / t / 1e9, "d2d copy", copy_bw / 1e9,
           note=f"{flops / t / 1e12:.1f} TFLOP/s")
    # graph-captured, rotating over 4 inputs (different experts), router included
    t_graph = graph_time([lambda x=x: our_moe_block(x, router, w_gate_up, w_down, top_k, backend) for x in xs])
    graph_bytes = sum(active_bytes(x)[1] for x in xs) / len(xs)
    if tokens == 1:
        kernel_breakdown(ours, "MoE block, 1 token")
    record("moe", case + " graph x4", t_graph, "GB/s", graph_bytes / t_graph / 1e9, "d2d copy", copy_bw / 1e9,
           note=f"{flops / t_graph / 1e12:.1f} TFLOP/s")
    for impl in ("eager", "grouped_mm"):
        try:
            block = hf_moe_block(impl, hidden, experts, top_k, inter, (router, w_gate_up, w_down))
            with torch.no_grad():
                ref = block(x[None])[0]
                tp = timed(lambda: block(x[None]), reps_ms=100 if impl == "eager" else 200)
        except Exception as error:  # an older transformers without the grouped_mm experts path
            print(f"  transformers {impl} unavailable: {str(error)[:120]}")
            continue
        err = ((out.float() - ref.float()).norm() / ref.float().norm()).item()
        record("moe", case, t, "1/ms", 1e-3 / t, f"transformers-{impl}", 1e-3 / tp,
               note=f"rel diff vs it {err:.1e}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--json", default=None, help="write all rows here")
    parser.add_argument("--sections", default="prefill,decode,gemv,moe", help="comma-separated subset to run")
    args = parser.parse_args()
    sections = args.sections.split(",")
    assert cuda_ops._cuda is not None, f"qwen3mini._cuda not built: {cuda_ops._IMPORT_ERROR}"
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    copy_bw, mm_peak = ceilings()
    if "prefill" in sections:
        for batch, length, d in ([(4, 4096, 128), (16, 1024, 128), (4, 4096, 64)] if not args.quick else [(4, 4096, 128)]):
            bench_prefill(batch, length, 32, 8, d, mm_peak)
    if "decode" in sections:
        for batch, context in ([(1, 8192), (16, 4096), (64, 2048)] if not args.quick else [(16, 4096)]):
            bench_decode(batch, context, 32, 8, 128, copy_bw)
        bench_decode(1, 4096, 16, 8, 128, copy_bw)  # Qwen3-0.6B heads
    if "gemv" in sections:  # Qwen3-0.6B's fused projections (qkv, o, gate_up, down) and its LM head
        for features_in, features_out in [(1024, 4096), (2048, 1024), (1024, 6144), (3072, 1024), (1024, 151936)]:
            bench_gemv(1, features_in, features_out, copy_bw)
    if "moe" in sections:
        for tokens in (1, 64, 4096):
            bench_moe(tokens, copy_bw)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(ROWS, f, indent=1)


if __name__ == "__main__":
    main()
