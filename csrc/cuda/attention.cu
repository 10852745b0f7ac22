// Fused causal attention for prefill (FlashAttention-2 style) and decode (flash-decoding, split-KV).
//
// Contract: qwen3mini/ops/reference.py (attention_prefill, attention_decode). bf16/fp16, head_dim 64 or 128.
//
// ---------------------------------------------------------------------------------------------- prefill tiling
// One thread block computes BLOCK_M = 16 * WARPS query rows of one query head of one sequence; grid =
// (query tiles, query heads, sequences). Each warp owns 16 consecutive query rows for the whole kernel, so the
// softmax statistics (row max m, row sum l) and the output accumulator O[16 x D] live in that warp's registers
// and never need a block-wide reduction.
//
//        keys ->   tile 0    tile 1    tile 2         K/V tiles of BLOCK_N = 64 keys stream through shared
//   q rows       +---------+---------+---------+      memory, double-buffered with cp.async: tile j+1 is in
//   [warp 0]     | S=QK^T  |  ...    | skipped |      flight while tile j is used. For each tile a warp does
//   [warp 1]     | mask,   |         | (above  |        S   = Q K^T          (16 x 64, fp32, tensor cores)
//   [warp 2]     | online  |         |  the    |        m,l = online softmax  (rescale O by exp(m_old - m_new))
//   [warp 3]     | softmax |         | diagonal)|       O  += P V            (P rounded to 16 bits, in registers)
//                +---------+---------+---------+
//
// Causal mask aligned to the end (query i of a sequence sees key j <= i + Lk - Lq): key tiles wholly above the
// diagonal are never loaded; only tiles that cross the diagonal or the sequence end are masked element-wise.
// GQA: the block reads the K/V of head h / group directly (no replication). Q rows are kept as MMA fragments in
// registers for the whole loop. Scores are scaled by softmax_scale * log2(e) so the softmax uses exp2.
// Shared tiles are XOR-swizzled (common.cuh) so ldmatrix is free of bank conflicts. Query tiles are launched
// last-first, because under a causal mask the last tiles carry the most work.
//
// ----------------------------------------------------------------------------------------------- decode tiling
// One new query per sequence, so attention is a pass over the KV cache and speed is bytes per second. One warp
// per block handles (sequence b, KV head, split of the cache): the G = nH / nKV query heads that share the KV
// head are the 16 rows of one MMA tile (padded with zero rows), so each K/V byte is read once for the whole
// group. Each split writes a partial (O / l and log2-sum-exp, fp32); a second kernel combines the splits. When
// the plan has one split (a large batch fills the GPU with (sequence, KV head) blocks alone, or the cache is
// one tile long) that partial is already the answer: the split kernel writes it in T and the combine is skipped.
// The split count depends only on shapes (cache capacity, batch, heads), never on the lengths' values, so the
// launch needs no host sync and can be captured in a CUDA graph; splits past a sequence's length exit early.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include "attention_tiles.cuh"

namespace q3 {

// ============================================================================================= prefill kernel
struct PrefillParams {
  const void *q, *k, *v;
  void* o;
  const int *cu_q, *cu_k;
  AttnStrides sq, sk, sv, so;
  int group;         // query heads per KV head
  float scale_log2;  // softmax scale * log2(e)
};

template <typename T, int D, int WARPS>
__global__ void __launch_bounds__(WARPS * 32) prefill_kernel(const PrefillParams p) {
  constexpr int BLOCK_M = 16 * WARPS, THREADS = WARPS * 32;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);
  T* ks = qs + BLOCK_M * D;       // 2 stages
  T* vs = ks + 2 * BLOCK_N * D;   // 2 stages

  const int b = blockIdx.z, h = blockIdx.y, kvh = h / p.group;
  const int q0 = p.cu_q[b], lq = p.cu_q[b + 1] - q0;
  const int k0 = p.cu_k[b], lk = p.cu_k[b + 1] - k0;
  const int m0 = (gridDim.x - 1 - blockIdx.x) * BLOCK_M;  // heaviest (last) tiles first
  if (m0 >= lq) return;
  const int offset = lk - lq;                              // query i sees keys j <= i + offset
  const int n_end = min(lk, m0 + BLOCK_M + offset);        // one past the last key any row here sees
  const int n_tiles = (n_end + BLOCK_N - 1) / BLOCK_N;

