// Small memory-bound kernels: RMSNorm (optionally fused with the residual add) and rotary embedding.
//
// Contract: qwen3mini/ops/reference.py (rms_norm, add_rms_norm, apply_rope). Each reads its inputs once and
// writes its outputs once, in 16-byte vectors; the rounding steps follow the reference (HF) exactly, so these
// agree with it to the last bit except for the order of the fp32 sum of squares.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "common.cuh"

namespace q3 {

constexpr int NORM_THREADS = 256;

__device__ __forceinline__ float block_sum(float v) {
  __shared__ float partial[NORM_THREADS / 32];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = v;
  __syncthreads();
  float total = 0.f;
#pragma unroll
  for (int i = 0; i < NORM_THREADS / 32; ++i) total += partial[i];
  return total;
}

// One block per row. With `residual` set: s = round(x + residual) is written to `sum_out` and normalised.
template <typename T>
__global__ void __launch_bounds__(NORM_THREADS) rms_norm_kernel(const T* __restrict__ x, const T* __restrict__ residual,
                                                                const T* __restrict__ weight, T* out, T* sum_out,
                                                                int hidden, float eps) {
  const int64_t row = blockIdx.x;
  const T* xr = x + row * hidden;
  const T* rr = residual ? residual + row * hidden : nullptr;
  float sq = 0.f;
  for (int c = threadIdx.x * 8; c < hidden; c += NORM_THREADS * 8) {
    uint4 raw = *reinterpret_cast<const uint4*>(xr + c);
    T* v = reinterpret_cast<T*>(&raw);
    if (rr) {
      const uint4 rraw = *reinterpret_cast<const uint4*>(rr + c);
      const T* rv = reinterpret_cast<const T*>(&rraw);
#pragma unroll
      for (int i = 0; i < 8; ++i) v[i] = Traits<T>::from_float(Traits<T>::to_float(v[i]) + Traits<T>::to_float(rv[i]));
      *reinterpret_cast<uint4*>(sum_out + row * hidden + c) = raw;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) sq += Traits<T>::to_float(v[i]) * Traits<T>::to_float(v[i]);
  }
  const float inv = rsqrtf(block_sum(sq) / hidden + eps);
  for (int c = threadIdx.x * 8; c < hidden; c += NORM_THREADS * 8) {
    uint4 raw = *reinterpret_cast<const uint4*>((rr ? sum_out : x) + row * hidden + c);  // own writes: visible
    const uint4 wraw = *reinterpret_cast<const uint4*>(weight + c);
    T* v = reinterpret_cast<T*>(&raw);
    const T* wv = reinterpret_cast<const T*>(&wraw);
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float normed = Traits<T>::to_float(Traits<T>::from_float(Traits<T>::to_float(v[i]) * inv));
      v[i] = Traits<T>::from_float(Traits<T>::to_float(wv[i]) * normed);
    }
    *reinterpret_cast<uint4*>(out + row * hidden + c) = raw;
  }
}

// x: [N, heads, D]; cos, sin: [N, D]. Thread i of a row handles the pair (j, j + D/2).
template <typename T>
__global__ void rope_kernel(const T* __restrict__ x, const T* __restrict__ cos, const T* __restrict__ sin, T* out,
                            int64_t n_pairs, int heads, int dim) {
  const int half = dim / 2;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n_pairs; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / half;  // (token, head)
    const int j = i % half;
    const int64_t tok = row / heads;
    const float x1 = Traits<T>::to_float(x[row * dim + j]), x2 = Traits<T>::to_float(x[row * dim + j + half]);
    const T* c = cos + tok * dim;
    const T* s = sin + tok * dim;
    auto r = [](float v) { return Traits<T>::to_float(Traits<T>::from_float(v)); };  // round to T
    // out[j] = x1*cos[j] + (-x2)*sin[j];  out[j + half] = x2*cos[j + half] + x1*sin[j + half], each product rounded
    out[row * dim + j] = Traits<T>::from_float(r(x1 * Traits<T>::to_float(c[j])) + r(-x2 * Traits<T>::to_float(s[j])));
    out[row * dim + j + half] = Traits<T>::from_float(r(x2 * Traits<T>::to_float(c[j + half])) +
                                                      r(x1 * Traits<T>::to_float(s[j + half])));
  }
}

}  // namespace q3

