// Python bindings of the CUDA kernels (module qwen3mini._cuda). The Python side is qwen3mini/ops/cuda.py.
#include <torch/extension.h>

torch::Tensor attention_prefill_cuda(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor cu_seqlens_q,
                                     torch::Tensor cu_seqlens_k, double scale, int64_t max_seqlen_q);
torch::Tensor attention_decode_cuda(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
                                    torch::Tensor cache_seqlens, double scale);
torch::Tensor moe_experts_cuda(torch::Tensor x, torch::Tensor topk_ids, torch::Tensor topk_weights,
                               torch::Tensor w_gate_up, torch::Tensor w_down);
std::vector<torch::Tensor> add_rms_norm_cuda(torch::Tensor x, c10::optional<torch::Tensor> residual,
                                             torch::Tensor weight, double eps);
torch::Tensor apply_rope_cuda(torch::Tensor x, torch::Tensor cos, torch::Tensor sin);
torch::Tensor gemv_cuda(torch::Tensor x, torch::Tensor weight);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "qwen3mini CUDA kernels: fused attention (prefill, split-KV decode), MoE dispatch, RMSNorm, RoPE, GEMV";
  m.def("attention_prefill", &attention_prefill_cuda, "varlen causal attention (bottom-right aligned)");
  m.def("attention_decode", &attention_decode_cuda, "decode attention over a KV cache, split-KV");
  m.def("moe_experts", &moe_experts_cuda, "MoE dispatch: route, grouped SwiGLU GEMMs, combine");
  m.def("add_rms_norm", &add_rms_norm_cuda, "RMSNorm, optionally fused with the residual add");
  m.def("apply_rope", &apply_rope_cuda, "rotary embedding, split-halves layout");
  m.def("gemv", &gemv_cuda, "x[1, K] @ W[N, K]^T (batch-1 decode projections)");
}