  const T* qg = static_cast<const T*>(p.q);
  const T* kg = static_cast<const T*>(p.k);
  const T* vg = static_cast<const T*>(p.v);
  load_tile<T, D, THREADS>(qs, qg, p.sq, q0 + m0, h, BLOCK_M, lq - m0);
  load_tile<T, D, THREADS>(ks, kg, p.sk, k0, kvh, BLOCK_N, lk);
  load_tile<T, D, THREADS>(vs, vg, p.sv, k0, kvh, BLOCK_N, lk);
  cp_async_commit();

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int row_a = m0 + warp * 16 + g;  // this thread's rows (within the sequence): row_a and row_a + 8
  uint32_t qf[D / 16][4];
  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1, n0 = j * BLOCK_N;
    if (j + 1 < n_tiles) {  // prefetch the next tile into the other stage
      const int n1 = n0 + BLOCK_N;
      load_tile<T, D, THREADS>(ks + (stage ^ 1) * BLOCK_N * D, kg, p.sk, k0 + n1, kvh, BLOCK_N, lk - n1);
      load_tile<T, D, THREADS>(vs + (stage ^ 1) * BLOCK_N * D, vg, p.sv, k0 + n1, kvh, BLOCK_N, lk - n1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    if (j == 0) load_q_frags<T, D>(qf, qs, warp * 16, lane);

    float s[BLOCK_N / 8][4];
    qk_tile<T, D>(s, qf, ks + stage * BLOCK_N * D, lane);
    const bool needs_mask = n0 + BLOCK_N > m0 + offset + 1 || n0 + BLOCK_N > lk;
#pragma unroll
    for (int nt = 0; nt < BLOCK_N / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int col = n0 + nt * 8 + 2 * t + (e & 1), row = row_a + (e >> 1) * 8;
        const bool visible = !needs_mask || (col <= row + offset && col < lk);
        s[nt][e] = visible ? s[nt][e] * p.scale_log2 : -INFINITY;
      }
    }
    softmax_update<D>(s, m, l, o);
    pv_tile<T, D>(o, s, vs + stage * BLOCK_N * D, lane);
    __syncthreads();  // everyone is done with this stage before it is refilled
  }

  T* og = static_cast<T*>(p.o);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row_a + r * 8;
    const float sum = warp_sum4(l[r]);
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    if (row >= lq) continue;
    T* dst = og + (int64_t)(q0 + row) * p.so.tok + (int64_t)h * p.so.head + 2 * t;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<uint32_t*>(dst + dt * 8) = Traits<T>::pack(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
  }
}

// ============================================================================================== decode kernels
struct DecodeParams {
  const void* q;             // [B, nH, D]; from the qkv projection: that projection, [B, (nH + 2 nKV) D]
  void *k, *v;               // the cache (written only by the kernel that starts from the projection)
  const int* seqlens;        // positions to attend; from the projection: the lengths, the new token's positions
  float *o_part, *lse_part;  // [B, nH, splits, D], [B, nH, splits]; unused with one split
  void* o;                   // [B, nH, D]: written directly with one split
  AttnStrides sq, so;        // q and o [B, nH, D]: tok = batch stride
  int64_t kb, ks, kh, vb, vs, vh;  // cache strides (batch, position, head)
  int capacity, group, n_heads, splits, chunk;
  float scale_log2;
  const void *q_norm, *k_norm, *cos, *sin;  // from the projection only: QK-Norm weights [D], rotary tables [S, D]
  float eps;
};

