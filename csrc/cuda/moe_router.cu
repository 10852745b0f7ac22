// The MoE router's top-k (moe_route): one launch from the router logits to each token's experts and weights.
// Contract: qwen3mini/ops/reference.py (moe_route). The dispatch that takes its output is moe.cu's.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <algorithm>
#include <type_traits>

#include "common.cuh"

namespace q3 {

// reference.py moe_route: softmax over the E router logits in fp32, the k largest, optionally renormalised. One
// warp per token; lane l holds logits l, l + 32, ... in registers (EPL = ceil(E / 32) of them, E <= 1024). The
// k winners are found by k rounds of a warp arg-max over the logits themselves (the softmax is monotone, so
// the order is exact and needs no exp), each lane keeping its own best candidate so that only the winning
// lane rescans its registers. Ties go to the smaller expert id. The weights then need exp only for the
// winners, plus the softmax denominator over all E.
__device__ __forceinline__ bool better(float v, int i, float bv, int bi) { return v > bv || (v == bv && i < bi); }

template <typename T, int EPL>
__global__ void __launch_bounds__(128) router_topk_kernel(const T* __restrict__ logits, int64_t* __restrict__ ids,
                                                          T* __restrict__ weights, int64_t n_tokens, int n_experts,
                                                          int top_k, bool normalize) {
  const int lane = threadIdx.x % 32;
  const int64_t tok = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (tok >= n_tokens) return;
  const T* row = logits + tok * n_experts;
  float v[EPL];
  uint32_t taken = 0;  // bit i: register i is chosen already or past the last expert
#pragma unroll
  for (int i = 0; i < EPL; ++i) {
    const int e = lane + 32 * i;
    v[i] = e < n_experts ? Traits<T>::to_float(row[e]) : -INFINITY;
    if (e >= n_experts) taken |= 1u << i;
  }
  auto rescan = [&](float& bv, int& bi) {  // this lane's best remaining candidate
    bv = -INFINITY, bi = INT_MAX;
#pragma unroll
    for (int i = 0; i < EPL; ++i)
      if (!(taken >> i & 1) && better(v[i], lane + 32 * i, bv, bi)) bv = v[i], bi = lane + 32 * i;
  };
  float best_v;
  int best_i;
  rescan(best_v, best_i);
  float max_logit = 0.f, sel0 = 0.f, sel1 = 0.f;  // lane l keeps the logits of winners l and l + 32
  for (int j = 0; j < top_k; ++j) {
    float wv = best_v;
    int wi = best_i;
    for (int o = 16; o > 0; o >>= 1) {
      const float ov = __shfl_xor_sync(0xffffffff, wv, o);
      const int oi = __shfl_xor_sync(0xffffffff, wi, o);
      if (better(ov, oi, wv, wi)) wv = ov, wi = oi;
    }
    if (j == 0) max_logit = wv;
    if (lane == (j & 31)) {
      if (j < 32) sel0 = wv;
      else sel1 = wv;
      ids[tok * top_k + j] = wi;
    }
    if (wi % 32 == lane) {  // the owner retires the winner and finds its next candidate
#pragma unroll
      for (int i = 0; i < EPL; ++i)
        if (lane + 32 * i == wi) taken |= 1u << i;
      rescan(best_v, best_i);
    }
  }
  float denom = 0.f;
#pragma unroll
  for (int i = 0; i < EPL; ++i)
    if (lane + 32 * i < n_experts) denom += __expf(v[i] - max_logit);
  for (int o = 16; o > 0; o >>= 1) denom += __shfl_xor_sync(0xffffffff, denom, o);
  const float p0 = lane < top_k ? __expf(sel0 - max_logit) / denom : 0.f;
  const float p1 = lane + 32 < top_k ? __expf(sel1 - max_logit) / denom : 0.f;
  float scale = 1.f;
  if (normalize) {
    float total = p0 + p1;
    for (int o = 16; o > 0; o >>= 1) total += __shfl_xor_sync(0xffffffff, total, o);
    scale = 1.f / total;
  }
  if (lane < top_k) weights[tok * top_k + lane] = Traits<T>::from_float(p0 * scale);
  if (lane + 32 < top_k) weights[tok * top_k + lane + 32] = Traits<T>::from_float(p1 * scale);
}

}  // namespace q3

std::vector<torch::Tensor> moe_route_cuda(torch::Tensor logits, int64_t top_k, bool normalize) {
  TORCH_CHECK(logits.is_cuda() && logits.dim() == 2 &&
                  (logits.scalar_type() == at::kBFloat16 || logits.scalar_type() == at::kHalf),
              "moe_route: logits must be a bf16/fp16 CUDA tensor [N, E], got ", logits.sizes(), " ",
              logits.scalar_type());
  const int64_t n = logits.size(0), experts = logits.size(1);
  TORCH_CHECK(experts >= 1 && experts <= 1024, "moe_route: 1 to 1024 experts, got ", experts);
  TORCH_CHECK(top_k >= 1 && top_k <= std::min<int64_t>(experts, q3::MAX_TOP_K), "moe_route: top_k must be in [1, ",
              std::min<int64_t>(experts, q3::MAX_TOP_K), "], got ", top_k);
  const c10::cuda::CUDAGuard guard(logits.device());
  auto lc = logits.contiguous();
  auto ids = torch::empty({n, top_k}, logits.options().dtype(at::kLong));
  auto weights = torch::empty({n, top_k}, logits.options());
  if (n == 0) return {ids, weights};
  constexpr int WARPS = 4;
  const int blocks = static_cast<int>((n + WARPS - 1) / WARPS);
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto launch = [&](auto tag, auto epl) {
    using T = decltype(tag);
    q3::router_topk_kernel<T, decltype(epl)::value><<<blocks, WARPS * 32, 0, stream>>>(
        static_cast<const T*>(lc.data_ptr()), ids.data_ptr<int64_t>(), static_cast<T*>(weights.data_ptr()), n,
        static_cast<int>(experts), static_cast<int>(top_k), normalize);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  auto by_size = [&](auto tag) {  // registers per lane: the smallest power of two that holds ceil(E / 32)
    const int64_t per_lane = (experts + 31) / 32;
    if (per_lane <= 1) launch(tag, std::integral_constant<int, 1>{});
    else if (per_lane <= 2) launch(tag, std::integral_constant<int, 2>{});
    else if (per_lane <= 4) launch(tag, std::integral_constant<int, 4>{});
    else if (per_lane <= 8) launch(tag, std::integral_constant<int, 8>{});
    else if (per_lane <= 16) launch(tag, std::integral_constant<int, 16>{});
    else launch(tag, std::integral_constant<int, 32>{});
  };
  if (logits.scalar_type() == at::kBFloat16) by_size(__nv_bfloat16{});
  else by_size(__half{});
  return {ids, weights};
}