namespace {
using namespace q3;

void check_norm(const torch::Tensor& x, const torch::Tensor& weight, const char* op) {
  TORCH_CHECK(x.is_cuda() && (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf), op,
              ": x must be a bf16/fp16 CUDA tensor");
  TORCH_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1) && weight.scalar_type() == x.scalar_type(), op,
              ": weight must be [", x.size(-1), "] in x.dtype, got ", weight.sizes(), " ", weight.scalar_type());
  TORCH_CHECK(x.size(-1) % 8 == 0, op, ": hidden size must be a multiple of 8");
}

template <typename Fn>
void dispatch(at::ScalarType dtype, Fn&& fn) {
  if (dtype == at::kBFloat16) fn(__nv_bfloat16{});
  else fn(__half{});
}
}  // namespace

std::vector<torch::Tensor> add_rms_norm_cuda(torch::Tensor x, c10::optional<torch::Tensor> residual,
                                             torch::Tensor weight, double eps) {
  check_norm(x, weight, "rms_norm");
  const c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous(), wc = weight.contiguous();
  torch::Tensor rc, sum;
  if (residual) {
    TORCH_CHECK(residual->sizes() == x.sizes() && residual->scalar_type() == x.scalar_type(),
                "add_rms_norm: residual must match x in shape and dtype");
    rc = residual->contiguous();
    sum = torch::empty_like(xc);
  }
  auto out = torch::empty_like(xc);
  const int hidden = x.size(-1);
  const int64_t rows = hidden ? xc.numel() / hidden : 0;
  if (rows == 0) return {out, sum};
  dispatch(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    rms_norm_kernel<T><<<rows, NORM_THREADS, 0, c10::cuda::getCurrentCUDAStream()>>>(
        static_cast<const T*>(xc.data_ptr()), residual ? static_cast<const T*>(rc.data_ptr()) : nullptr,
        static_cast<const T*>(wc.data_ptr()), static_cast<T*>(out.data_ptr()),
        residual ? static_cast<T*>(sum.data_ptr()) : nullptr, hidden, static_cast<float>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, sum};
}

torch::Tensor apply_rope_cuda(torch::Tensor x, torch::Tensor cos, torch::Tensor sin) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 3 && (x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf),
              "apply_rope: x must be a bf16/fp16 CUDA tensor [N, heads, D]");
  TORCH_CHECK(x.size(2) % 2 == 0, "apply_rope: head dim must be even");
  TORCH_CHECK(cos.sizes() == sin.sizes() && cos.dim() == 2 && cos.size(0) == x.size(0) && cos.size(1) == x.size(2) &&
                  cos.scalar_type() == x.scalar_type() && sin.scalar_type() == x.scalar_type(),
              "apply_rope: cos and sin must be [N, D] in x.dtype, got ", cos.sizes(), " and ", sin.sizes());
  const c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous(), cc = cos.contiguous(), sc = sin.contiguous();
  auto out = torch::empty_like(xc);
  const int64_t n_pairs = xc.numel() / 2;
  if (n_pairs == 0) return out;
  dispatch(x.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const int blocks = static_cast<int>(std::min<int64_t>((n_pairs + 255) / 256, 65536));
    rope_kernel<T><<<blocks, 256, 0, c10::cuda::getCurrentCUDAStream()>>>(
        static_cast<const T*>(xc.data_ptr()), static_cast<const T*>(cc.data_ptr()),
        static_cast<const T*>(sc.data_ptr()), static_cast<T*>(out.data_ptr()), n_pairs, x.size(1), x.size(2));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}
