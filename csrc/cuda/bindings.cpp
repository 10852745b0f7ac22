// Python bindings of the CUDA kernels (module qwen3mini._cuda). The Python side is qwen3mini/ops/cuda.py.
#include <torch/extension.h>

torch::Tensor attention_prefill_cuda(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor cu_seqlens_q,
                                     torch::Tensor cu_seqlens_k, double scale, int64_t max_seqlen_q);
torch::Tensor attention_decode_cuda(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
                                    torch::Tensor cache_seqlens, double scale);
torch::Tensor attention_decode_qkv_cuda(torch::Tensor qkv, torch::Tensor q_norm, torch::Tensor k_norm,
                                        torch::Tensor cos, torch::Tensor sin, torch::Tensor k_cache,
                                        torch::Tensor v_cache, torch::Tensor lengths, int64_t n_heads, double eps,
                                        double scale);
int64_t attention_decode_splits_cuda(int64_t batch, int64_t n_kv_heads, int64_t capacity, int64_t device);
torch::Tensor moe_experts_cuda(torch::Tensor x, torch::Tensor topk_ids, torch::Tensor topk_weights,
                               torch::Tensor w_gate_up, torch::Tensor w_down);
std::vector<torch::Tensor> add_rms_norm_cuda(torch::Tensor x, c10::optional<torch::Tensor> residual,
                                             torch::Tensor weight, double eps);
std::vector<torch::Tensor> qk_norm_rope_cuda(torch::Tensor q, torch::Tensor k, torch::Tensor q_weight,
                                             torch::Tensor k_weight, double eps, torch::Tensor cos, torch::Tensor sin);
torch::Tensor silu_mul_cuda(torch::Tensor gate_up);
std::vector<torch::Tensor> moe_route_cuda(torch::Tensor logits, int64_t top_k, bool normalize);
torch::Tensor gemv_cuda(torch::Tensor x, torch::Tensor weight);
torch::Tensor gumbel_sample_cuda(torch::Tensor logits, double temperature, torch::Tensor rng);
void bind_decode_step(pybind11::module& m);  // decode_step.cu: the fused decode step (class DecodeStep, MAX_ROWS)

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "qwen3mini CUDA kernels: fused attention (prefill, split-KV decode), MoE router and dispatch, RMSNorm, QK-Norm+RoPE, SiLU*up, GEMV, the fused decode step, sampling";
  m.def("attention_prefill", &attention_prefill_cuda, "varlen causal attention (bottom-right aligned)");
  m.def("attention_decode", &attention_decode_cuda, "decode attention over a KV cache, split-KV");
  m.def("attention_decode_qkv", &attention_decode_qkv_cuda,
        "decode attention from the new token's fused qkv projection: QK-Norm + RoPE at position lengths[b], K/V "
        "written into the cache there, attention over lengths[b] + 1 positions (the batched decode step's)");
  m.def("attention_decode_splits", &attention_decode_splits_cuda,
        "attention_decode's split count for (batch, KV heads, cache capacity, device); 1 launches no combine");
  m.def("moe_experts", &moe_experts_cuda, "MoE dispatch: route, grouped SwiGLU GEMMs, combine");
  m.def("add_rms_norm", &add_rms_norm_cuda, "RMSNorm, optionally fused with the residual add");
  m.def("qk_norm_rope", &qk_norm_rope_cuda, "per-head RMSNorm of q and k, then rotary embedding (one launch)");
  m.def("silu_mul", &silu_mul_cuda, "SwiGLU gate: silu(gate) * up of a fused [..., 2I] projection");
  m.def("moe_route", &moe_route_cuda, "MoE router: fp32 softmax, top-k, optional renormalisation (one launch)");
  m.def("gemv", &gemv_cuda, "x[1, K] @ W[N, K]^T (batch-1 decode projections)");
  m.def("gumbel_sample", &gumbel_sample_cuda, "one token per row from softmax(logits / T), Gumbel-max (one launch)");
  bind_decode_step(m);
}
