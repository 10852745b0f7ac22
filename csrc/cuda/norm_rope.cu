// Small memory-bound kernels: RMSNorm (optionally fused with the residual add), QK-Norm fused with the rotary
// embedding, and SwiGLU's silu(gate) * up.
//
// Contract: qwen3mini/ops/reference.py (rms_norm, add_rms_norm, qk_norm_rope, silu_mul). Each reads its inputs
// once and writes its outputs once; the rounding steps follow the reference (HF) exactly, so these agree with it
// to the last bit except where fp32 arithmetic differs (the order of the sum of squares, the fast exp of SiLU).
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
  pdl_launch_dependents();  // the projection that reads this output may start streaming its weights now
  pdl_wait();
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
    rms_scale8<T>(raw, *reinterpret_cast<const uint4*>(weight + c), inv);
    *reinterpret_cast<uint4*>(out + row * hidden + c) = raw;
  }
}

// QK-Norm + RoPE (reference.py qk_norm_rope). One warp per (token, head) row of q or k: the rows of q come
// first, then those of k. Lane l owns the rotation pairs (j, j + D/2) for j = l, l + 32, ...: it reads both
// elements, the warp sums their squares for the norm, and the lane rotates its pair without talking to any
// other. Rounding to T after each step exactly where the reference (HF) rounds: the normalised value, the
// weight product, each of the two rotary products and their sum.
struct QkRows {  // one of q / k: [N, heads, D] with any token and head strides (unit stride within a head)
  const void* in;
  void* out;       // contiguous [N, heads, D]
  const void* weight;
  int64_t token_stride, head_stride;
  int heads;
};

template <typename T>
__global__ void __launch_bounds__(256) qk_norm_rope_kernel(const QkRows q, const QkRows k, const T* __restrict__ cos,
                                                           const T* __restrict__ sin, int64_t n_tokens, int dim,
                                                           float eps) {
  pdl_launch_dependents();
  pdl_wait();
  const int lane = threadIdx.x % 32;
  int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int64_t q_rows = n_tokens * q.heads;
  if (row >= q_rows + n_tokens * k.heads) return;
  const bool is_q = row < q_rows;
  if (!is_q) row -= q_rows;
  const int heads = is_q ? q.heads : k.heads;
  const int64_t tok = row / heads;
  const int head = row % heads;
  const T* in = static_cast<const T*>(is_q ? q.in : k.in) + tok * (is_q ? q.token_stride : k.token_stride) +
                head * (is_q ? q.head_stride : k.head_stride);
  T* out = static_cast<T*>(is_q ? q.out : k.out) + row * dim;
  const T* w = static_cast<const T*>(is_q ? q.weight : k.weight);
  const int half = dim / 2;
  auto f = [](T v) { return Traits<T>::to_float(v); };
  auto r = [](float v) { return Traits<T>::to_float(Traits<T>::from_float(v)); };  // round to T

  constexpr int MAX_PAIRS = 4;  // D <= 256
  const T* c = cos + tok * dim;
  const T* s = sin + tok * dim;
  float x1[MAX_PAIRS], x2[MAX_PAIRS], w1[MAX_PAIRS], w2[MAX_PAIRS], sq = 0.f;
  T cs[MAX_PAIRS][4];  // cos[j], sin[j], cos[j + half], sin[j + half]: loaded before the reduction needs x
#pragma unroll
  for (int i = 0; i < MAX_PAIRS; ++i) {
    const int j = lane + 32 * i;
    const bool ok = j < half;
    x1[i] = ok ? f(in[j]) : 0.f;
    x2[i] = ok ? f(in[j + half]) : 0.f;
    w1[i] = ok ? f(w[j]) : 0.f;
    w2[i] = ok ? f(w[j + half]) : 0.f;
    if (ok) cs[i][0] = c[j], cs[i][1] = s[j], cs[i][2] = c[j + half], cs[i][3] = s[j + half];
    sq += x1[i] * x1[i] + x2[i] * x2[i];
  }
  for (int o = 16; o > 0; o >>= 1) sq += __shfl_xor_sync(0xffffffff, sq, o);
  const float inv = rsqrtf(sq / dim + eps);
#pragma unroll
  for (int i = 0; i < MAX_PAIRS; ++i) {
    const int j = lane + 32 * i;
    if (j >= half) break;
    const float y1 = r(w1[i] * r(x1[i] * inv)), y2 = r(w2[i] * r(x2[i] * inv));
    // rope: out[j] = y1*cos[j] + (-y2)*sin[j];  out[j + half] = y2*cos[j + half] + y1*sin[j + half]
    out[j] = Traits<T>::from_float(r(y1 * f(cs[i][0])) + r(-y2 * f(cs[i][1])));
    out[j + half] = Traits<T>::from_float(r(y2 * f(cs[i][2])) + r(y1 * f(cs[i][3])));
  }
}