// One warp per (split, KV head, row), as the top of this file describes.
// FROM_QKV: the kernel starts from the new token's fused qkv projection instead of a finished q, and does what
// qk_norm_rope and the cache write do before attention_decode: QK-Norm + RoPE of the group's queries and the key
// at position lengths[b] (TokenHeads, attention_tiles.cuh), the key and value written into the cache there by
// the block whose split holds it, which also puts them into its own shared tile in place of what it fetched (the
// fetch and the write are not ordered). It attends to lengths[b] + 1 positions. Every block of a row normalises
// the queries again: a few hundred bytes from L2, against a split of at least a tile of the cache.
template <typename T, int D, bool FROM_QKV>
__global__ void __launch_bounds__(32) decode_split_kernel(const DecodeParams p) {
  pdl_launch_dependents();  // the combine's (or the next op's) blocks may be scheduled now; they wait for this grid
  pdl_wait();               // q, the cache and the lengths are written by the kernels before
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);  // 16 x D
  T* ks = qs + 16 * D;                     // 2 stages of BLOCK_N x D
  T* vs = ks + 2 * BLOCK_N * D;
  T* knew = vs + 2 * BLOCK_N * D;          // FROM_QKV: the new token's K and V (D each)
  T* vnew = knew + D;

  const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, lane = threadIdx.x, g = lane / 4, t = lane % 4;
  const int pos = FROM_QKV ? p.seqlens[b] : 0;  // the new token's position (the caller keeps it < capacity)
  const int len = FROM_QKV ? min(pos + 1, p.capacity) : min(p.seqlens[b], p.capacity);
  const int s0 = split * p.chunk, s1 = min(s0 + p.chunk, len);
  const int h0 = kvh * p.group;
  const bool alone = p.splits == 1;  // this block's output is the final one: no combine follows
  T* og = static_cast<T*>(p.o) + (int64_t)b * p.so.tok + (int64_t)h0 * p.so.head;
  float* lse_out = p.lse_part + ((int64_t)b * p.n_heads + h0) * p.splits + split;
  if (s0 >= s1) {  // nothing of this sequence in this split: tell the combine to skip it
    if (alone) {    // an empty sequence attends to nothing: zeros, as the reference's empty sum
      for (int i = lane; i < p.group * D; i += 32) og[(i / D) * p.so.head + i % D] = Traits<T>::from_float(0.f);
    } else if (lane < p.group) {
      lse_out[(int64_t)lane * p.splits] = -INFINITY;
    }
    return;
  }
  const T* qg = static_cast<const T*>(p.q) + (int64_t)b * p.sq.tok;
  if constexpr (!FROM_QKV)
    load_tile<T, D, 32>(qs, qg, AttnStrides{p.sq.head, 0}, h0, 0, 16, p.group);  // rows = the group's heads
  T* kg = static_cast<T*>(p.k) + (int64_t)b * p.kb + (int64_t)kvh * p.kh;
  T* vg = static_cast<T*>(p.v) + (int64_t)b * p.vb + (int64_t)kvh * p.vh;
  const AttnStrides sk{p.ks, 0}, sv{p.vs, 0};
  load_tile<T, D, 32>(ks, kg, sk, s0, 0, BLOCK_N, s1 - s0);
  load_tile<T, D, 32>(vs, vg, sv, s0, 0, BLOCK_N, s1 - s0);
  cp_async_commit();
  const bool holds_new = FROM_QKV && pos < p.capacity && pos >= s0 && pos < s1;
  if constexpr (FROM_QKV) {  // while the first tile streams in: this token's heads, into qs (and the cache)
    RopeConsts<T, D> rc;
    const int64_t rope_row = (int64_t)min(pos, p.capacity - 1) * D;
    rc.load(static_cast<const T*>(p.q_norm), static_cast<const T*>(p.k_norm), static_cast<const T*>(p.cos) + rope_row,
            static_cast<const T*>(p.sin) + rope_row, lane);
    const int n_kv = p.n_heads / p.group;
    for (int i = lane; i < (16 - p.group) * (D / 8); i += 32)  // the zero rows that pad the group to the MMA tile
      *reinterpret_cast<uint4*>(qs + swz<D>(p.group + i / (D / 8), (i % (D / 8)) * 8)) = make_uint4(0, 0, 0, 0);
    constexpr int PASS = 6;  // heads a pass: registers for 6, and one pass for groups of up to 4 queries
    TokenHeads<T, D, 1, PASS> heads;
    for (int first = 0; first < p.group + 2; first += PASS) {
      heads.load(qg, h0, p.n_heads + kvh, p.n_heads + n_kv + kvh, p.group, first, lane);
      heads.finish(qs, knew, vnew, holds_new ? kg + (int64_t)pos * p.ks : nullptr,
                   holds_new ? vg + (int64_t)pos * p.vs : nullptr, rc, p.group, p.eps, first, lane);
    }
  }

  uint32_t qf[D / 16][4];
  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  const int n_tiles = (s1 - s0 + BLOCK_N - 1) / BLOCK_N;
  for (int j = 0; j < n_tiles; ++j) {
    const int stage = j & 1, n0 = s0 + j * BLOCK_N;
    if (j + 1 < n_tiles) {
      const int n1 = n0 + BLOCK_N;
      load_tile<T, D, 32>(ks + (stage ^ 1) * BLOCK_N * D, kg, sk, n1, 0, BLOCK_N, s1 - n1);
      load_tile<T, D, 32>(vs + (stage ^ 1) * BLOCK_N * D, vg, sv, n1, 0, BLOCK_N, s1 - n1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncwarp();
    if (holds_new && pos >= n0 && pos < n0 + BLOCK_N) {  // the new row, as computed (not as fetched)
      for (int c = lane; c < D; c += 32) {
        const int at = stage * BLOCK_N * D + swz<D>(pos - n0, c);
        ks[at] = knew[c], vs[at] = vnew[c];
      }
      __syncwarp();
    }
    if (j == 0) load_q_frags<T, D>(qf, qs, 0, lane);
    float s[BLOCK_N / 8][4];
    qk_tile<T, D>(s, qf, ks + stage * BLOCK_N * D, lane);
    scale_and_mask(s, n0, s1, p.scale_log2, lane);
    softmax_update<D>(s, m, l, o);
    pv_tile<T, D>(o, s, vs + stage * BLOCK_N * D, lane);
    __syncwarp();
  }

#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = g + r * 8;  // query head h0 + row
    const float sum = warp_sum4(l[r]);
    if (row >= p.group) continue;
    const float inv = 1.f / sum;  // sum >= 1: the row max contributes exp2(0)
    if (alone) {
      T* dst = og + (int64_t)row * p.so.head + 2 * t;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt)
        *reinterpret_cast<uint32_t*>(dst + dt * 8) = Traits<T>::pack(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
      continue;
    }
    float* dst = p.o_part + (((int64_t)b * p.n_heads + h0 + row) * p.splits + split) * D + 2 * t;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<float2*>(dst + dt * 8) = make_float2(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    if (t == 0) lse_out[(int64_t)row * p.splits] = m[r] + log2f(sum);
  }
}

// out[b, h] = sum_s w_s * O_s with w_s = 2^(lse_s - max) / sum 2^(lse - max); one block per (b, h), D threads.
template <typename T, int D>
__global__ void __launch_bounds__(D) decode_combine_kernel(const float* o_part, const float* lse_part, T* out,
                                                           AttnStrides so, int n_heads, int splits) {
  pdl_launch_dependents();  // the output projection (gemv.cu) may start streaming its weights
  pdl_wait();
  const int bh = blockIdx.x, b = bh / n_heads, h = bh % n_heads, d = threadIdx.x;
  const float* lse = lse_part + (int64_t)bh * splits;
  float mx = -INFINITY;
  for (int s = 0; s < splits; ++s) mx = fmaxf(mx, lse[s]);
  float acc = 0.f, wsum = 0.f;
  for (int s = 0; s < splits; ++s) {
    if (lse[s] == -INFINITY) continue;  // empty split: its partial was never written
    const float w = exp2f(lse[s] - mx);
    wsum += w;
    acc += w * o_part[((int64_t)bh * splits + s) * D + d];
  }
  out[(int64_t)b * so.tok + (int64_t)h * so.head + d] = Traits<T>::from_float(acc / wsum);
}

}  // namespace q3

