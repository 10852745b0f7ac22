// Matrix-vector product for batch-1 decode: y[N] = W[N, K] @ x[K] (fp32 accumulation).
//
// Contract: qwen3mini/ops/reference.py (linear). In batch-1 decode every projection is a matrix-vector product
// and speed is the rate at which W streams from memory, where cuBLAS's GEMM tilings for these shapes fall short
// (bench/RESULTS.md, "cuda"). Here one warp owns one output column (one row of W), with the core the fused decode
// step uses too (gemv.cuh): up to UNROLL 16-byte loads in flight per lane before the first use, x (tiny, served
// from L1/L2) multiplied in, the lanes reduced with shuffles. Thousands of warps in flight keep enough loads
// outstanding to approach the copy bandwidth even for a 2 MB matrix. Only single rows come here: at a few rows
// cuBLAS is faster again (bench/RESULTS.md).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "gemv.cuh"

namespace q3 {

constexpr int GEMV_WARPS = 4;

template <typename T, int UNROLL>
__global__ void __launch_bounds__(GEMV_WARPS * 32) gemv_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                               T* __restrict__ y, int n, int k) {
  const int lane = threadIdx.x % 32;
  const int col = blockIdx.x * GEMV_WARPS + threadIdx.x / 32;
  pdl_launch_dependents();  // (the next kernel waits for this one's completion anyway)
  if (col >= n) return;
  const int rounds = (k + 256 * UNROLL - 1) / (256 * UNROLL);
  uint4 wv[1][UNROLL];
  gemv_load<T, UNROLL, 1>(wv, w, col, n, k, 0, lane);  // weights are never written: safe before the wait
  pdl_wait();                                           // x is the previous kernel's output
  float acc[1][1] = {{0.f}};
  for (int round = 0; round < rounds; ++round) {
    if (round > 0) gemv_load<T, UNROLL, 1>(wv, w, col, n, k, round, lane);
    gemv_fma<T, UNROLL, 1, 1>(acc, wv, x, k, 1, round, lane);
  }
  acc[0][0] = warp_sum(acc[0][0]);
  if (lane == 0) y[col] = Traits<T>::from_float(acc[0][0]);
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