// SwiGLU gate (reference.py silu_mul): out[r, i] = silu(g) * u with g = in[r, i], u = in[r, I + i]; the SiLU
// rounded to T, then the product. VEC consecutive columns per thread (16-byte accesses when VEC = 8).
template <typename T, int VEC>
__global__ void silu_mul_kernel(const T* __restrict__ in, T* __restrict__ out, int64_t rows, int inter,
                                int64_t row_stride) {
  pdl_launch_dependents();  // (as in rms_norm_kernel: the down projection comes next)
  pdl_wait();
  const int64_t vecs_per_row = inter / VEC;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < rows * vecs_per_row;
       i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / vecs_per_row;
    const int col = (i % vecs_per_row) * VEC;
    const T* g = in + row * row_stride + col;
    T gv[VEC], uv[VEC], ov[VEC];
    if constexpr (VEC == 8) {
      *reinterpret_cast<uint4*>(gv) = *reinterpret_cast<const uint4*>(g);
      *reinterpret_cast<uint4*>(uv) = *reinterpret_cast<const uint4*>(g + inter);
    } else {
#pragma unroll
      for (int v = 0; v < VEC; ++v) gv[v] = g[v], uv[v] = g[inter + v];
    }
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
      const float x = Traits<T>::to_float(gv[v]);
      const float silu = Traits<T>::to_float(Traits<T>::from_float(x / (1.f + __expf(-x))));
      ov[v] = Traits<T>::from_float(silu * Traits<T>::to_float(uv[v]));
    }
    T* o = out + row * inter + col;
    if constexpr (VEC == 8) *reinterpret_cast<uint4*>(o) = *reinterpret_cast<const uint4*>(ov);
    else {
#pragma unroll
      for (int v = 0; v < VEC; ++v) o[v] = ov[v];
    }
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
    launch_pdl(rms_norm_kernel<T>, dim3(rows), dim3(NORM_THREADS), 0, c10::cuda::getCurrentCUDAStream(),
        static_cast<const T*>(xc.data_ptr()), residual ? static_cast<const T*>(rc.data_ptr()) : nullptr,
        static_cast<const T*>(wc.data_ptr()), static_cast<T*>(out.data_ptr()),
        residual ? static_cast<T*>(sum.data_ptr()) : nullptr, hidden, static_cast<float>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, sum};
}