// ================================================================================================ host side
namespace {

using namespace q3;

void check_attn_tensor(const torch::Tensor& t, const char* name, int dims) {
  TORCH_CHECK(t.is_cuda(), "attention: ", name, " must be a CUDA tensor");
  TORCH_CHECK(t.dim() == dims, "attention: ", name, " must have ", dims, " dims, got ", t.sizes());
  TORCH_CHECK(t.stride(-1) == 1, "attention: ", name, " must be contiguous in its last (head) dim");
  for (int i = 0; i < dims - 1; ++i)  // cp.async moves 16-byte chunks
    TORCH_CHECK(t.stride(i) % 8 == 0, "attention: ", name, " strides must be multiples of 8 elements");
  TORCH_CHECK(reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0, "attention: ", name,
              " must be 16-byte aligned");
  TORCH_CHECK(t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf, "attention: ", name,
              " must be bf16 or fp16, got ", t.scalar_type());
}

// Enough splits to give every SM several warps of work, none shorter than one tile; a function of shapes only.
// Returns (splits, positions per split).
std::pair<int64_t, int64_t> decode_split_plan(int64_t batch, int64_t n_kv, int64_t capacity, int device) {
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t max_splits = (capacity + BLOCK_N - 1) / BLOCK_N;
  const int64_t want = (8LL * sms + batch * n_kv - 1) / (batch * n_kv);
  const int64_t splits = std::max<int64_t>(1, std::min(max_splits, want));
  const int64_t chunk = ((capacity + splits - 1) / splits + BLOCK_N - 1) / BLOCK_N * BLOCK_N;
  return {(capacity + chunk - 1) / chunk, chunk};
}

template <typename Fn>
void dispatch_dtype_dim(at::ScalarType dtype, int64_t d, Fn&& fn) {
  TORCH_CHECK(d == 64 || d == 128, "attention: head_dim must be 64 or 128, got ", d);
  if (dtype == at::kBFloat16) {
    if (d == 64) fn(__nv_bfloat16{}, std::integral_constant<int, 64>{});
    else fn(__nv_bfloat16{}, std::integral_constant<int, 128>{});
  } else {
    if (d == 64) fn(__half{}, std::integral_constant<int, 64>{});
    else fn(__half{}, std::integral_constant<int, 128>{});
  }
}

}  // namespace

