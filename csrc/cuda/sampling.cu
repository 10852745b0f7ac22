// Sampling at a temperature, with no top-k/top-p/min-p filter, as one kernel: Gumbel-max.
//
// Contract: csrc/README.md ("Sampling"); the reference is the PyTorch path of qwen3mini/sampling.py.
//
// argmax_i (logit_i / T - log E_i), with E_i ~ Exp(1) independent, is i with probability softmax(logit / T)_i
// (the Gumbel-max trick: -log E is Gumbel noise; sampling.py's exponential race is the same draw seen through
// exp). So a row needs no softmax, no normalising sum and no second pass: one block per row reads each logit
// once, in its own dtype, and reduces (value, index) pairs to the winner. Ties go to the lower index, so a row
// that is -inf everywhere but one place returns that place.
//
// The noise is Philox4x32-10, a counter-based generator: 4 random words are a function of (key, counter) alone,
// so any thread computes the noise of any element, in any order, with no state to carry. key = the seed,
// counter = (group of 4 elements, row, call number). The state is a device tensor int64 [3]: the seed, the calls
// so far and the blocks of this call that are done; the last block to finish advances the call number. The host
// never reads it, so the kernel can be captured in a CUDA graph and every replay draws fresh noise.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <climits>

#include "common.cuh"

namespace q3 {

struct Philox4 {
  uint32_t x[4];
};

// Philox4x32-10: ten rounds of two 32x32 -> 64-bit products mixed with the key, bumped by the Weyl constants.
__host__ __device__ inline Philox4 philox4x32_10(Philox4 c, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = 0xD2511F53ull * c.x[0], p1 = 0xCD9E8D57ull * c.x[2];
    c = {{static_cast<uint32_t>(p1 >> 32) ^ c.x[1] ^ k0, static_cast<uint32_t>(p1),
          static_cast<uint32_t>(p0 >> 32) ^ c.x[3] ^ k1, static_cast<uint32_t>(p0)}};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return c;
}

// -log E for E ~ Exp(1), from 32 random bits: the top 23 bits give w = (k + 1/2) / 2^23, uniform on (0, 1) and
// never 0 or 1; E = -log(1 - w) by log1pf, which stays exact where E is tiny (the noise's large values, where
// the winners come from; the fast logf of --use_fast_math is not accurate near 1). The outer log is fast.
__device__ __forceinline__ float gumbel(uint32_t bits) {
  const float w = (static_cast<float>(bits >> 9) + 0.5f) * 0x1p-23f;
  return -__logf(-log1pf(-w));
}

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }

struct Best {
  float value;
  int index;
};

__device__ __forceinline__ Best better(Best a, Best b) {  // the larger value; the lower index on ties
  return (b.value > a.value || (b.value == a.value && b.index < a.index)) ? b : a;
}

__device__ __forceinline__ Best warp_best(Best b) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    b = better(b, {__shfl_xor_sync(0xffffffff, b.value, offset), __shfl_xor_sync(0xffffffff, b.index, offset)});
  return b;
}

constexpr int SAMPLE_THREADS = 256;

// One block per row: tokens[row] = argmax_i (logits[row, i] * inv_temperature + gumbel noise).
template <typename T>
__global__ void __launch_bounds__(SAMPLE_THREADS)
    gumbel_sample_kernel(const T* logits, int64_t row_stride, int vocab, float inv_temperature,
                         unsigned long long* rng, int64_t* tokens) {
  __shared__ unsigned long long seed, call;
  __shared__ Best warps[SAMPLE_THREADS / 32];
  const int row = blockIdx.x, lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (threadIdx.x == 0) {
    seed = rng[0];
    call = rng[1];
  }
  __syncthreads();

  const T* x = logits + row * row_stride;
  Best best{-INFINITY, INT_MAX};
  for (int group = threadIdx.x; group < (vocab + 3) / 4; group += SAMPLE_THREADS) {
    const Philox4 bits = philox4x32_10({{static_cast<uint32_t>(group), static_cast<uint32_t>(row),
                                         static_cast<uint32_t>(call), static_cast<uint32_t>(call >> 32)}},
                                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int i = 4 * group + j;
      if (i < vocab) best = better(best, {to_float(x[i]) * inv_temperature + gumbel(bits.x[j]), i});
    }
  }
  best = warp_best(best);
  if (lane == 0) warps[warp] = best;
  __syncthreads();
  if (warp != 0) return;
  best = warp_best(lane < SAMPLE_THREADS / 32 ? warps[lane] : Best{-INFINITY, INT_MAX});
  if (lane != 0) return;
  tokens[row] = best.index == INT_MAX ? 0 : best.index;  // (only a row of NaNs picks nothing)

  // The last block to finish moves the state on to the next call. Every block read the call number above,
  // before its own count (the fence orders the two), so none can see the new one.
  __threadfence();
  if (atomicAdd(&rng[2], 1ull) == gridDim.x - 1) {
    rng[2] = 0;
    rng[1] = call + 1;
  }
}

}  // namespace q3

torch::Tensor gumbel_sample_cuda(torch::Tensor logits, double temperature, torch::Tensor rng) {
  TORCH_CHECK(logits.is_cuda() && logits.dim() == 2 && logits.stride(1) == 1,
              "gumbel_sample: logits must be a CUDA tensor [B, V] contiguous in V, got ", logits.sizes());
  TORCH_CHECK(logits.size(1) >= 1 && logits.size(1) < INT_MAX, "gumbel_sample: vocabulary of ", logits.size(1));
  TORCH_CHECK(temperature > 0, "gumbel_sample: temperature must be > 0, got ", temperature);
  TORCH_CHECK(rng.is_cuda() && rng.scalar_type() == at::kLong && rng.numel() == 3 && rng.is_contiguous() &&
                  rng.device() == logits.device(),
              "gumbel_sample: rng must be a contiguous int64 tensor [3] (seed, calls, 0) on the logits' device");
  const c10::cuda::CUDAGuard guard(logits.device());
  auto tokens = torch::empty({logits.size(0)}, logits.options().dtype(at::kLong));
  if (logits.size(0) == 0) return tokens;
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto state = reinterpret_cast<unsigned long long*>(rng.data_ptr<int64_t>());
  const auto launch = [&](auto* typed) {
    q3::gumbel_sample_kernel<<<logits.size(0), q3::SAMPLE_THREADS, 0, stream>>>(
        typed, logits.stride(0), static_cast<int>(logits.size(1)), static_cast<float>(1.0 / temperature), state,
        tokens.data_ptr<int64_t>());
  };
  switch (logits.scalar_type()) {
    case at::kFloat: launch(logits.data_ptr<float>()); break;
    case at::kBFloat16: launch(reinterpret_cast<const __nv_bfloat16*>(logits.data_ptr())); break;
    case at::kHalf: launch(reinterpret_cast<const __half*>(logits.data_ptr())); break;
    default: TORCH_CHECK(false, "gumbel_sample: logits must be fp32, bf16 or fp16, got ", logits.scalar_type());
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return tokens;
}