std::vector<torch::Tensor> qk_norm_rope_cuda(torch::Tensor q, torch::Tensor k, torch::Tensor q_weight,
                                             torch::Tensor k_weight, double eps, torch::Tensor cos, torch::Tensor sin) {
  TORCH_CHECK(q.is_cuda() && (q.scalar_type() == at::kBFloat16 || q.scalar_type() == at::kHalf) && q.dim() == 3,
              "qk_norm_rope: q must be a bf16/fp16 CUDA tensor [N, nH, D], got ", q.sizes(), " ", q.scalar_type());
  const int64_t n = q.size(0), dim = q.size(2);
  TORCH_CHECK(k.dim() == 3 && k.size(0) == n && k.size(2) == dim && k.scalar_type() == q.scalar_type() &&
                  k.device() == q.device(),
              "qk_norm_rope: k must be [", n, ", nKV, ", dim, "] in q.dtype on q's device, got ", k.sizes());
  TORCH_CHECK(dim % 2 == 0 && dim <= 256, "qk_norm_rope: head dim must be even and at most 256, got ", dim);
  for (const auto* w : {&q_weight, &k_weight})
    TORCH_CHECK(w->dim() == 1 && w->size(0) == dim && w->scalar_type() == q.scalar_type() && w->device() == q.device(),
                "qk_norm_rope: q_weight and k_weight must be [", dim, "] in q.dtype, got ", w->sizes());
  TORCH_CHECK(cos.sizes() == sin.sizes() && cos.dim() == 2 && cos.size(0) == n && cos.size(1) == dim &&
                  cos.scalar_type() == q.scalar_type() && sin.scalar_type() == q.scalar_type() &&
                  cos.device() == q.device() && sin.device() == q.device(),
              "qk_norm_rope: cos and sin must be [N, D] = [", n, ", ", dim, "] in q.dtype, got ", cos.sizes(), " and ",
              sin.sizes());
  const c10::cuda::CUDAGuard guard(q.device());
  // Strided heads are read in place (the fused q/k/v projection's slices); only the innermost dim must be dense.
  auto qi = q.stride(2) == 1 ? q : q.contiguous(), ki = k.stride(2) == 1 ? k : k.contiguous();
  auto cc = cos.contiguous(), sc = sin.contiguous(), qw = q_weight.contiguous(), kw = k_weight.contiguous();
  auto q_out = torch::empty(q.sizes(), q.options()), k_out = torch::empty(k.sizes(), k.options());
  const int64_t rows = n * (q.size(1) + k.size(1));
  if (rows == 0) return {q_out, k_out};
  QkRows qr{qi.data_ptr(), q_out.data_ptr(), qw.data_ptr(), qi.stride(0), qi.stride(1), static_cast<int>(q.size(1))};
  QkRows kr{ki.data_ptr(), k_out.data_ptr(), kw.data_ptr(), ki.stride(0), ki.stride(1), static_cast<int>(k.size(1))};
  dispatch(q.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    constexpr int WARPS = 8;
    launch_pdl(qk_norm_rope_kernel<T>, dim3((rows + WARPS - 1) / WARPS), dim3(WARPS * 32), 0,
        c10::cuda::getCurrentCUDAStream(), qr, kr, static_cast<const T*>(cc.data_ptr()), static_cast<const T*>(sc.data_ptr()), n, dim,
        static_cast<float>(eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {q_out, k_out};
}

torch::Tensor silu_mul_cuda(torch::Tensor gate_up) {
  TORCH_CHECK(gate_up.is_cuda() && (gate_up.scalar_type() == at::kBFloat16 || gate_up.scalar_type() == at::kHalf) &&
                  gate_up.dim() >= 1 && gate_up.size(-1) % 2 == 0,
              "silu_mul: gate_up must be a bf16/fp16 CUDA tensor [..., 2I], got ", gate_up.sizes(), " ",
              gate_up.scalar_type());
  const c10::cuda::CUDAGuard guard(gate_up.device());
  const int64_t inter = gate_up.size(-1) / 2;
  // Rows addressed by one stride: a 2-D view (a column slice keeps its row stride); otherwise flatten (copies
  // only if the leading dims cannot be merged).
  auto in = gate_up.dim() == 2 ? gate_up : gate_up.reshape({-1, 2 * inter});
  if (in.stride(-1) != 1) in = in.contiguous();
  auto out_sizes = gate_up.sizes().vec();
  out_sizes.back() = inter;
  auto out = torch::empty(out_sizes, gate_up.options());
  const int64_t rows = in.size(0);
  if (rows == 0 || inter == 0) return out;
  const bool vec8 = inter % 8 == 0 && in.stride(0) % 8 == 0 && reinterpret_cast<uintptr_t>(in.data_ptr()) % 16 == 0;
  dispatch(gate_up.scalar_type(), [&](auto tag) {
    using T = decltype(tag);
    const int vec = vec8 ? 8 : 1;
    const int64_t work = rows * (inter / vec);
    const int blocks = static_cast<int>(std::min<int64_t>((work + 255) / 256, 65536));
    auto stream = c10::cuda::getCurrentCUDAStream();
    const T* src = static_cast<const T*>(in.data_ptr());
    T* dst = static_cast<T*>(out.data_ptr());
    if (vec8) launch_pdl(silu_mul_kernel<T, 8>, dim3(blocks), dim3(256), 0, stream, src, dst, rows, inter, in.stride(0));
    else launch_pdl(silu_mul_kernel<T, 1>, dim3(blocks), dim3(256), 0, stream, src, dst, rows, inter, in.stride(0));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}