torch::Tensor attention_prefill_cuda(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor cu_seqlens_q,
                                     torch::Tensor cu_seqlens_k, double scale, int64_t max_seqlen_q) {
  check_attn_tensor(q, "q", 3);
  check_attn_tensor(k, "k", 3);
  check_attn_tensor(v, "v", 3);
  TORCH_CHECK(k.scalar_type() == q.scalar_type() && v.scalar_type() == q.scalar_type(),
              "attention_prefill: q, k, v must share a dtype");
  TORCH_CHECK(k.size(2) == q.size(2) && v.size(2) == q.size(2), "attention_prefill: q, k, v head_dim differ");
  TORCH_CHECK(k.sizes() == v.sizes(), "attention_prefill: k and v shapes differ");
  TORCH_CHECK(q.size(1) % k.size(1) == 0, "attention_prefill: query heads (", q.size(1),
              ") not a multiple of KV heads (", k.size(1), ")");
  TORCH_CHECK(cu_seqlens_q.scalar_type() == at::kInt && cu_seqlens_k.scalar_type() == at::kInt &&
                  cu_seqlens_q.is_cuda() && cu_seqlens_k.is_cuda() && cu_seqlens_q.is_contiguous() &&
                  cu_seqlens_k.is_contiguous(),
              "attention_prefill: cu_seqlens_q/k must be contiguous int32 CUDA tensors");
  TORCH_CHECK(cu_seqlens_q.numel() == cu_seqlens_k.numel() && cu_seqlens_q.numel() >= 1,
              "attention_prefill: cu_seqlens_q and cu_seqlens_k must both have B+1 entries");
  const c10::cuda::CUDAGuard guard(q.device());
  auto out = torch::empty_like(q, q.options().memory_format(at::MemoryFormat::Contiguous));
  const int batch = cu_seqlens_q.numel() - 1;
  if (batch == 0 || q.size(0) == 0 || max_seqlen_q <= 0) return out;

  PrefillParams p{q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(),
                  cu_seqlens_q.data_ptr<int>(), cu_seqlens_k.data_ptr<int>(),
                  {q.stride(0), q.stride(1)}, {k.stride(0), k.stride(1)}, {v.stride(0), v.stride(1)},
                  {out.stride(0), out.stride(1)}, static_cast<int>(q.size(1) / k.size(1)),
                  static_cast<float>(scale * 1.4426950408889634)};
  auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch_dtype_dim(q.scalar_type(), q.size(2), [&](auto tag, auto dim) {
    using T = decltype(tag);
    constexpr int D = decltype(dim)::value, WARPS = 4, BLOCK_M = 16 * WARPS;
    const int smem = (BLOCK_M + 4 * BLOCK_N) * D * sizeof(T);
    auto kernel = prefill_kernel<T, D, WARPS>;
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const dim3 grid((max_seqlen_q + BLOCK_M - 1) / BLOCK_M, q.size(1), batch);
    kernel<<<grid, WARPS * 32, smem, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

namespace {

// attention_decode and attention_decode_qkv past their checks: p holds the inputs, the cache and the lengths; the
// split plan, the partials and the output [B, nH, D] are filled in here.
template <bool FROM_QKV>
torch::Tensor launch_decode(DecodeParams p, at::ScalarType dtype, int64_t batch, int64_t n_kv, int64_t d,
                            const torch::Tensor& like) {
  const int64_t n_heads = p.n_heads;
  auto out = torch::empty({batch, n_heads, d}, like.options().dtype(dtype));
  if (batch == 0) return out;
  const std::pair<int64_t, int64_t> plan = decode_split_plan(batch, n_kv, p.capacity, like.get_device());
  const int64_t splits = plan.first, chunk = plan.second;
  torch::Tensor o_part, lse_part;  // the combine's inputs: only with several splits
  if (splits > 1) {
    o_part = torch::empty({batch, n_heads, splits, d}, like.options().dtype(at::kFloat));
    lse_part = torch::empty({batch, n_heads, splits}, like.options().dtype(at::kFloat));
    p.o_part = o_part.data_ptr<float>(), p.lse_part = lse_part.data_ptr<float>();
  }
  p.o = out.data_ptr(), p.so = {out.stride(0), out.stride(1)};
  p.splits = static_cast<int>(splits), p.chunk = static_cast<int>(chunk);
  auto stream = c10::cuda::getCurrentCUDAStream();
  dispatch_dtype_dim(dtype, d, [&](auto tag, auto dim) {
    using T = decltype(tag);
    constexpr int D = decltype(dim)::value;
    const int smem = (16 + 4 * BLOCK_N + (FROM_QKV ? 2 : 0)) * D * sizeof(T);
    auto kernel = decode_split_kernel<T, D, FROM_QKV>;
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    launch_pdl(kernel, dim3(splits, n_kv, batch), dim3(32), smem, stream, p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (splits == 1) return;
    launch_pdl(decode_combine_kernel<T, D>, dim3(batch * n_heads), dim3(D), 0, stream,
               static_cast<const float*>(o_part.data_ptr<float>()), static_cast<const float*>(lse_part.data_ptr<float>()),
               static_cast<T*>(out.data_ptr()), AttnStrides{out.stride(0), out.stride(1)}, static_cast<int>(n_heads),
               static_cast<int>(splits));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

void check_cache(const torch::Tensor& k_cache, const torch::Tensor& v_cache, at::ScalarType dtype, int64_t batch,
                 int64_t d, const char* op) {
  check_attn_tensor(k_cache, "k_cache", 4);
  check_attn_tensor(v_cache, "v_cache", 4);
  TORCH_CHECK(k_cache.scalar_type() == dtype && v_cache.scalar_type() == dtype, op,
              ": the input, k_cache and v_cache must share a dtype");
  TORCH_CHECK(k_cache.sizes() == v_cache.sizes(), op, ": k_cache and v_cache shapes differ");
  TORCH_CHECK(k_cache.size(0) == batch && k_cache.size(3) == d, op, ": k_cache must be [B, S, nKV, ", d, "] with B = ",
              batch, ", got ", k_cache.sizes());
}

DecodeParams cache_params(const torch::Tensor& k_cache, const torch::Tensor& v_cache, const torch::Tensor& seqlens,
                          int64_t n_heads, double scale) {
  DecodeParams p{};
  p.k = k_cache.data_ptr(), p.v = v_cache.data_ptr(), p.seqlens = seqlens.data_ptr<int>();
  p.kb = k_cache.stride(0), p.ks = k_cache.stride(1), p.kh = k_cache.stride(2);
  p.vb = v_cache.stride(0), p.vs = v_cache.stride(1), p.vh = v_cache.stride(2);
  p.capacity = static_cast<int>(k_cache.size(1)), p.n_heads = static_cast<int>(n_heads);
  p.group = static_cast<int>(n_heads / k_cache.size(2));
  p.scale_log2 = static_cast<float>(scale * 1.4426950408889634);
  return p;
}

}  // namespace

torch::Tensor attention_decode_cuda(torch::Tensor q, torch::Tensor k_cache, torch::Tensor v_cache,
                                    torch::Tensor cache_seqlens, double scale) {
  check_attn_tensor(q, "q", 3);
  const int64_t batch = q.size(0), n_heads = q.size(1), d = q.size(2);
  check_cache(k_cache, v_cache, q.scalar_type(), batch, d, "attention_decode");
  const int64_t n_kv = k_cache.size(2);
  TORCH_CHECK(n_heads % n_kv == 0 && n_heads / n_kv <= 16, "attention_decode: query heads per KV head must divide ",
              "evenly and be at most 16, got ", n_heads, "/", n_kv);
  TORCH_CHECK(cache_seqlens.is_cuda() && cache_seqlens.scalar_type() == at::kInt && cache_seqlens.numel() == batch,
              "attention_decode: cache_seqlens must be an int32 CUDA tensor of B entries");
  const c10::cuda::CUDAGuard guard(q.device());
  auto seqlens = cache_seqlens.contiguous();
  DecodeParams p = cache_params(k_cache, v_cache, seqlens, n_heads, scale);
  p.q = q.data_ptr(), p.sq = {q.stride(0), q.stride(1)};
  return launch_decode<false>(p, q.scalar_type(), batch, n_kv, d, q);
}

torch::Tensor attention_decode_qkv_cuda(torch::Tensor qkv, torch::Tensor q_norm, torch::Tensor k_norm,
                                        torch::Tensor cos, torch::Tensor sin, torch::Tensor k_cache,
                                        torch::Tensor v_cache, torch::Tensor lengths, int64_t n_heads, double eps,
                                        double scale) {
  TORCH_CHECK(qkv.is_cuda() && qkv.dim() == 2 && qkv.stride(1) == 1 && qkv.stride(0) % 8 == 0,
              "attention_decode_qkv: qkv must be a CUDA tensor [B, (nH + 2 nKV) D], dense rows, got ", qkv.sizes());
  const int64_t batch = qkv.size(0), d = k_cache.dim() == 4 ? k_cache.size(3) : 0;
  check_cache(k_cache, v_cache, qkv.scalar_type(), batch, d, "attention_decode_qkv");
  const int64_t n_kv = k_cache.size(2), capacity = k_cache.size(1);
  TORCH_CHECK(n_heads >= 1 && n_heads % n_kv == 0 && n_heads / n_kv <= 16, "attention_decode_qkv: query heads per ",
              "KV head must divide evenly and be at most 16, got ", n_heads, "/", n_kv);
  TORCH_CHECK(qkv.size(1) == (n_heads + 2 * n_kv) * d, "attention_decode_qkv: qkv must have (", n_heads, " + 2 x ",
              n_kv, ") x ", d, " columns, got ", qkv.size(1));
  for (const auto* w : {&q_norm, &k_norm})
    TORCH_CHECK(w->is_cuda() && w->dim() == 1 && w->size(0) == d && w->scalar_type() == qkv.scalar_type() &&
                    w->is_contiguous(),
                "attention_decode_qkv: q_norm and k_norm must be contiguous [", d, "] in qkv's dtype, got ",
                w->sizes());
  for (const auto* table : {&cos, &sin})
    TORCH_CHECK(table->is_cuda() && table->dim() == 2 && table->size(0) >= capacity && table->size(1) == d &&
                    table->scalar_type() == qkv.scalar_type() && table->is_contiguous(),
                "attention_decode_qkv: cos and sin must be contiguous [>= ", capacity, ", ", d,
                "] in qkv's dtype (a row per cache position), got ", table->sizes());
  TORCH_CHECK(lengths.is_cuda() && lengths.scalar_type() == at::kInt && lengths.numel() == batch &&
                  lengths.is_contiguous(),
              "attention_decode_qkv: lengths must be a contiguous int32 CUDA tensor of B entries");
  const c10::cuda::CUDAGuard guard(qkv.device());
  DecodeParams p = cache_params(k_cache, v_cache, lengths, n_heads, scale);
  p.q = qkv.data_ptr(), p.sq = {qkv.stride(0), d};
  p.q_norm = q_norm.data_ptr(), p.k_norm = k_norm.data_ptr(), p.cos = cos.data_ptr(), p.sin = sin.data_ptr();
  p.eps = static_cast<float>(eps);
  return launch_decode<true>(p, qkv.scalar_type(), batch, n_kv, d, qkv).view({batch, n_heads * d});
}

int64_t attention_decode_splits_cuda(int64_t batch, int64_t n_kv_heads, int64_t capacity, int64_t device) {
  TORCH_CHECK(batch >= 1 && n_kv_heads >= 1 && capacity >= 1, "attention_decode_splits: sizes must be >= 1");
  return decode_split_plan(batch, n_kv_heads, capacity, static_cast<int>(device)).first;
}
