// Matrix-vector product for batch-1 decode: y[N] = W[N, K] @ x[K] (fp32 accumulation).
//
// Contract: qwen3mini/ops/reference.py (linear). In batch-1 decode every projection is a matrix-vector product
// and speed is the rate at which W streams from memory. cuBLAS picks GEMM tilings for these shapes that reached
// only ~0.85 TB/s on Qwen3-0.6B's projections (bench/RESULTS.md); here one warp owns one output column (one row
// of W): its 32 lanes read the row in 16-byte vectors, up to UNROLL of them in flight per lane before the first
// use, multiply by x (tiny, served from L1/L2) and reduce with shuffles. Thousands of warps in flight keep
// enough loads outstanding to approach the copy bandwidth even for a 2 MB matrix. Measured 1.1-1.5x cuBLAS for
// one row (bench/RESULTS.md) but 0.8x at 8 rows (bench/results/cuda_bench_full.log), so only single rows come
// here; more rows go to cuBLAS.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "common.cuh"

namespace q3 {

constexpr int GEMV_WARPS = 4;

template <typename T, int UNROLL>
__device__ __forceinline__ void load_weights(uint4 (&wv)[UNROLL], const T* wr, int base, int k) {
#pragma unroll
  for (int u = 0; u < UNROLL; ++u) {  // issue every load of this round before using any
    const int c = base + u * 32 * 8;
    wv[u] = c < k ? __ldg(reinterpret_cast<const uint4*>(wr + c)) : make_uint4(0, 0, 0, 0);
  }
}

template <typename T, int UNROLL>
__global__ void __launch_bounds__(GEMV_WARPS * 32) gemv_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                               T* __restrict__ y, int n, int k) {
  const int lane = threadIdx.x % 32;
  const int64_t col = (int64_t)blockIdx.x * GEMV_WARPS + threadIdx.x / 32;
  pdl_launch_dependents();  // (the next kernel waits for this one's completion anyway)
  if (col >= n) return;
  const T* wr = w + col * k;
  uint4 wv[UNROLL];
  load_weights<T, UNROLL>(wv, wr, lane * 8, k);  // weights are never written: safe before the wait
  pdl_wait();                                     // x is the previous kernel's output
  float acc = 0.f;
  for (int base = lane * 8; base < k; base += 32 * 8 * UNROLL) {
    if (base != lane * 8) load_weights<T, UNROLL>(wv, wr, base, k);
#pragma unroll
    for (int u = 0; u < UNROLL; ++u) {
      const int c = base + u * 32 * 8;
      if (c >= k) break;
      const T* wt = reinterpret_cast<const T*>(&wv[u]);
      const uint4 xv = *reinterpret_cast<const uint4*>(x + c);  // (not __ldg: written by the kernel before)
      const T* xt = reinterpret_cast<const T*>(&xv);
#pragma unroll
      for (int i = 0; i < 8; ++i) acc += Traits<T>::to_float(xt[i]) * Traits<T>::to_float(wt[i]);
    }
  }
  for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffff, acc, o);
  if (lane == 0) y[col] = Traits<T>::from_float(acc);
}

}  // namespace q3

namespace {
template <typename T, int UNROLL>
void launch_gemv(const torch::Tensor& x, const torch::Tensor& w, torch::Tensor& y) {
  const int n = w.size(0), k = w.size(1);
  q3::launch_pdl(q3::gemv_kernel<T, UNROLL>, dim3((n + q3::GEMV_WARPS - 1) / q3::GEMV_WARPS),
                 dim3(q3::GEMV_WARPS * 32), 0, c10::cuda::getCurrentCUDAStream(),
                 static_cast<const T*>(x.data_ptr()), static_cast<const T*>(w.data_ptr()), static_cast<T*>(y.data_ptr()),
                 n, k);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Loads in flight per lane: a row of up to 1024 elements (4 vectors per lane) in one round; longer rows (the
// 3072-wide down projection) in rounds of 16 vectors, so that a warp waits for memory once or twice, not K/1024 times.
template <typename T>
void launch_gemv_sized(const torch::Tensor& x, const torch::Tensor& w, torch::Tensor& y) {
  if (w.size(1) <= 1024) launch_gemv<T, 4>(x, w, y);
  else launch_gemv<T, 16>(x, w, y);
}
}  // namespace

torch::Tensor gemv_cuda(torch::Tensor x, torch::Tensor weight) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2 && x.size(0) == 1, "gemv: x must be a CUDA tensor [1, K], got ",
              x.sizes());
  TORCH_CHECK(weight.dim() == 2 && weight.size(1) == x.size(1), "gemv: weight must be [N, ", x.size(1), "], got ",
              weight.sizes());
  TORCH_CHECK(x.scalar_type() == weight.scalar_type() &&
                  (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf),
              "gemv: x and weight must both be bf16 or both fp16");
  TORCH_CHECK(x.size(1) % 8 == 0, "gemv: K must be a multiple of 8 (16-byte rows)");
  const c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous(), wc = weight.contiguous();
  TORCH_CHECK(reinterpret_cast<uintptr_t>(xc.data_ptr()) % 16 == 0 &&
                  reinterpret_cast<uintptr_t>(wc.data_ptr()) % 16 == 0,
              "gemv: x and weight must be 16-byte aligned");
  auto y = torch::empty({x.size(0), weight.size(0)}, x.options());
  if (weight.size(0) == 0) return y;
  if (x.scalar_type() == at::kBFloat16) launch_gemv_sized<__nv_bfloat16>(xc, wc, y);
  else launch_gemv_sized<__half>(xc, wc, y);
  return y;
}
