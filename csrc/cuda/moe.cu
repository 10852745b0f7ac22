// Mixture-of-experts: the expert dispatch (moe_experts): route, grouped GEMM over the selected experts only,
// weighted combine. The router's top-k (moe_route, one launch) is moe_router.cu's.
//
// Contract: qwen3mini/ops/reference.py (moe_route, moe_experts). The dispatch is four launches, none needing a
// host sync (so a decode step that contains them can be captured in a CUDA graph):
//
//   1. route     one block: count the (token, slot) pairs per expert, prefix-sum the counts into row offsets and
//                into tile offsets (each expert's rows padded up to whole BLOCK_M tiles), and scatter the pair
//                ids so that each expert's rows are contiguous ("sorted" order).
//   2. gate_up   grouped GEMM  h[r] = silu(x[tok(r)] @ Wg_e^T) * (x[tok(r)] @ Wu_e^T)  over sorted rows r. A
//                block owns one BLOCK_M tile of one expert (found by binary search in the tile offsets) and a
//                slice of output columns; the gate and up rows of that slice are interleaved in one B tile so
//                both halves of SwiGLU end up in the same thread's registers. x rows are gathered on load.
//   3. down      grouped GEMM  y[r] = h[r] @ Wd_e^T.
//   4. combine   out[t] = sum over t's k slots, in ascending expert id, of w * y[pos(t, slot)], rounded to the
//                activation dtype at each step exactly as the reference (HF) does.
//
// Experts with no rows own no tiles and their weights are never read. The grid is sized by an upper bound on
// the tile count (pairs / BLOCK_M + min(E, pairs)); surplus blocks exit at once. Small batches (decode) use
// 16 x 32 tiles (two warps, six cp.async stages) so that the weight stream, not padding, dominates and there are
// several blocks per SM to balance; big ones use 128 x 128 tiles (eight warps, three stages).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>

#include <climits>
#include <type_traits>

#include "common.cuh"

namespace q3 {

// ============================================================================================== 1. routing
// Inclusive prefix sum over the block (blockDim.x a multiple of 32, at most 1024): warp scans, then a scan of the
// warp totals.
__device__ __forceinline__ int block_inclusive_scan(int v, int* warp_totals) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int o = 1; o < 32; o <<= 1) {
    const int u = __shfl_up_sync(0xffffffff, v, o);
    if (lane >= o) v += u;
  }
  if (lane == 31) warp_totals[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int t = lane < blockDim.x / 32 ? warp_totals[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int u = __shfl_up_sync(0xffffffff, t, o);
      if (lane >= o) t += u;
    }
    warp_totals[lane] = t;
  }
  __syncthreads();
  const int result = v + (warp > 0 ? warp_totals[warp - 1] : 0);
  __syncthreads();  // warp_totals may be reused by the caller's next scan
  return result;
}

__global__ void __launch_bounds__(1024) moe_route_kernel(const int64_t* __restrict__ ids, int pairs, int n_experts,
                                                         int block_m, int* row_off, int* tile_off,
                                                         int* sorted_pair, int* pair_pos) {
  __shared__ int counts[1024], cursor[1024], warp_totals[32];
  const int e = threadIdx.x;  // thread e owns expert e (n_experts <= blockDim.x = 1024)
  counts[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
    const int64_t id = ids[i];
    if (id >= 0 && id < n_experts) atomicAdd(&counts[id], 1);
  }
  __syncthreads();
  const int count = e < n_experts ? counts[e] : 0, tiles = (count + block_m - 1) / block_m;
  const int rows_end = block_inclusive_scan(count, warp_totals);
  const int tiles_end = block_inclusive_scan(tiles, warp_totals);
  if (e < n_experts) {
    row_off[e] = rows_end - count;
    tile_off[e] = tiles_end - tiles;
    cursor[e] = rows_end - count;
  }
  if (e == n_experts - 1) {
    row_off[n_experts] = rows_end;
    tile_off[n_experts] = tiles_end;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < pairs; i += blockDim.x) {
    const int64_t id = ids[i];
    int pos = -1;  // an out-of-range id is dropped (the reference would raise; see ops/cuda.py)
    if (id >= 0 && id < n_experts) {
      pos = atomicAdd(&cursor[id], 1);
      sorted_pair[pos] = i;
    }
    pair_pos[i] = pos;
  }
}

// ============================================================================================ 2-3. grouped GEMM
// C[r, n] = sum_k A[r, k] * W_e[n, k] for the rows r of one expert tile. A rows come from x (gathered through
// the sorted pair ids, GATE_UP) or from h (contiguous, DOWN).
enum class Epilogue { kSwiGLU, kStore };

struct GemmParams {
  const void* a;      // x [N, K] (gate_up) or h [pairs, K] (down)
  const void* w;      // [E, n_w, K]
  void* c;            // h [pairs, I] (gate_up) or y [pairs, H] (down)
  const int *row_off, *tile_off, *sorted_pair;
  int n_experts, top_k, K, n_out;  // n_out: output columns (I for gate_up, H for down)
  int64_t w_expert_stride;         // n_w * K
};

template <typename T, int BM, int BN, int WARPS_M, int WARPS_N, int STAGES, Epilogue EPI>
__global__ void __launch_bounds__(WARPS_M* WARPS_N * 32) moe_gemm_kernel(const GemmParams p) {
  constexpr int BK = 64, THREADS = WARPS_M * WARPS_N * 32;
  constexpr int WM = BM / WARPS_M, WN = BN / WARPS_N, MT = WM / 16, NT = WN / 8;
  static_assert(WM % 16 == 0 && WN % 16 == 0, "warp tile must be whole 16x16 MMA pairs");
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* as = reinterpret_cast<T*>(smem_raw);  // STAGES x BM x BK
  T* bs = as + STAGES * BM * BK;           // STAGES x BN x BK
  __shared__ int64_t a_row[BM];            // element offset of each A row (-1: padding)
  __shared__ int64_t b_row[BN];            // element offset of each W row within the expert (-1: past the end)

  // ---- which expert tile is this block?
  const int tile = blockIdx.x;
  if (tile >= p.tile_off[p.n_experts]) return;
  int lo = 0, hi = p.n_experts - 1;  // largest e with tile_off[e] <= tile
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (p.tile_off[mid] <= tile) lo = mid; else hi = mid - 1;
  }
  const int e = lo;
  const int r0 = p.row_off[e] + (tile - p.tile_off[e]) * BM;
  const int rows = min(BM, p.row_off[e + 1] - r0);
  const int n0 = blockIdx.y * (EPI == Epilogue::kSwiGLU ? BN / 2 : BN);  // first output column

  for (int i = threadIdx.x; i < BM; i += THREADS) {
    int64_t off = -1;
    if (i < rows) {
      off = EPI == Epilogue::kSwiGLU ? (int64_t)(p.sorted_pair[r0 + i] / p.top_k) * p.K : (int64_t)(r0 + i) * p.K;
    }
    a_row[i] = off;
  }
  for (int i = threadIdx.x; i < BN; i += THREADS) {
    int col;  // output column computed by tile row i; gate_up interleaves 8 gate rows, 8 up rows, ...
    int64_t w_row;
    if (EPI == Epilogue::kSwiGLU) {
      col = n0 + (i / 16) * 8 + i % 8;
      w_row = col + ((i / 8) % 2) * p.n_out;
    } else {
      col = n0 + i;
      w_row = col;
    }
    b_row[i] = col < p.n_out ? w_row * p.K : -1;
  }
  __syncthreads();

  const T* ag = static_cast<const T*>(p.a);
  const T* wg = static_cast<const T*>(p.w) + (int64_t)e * p.w_expert_stride;
  auto load_stage = [&](int stage, int k0) {
    T* a_dst = as + stage * BM * BK;
    T* b_dst = bs + stage * BN * BK;
    for (int i = threadIdx.x; i < BM * BK / 8; i += THREADS) {
      const int r = i / (BK / 8), c = (i % (BK / 8)) * 8;
      const bool ok = a_row[r] >= 0 && k0 + c < p.K;
      cp_async_16(a_dst + swz<BK>(r, c), ag + (ok ? a_row[r] + k0 + c : 0), ok);
    }
    for (int i = threadIdx.x; i < BN * BK / 8; i += THREADS) {
      const int r = i / (BK / 8), c = (i % (BK / 8)) * 8;
      const bool ok = b_row[r] >= 0 && k0 + c < p.K;
      cp_async_16(b_dst + swz<BK>(r, c), wg + (ok ? b_row[r] + k0 + c : 0), ok);
    }
  };

  const int k_tiles = (p.K + BK - 1) / BK;
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (s < k_tiles) load_stage(s, s * BK);
    cp_async_commit();
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, mi = lane / 8;
  const int wm = warp / WARPS_N, wn = warp % WARPS_N;
  float acc[MT][NT][4] = {};
  for (int kt = 0; kt < k_tiles; ++kt) {
    cp_async_wait<STAGES - 2>();
    __syncthreads();  // tile kt is visible to all; the stage read at kt - 1 is free again
    const int next = kt + STAGES - 1;
    if (next < k_tiles) load_stage(next % STAGES, next * BK);
    cp_async_commit();

    const T* a_s = as + (kt % STAGES) * BM * BK;
    const T* b_s = bs + (kt % STAGES) * BN * BK;
#pragma unroll
    for (int ks = 0; ks < BK / 16; ++ks) {
      uint32_t af[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        ldmatrix_x4(af[mt], a_s + swz<BK>(wm * WM + mt * 16 + lane % 16, ks * 16 + (lane / 16) * 8));
#pragma unroll
      for (int np = 0; np < NT / 2; ++np) {
        uint32_t b[4];
        ldmatrix_x4(b, b_s + swz<BK>(wn * WN + np * 16 + lane % 8 + (mi / 2) * 8, ks * 16 + (mi % 2) * 8));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          mma_16816<T>(acc[mt][2 * np], af[mt], b[0], b[1]);
          mma_16816<T>(acc[mt][2 * np + 1], af[mt], b[2], b[3]);
        }
      }
    }
  }
  cp_async_wait<0>();

  // ---- epilogue: each thread holds rows (g, g + 8) x columns (2t, 2t + 1) of every 16 x 8 tile
  const int g = lane / 4, t = lane % 4;
  T* cg = static_cast<T*>(p.c);
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      const int r = wm * WM + mt * 16 + g + half * 8;
      if (r >= rows) continue;
      T* dst = cg + (int64_t)(r0 + r) * p.n_out;
      if constexpr (EPI == Epilogue::kSwiGLU) {
#pragma unroll
        for (int np = 0; np < NT / 2; ++np) {  // tile 2np holds gate columns, 2np + 1 the matching up columns
          const int col = n0 + (wn * WN + np * 16) / 2 + 2 * t;
          if (col >= p.n_out) continue;
          float v[2];
#pragma unroll
          for (int j = 0; j < 2; ++j) {  // HF: gate_up rounded, silu rounded, product rounded
            const float gate = Traits<T>::to_float(Traits<T>::from_float(acc[mt][2 * np][2 * half + j]));
            const float up = Traits<T>::to_float(Traits<T>::from_float(acc[mt][2 * np + 1][2 * half + j]));
            const float act = Traits<T>::to_float(Traits<T>::from_float(gate / (1.f + __expf(-gate))));
            v[j] = act * up;
          }
          *reinterpret_cast<uint32_t*>(dst + col) = Traits<T>::pack(v[0], v[1]);
        }
      } else {
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          const int col = n0 + wn * WN + nt * 8 + 2 * t;
          if (col >= p.n_out) continue;
          *reinterpret_cast<uint32_t*>(dst + col) =
              Traits<T>::pack(acc[mt][nt][2 * half], acc[mt][nt][2 * half + 1]);
        }
      }
    }
  }
}

// ============================================================================================== 4. combine
// One block per token; each thread owns 8 consecutive hidden columns (one 16-byte vector). The token's slots are
// first put in ascending expert order in shared memory; then a thread loads the y vectors of up to
// COMBINE_BATCH slots before using any (independent loads in flight instead of a chain of k round trips).
constexpr int COMBINE_BATCH = 8;

template <typename T>
__global__ void moe_combine_kernel(const T* __restrict__ y, const int64_t* __restrict__ ids,
                                   const T* __restrict__ weights, const int* __restrict__ pair_pos, T* out,
                                   int top_k, int hidden) {
  __shared__ int64_t s_id[MAX_TOP_K];
  __shared__ int s_slot_pos[MAX_TOP_K], s_pos[MAX_TOP_K];
  __shared__ float s_slot_w[MAX_TOP_K], s_w[MAX_TOP_K];
  const int64_t tok = blockIdx.x;
  for (int j = threadIdx.x; j < top_k; j += blockDim.x) {  // one parallel round trip for the token's slots
    s_id[j] = ids[tok * top_k + j];
    s_slot_pos[j] = pair_pos[tok * top_k + j];
    s_slot_w[j] = Traits<T>::to_float(weights[tok * top_k + j]);
  }
  __syncthreads();
  if (threadIdx.x == 0) {  // slots in ascending expert id (ids are distinct); dropped slots (pos < 0) skipped
    int64_t prev = -1;
    int n = 0;
    for (int step = 0; step < top_k; ++step) {
      int best = -1;
      for (int j = 0; j < top_k; ++j)
        if (s_id[j] > prev && (best < 0 || s_id[j] < s_id[best])) best = j;
      if (best < 0) break;
      prev = s_id[best];
      if (s_slot_pos[best] < 0) continue;
      s_pos[n] = s_slot_pos[best];
      s_w[n++] = s_slot_w[best];
    }
    for (int j = n; j < top_k; ++j) s_pos[j] = -1;
  }
  __syncthreads();
  for (int c = threadIdx.x * 8; c < hidden; c += blockDim.x * 8) {
    float acc[8] = {};
    for (int s0 = 0; s0 < top_k; s0 += COMBINE_BATCH) {
      uint4 raw[COMBINE_BATCH];
#pragma unroll
      for (int j = 0; j < COMBINE_BATCH; ++j) {
        const int pos = s0 + j < top_k ? s_pos[s0 + j] : -1;
        raw[j] = pos >= 0 ? *reinterpret_cast<const uint4*>(y + (int64_t)pos * hidden + c) : make_uint4(0, 0, 0, 0);
      }
#pragma unroll
      for (int j = 0; j < COMBINE_BATCH; ++j) {
        if (s0 + j >= top_k || s_pos[s0 + j] < 0) break;
        const T* yv = reinterpret_cast<const T*>(&raw[j]);
        const float w = s_w[s0 + j];
#pragma unroll
        for (int i = 0; i < 8; ++i) {  // HF: (y * w) rounded, then the running sum rounded
          const float prod = Traits<T>::to_float(Traits<T>::from_float(Traits<T>::to_float(yv[i]) * w));
          acc[i] = Traits<T>::to_float(Traits<T>::from_float(acc[i] + prod));
        }
      }
    }
    uint4 packed;
    uint32_t* pw = reinterpret_cast<uint32_t*>(&packed);
#pragma unroll
    for (int i = 0; i < 4; ++i) pw[i] = Traits<T>::pack(acc[2 * i], acc[2 * i + 1]);
    *reinterpret_cast<uint4*>(out + tok * hidden + c) = packed;
  }
}
}  // namespace q3

// ================================================================================================ host side
namespace {
using namespace q3;

template <typename T, int BM, int BN, int WM, int WN, int STAGES>
void run_moe(const torch::Tensor& x, const torch::Tensor& ids, const torch::Tensor& weights,
             const torch::Tensor& w_gate_up, const torch::Tensor& w_down, torch::Tensor& out) {
  const int n = x.size(0), hidden = x.size(1), top_k = ids.size(1), n_experts = w_gate_up.size(0);
  const int inter = w_down.size(2), pairs = n * top_k;
  auto stream = c10::cuda::getCurrentCUDAStream();
  auto i32 = x.options().dtype(at::kInt);
  auto meta = torch::empty({2 * (n_experts + 1) + 2 * pairs}, i32);
  int* row_off = meta.data_ptr<int>();
  int* tile_off = row_off + n_experts + 1;
  int* sorted_pair = tile_off + n_experts + 1;
  int* pair_pos = sorted_pair + pairs;
  moe_route_kernel<<<1, 1024, 0, stream>>>(ids.data_ptr<int64_t>(), pairs, n_experts, BM,
                                                                    row_off, tile_off, sorted_pair, pair_pos);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  auto h = torch::empty({pairs, inter}, x.options());
  auto y = torch::empty({pairs, hidden}, x.options());
  const int max_tiles = (pairs + BM - 1) / BM + std::min(n_experts, pairs);
  constexpr int THREADS = WM * WN * 32, BK = 64;
  const int smem = STAGES * (BM + BN) * BK * sizeof(T);

  GemmParams up{x.data_ptr(), w_gate_up.data_ptr(), h.data_ptr(), row_off, tile_off, sorted_pair,
                n_experts, top_k, hidden, inter, (int64_t)2 * inter * hidden};
  auto k_up = moe_gemm_kernel<T, BM, BN, WM, WN, STAGES, Epilogue::kSwiGLU>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(k_up, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  k_up<<<dim3(max_tiles, (inter + BN / 2 - 1) / (BN / 2)), THREADS, smem, stream>>>(up);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  GemmParams down{h.data_ptr(), w_down.data_ptr(), y.data_ptr(), row_off, tile_off, sorted_pair,
                  n_experts, top_k, inter, hidden, (int64_t)hidden * inter};
  auto k_down = moe_gemm_kernel<T, BM, BN, WM, WN, STAGES, Epilogue::kStore>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(k_down, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  k_down<<<dim3(max_tiles, (hidden + BN - 1) / BN), THREADS, smem, stream>>>(down);
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  moe_combine_kernel<T><<<n, std::min(256, (hidden / 8 + 31) / 32 * 32), 0, stream>>>(
      static_cast<const T*>(y.data_ptr()), ids.data_ptr<int64_t>(), static_cast<const T*>(weights.data_ptr()),
      pair_pos, static_cast<T*>(out.data_ptr()), top_k, hidden);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void run_moe_sized(const torch::Tensor& x, const torch::Tensor& ids, const torch::Tensor& weights,
                   const torch::Tensor& w_gate_up, const torch::Tensor& w_down, torch::Tensor& out) {
  const int64_t pairs = x.size(0) * ids.size(1);
  const int64_t rows_per_expert = pairs / std::min<int64_t>(pairs, w_gate_up.size(0));
  if (rows_per_expert <= 32)  // decode-like: a weight stream with a handful of rows each
    run_moe<T, 16, 32, 1, 2, 6>(x, ids, weights, w_gate_up, w_down, out);
  else
    run_moe<T, 128, 128, 2, 4, 3>(x, ids, weights, w_gate_up, w_down, out);
}
}  // namespace

torch::Tensor moe_experts_cuda(torch::Tensor x, torch::Tensor topk_ids, torch::Tensor topk_weights,
                               torch::Tensor w_gate_up, torch::Tensor w_down) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2, "moe_experts: x must be a 2-D CUDA tensor [N, H], got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf,
              "moe_experts: x must be bf16 or fp16, got ", x.scalar_type());
  TORCH_CHECK(topk_ids.scalar_type() == at::kLong && topk_ids.dim() == 2 && topk_ids.size(0) == x.size(0),
              "moe_experts: topk_ids must be int64 [N, k], got ", topk_ids.scalar_type(), " ", topk_ids.sizes());
  TORCH_CHECK(topk_weights.sizes() == topk_ids.sizes() && topk_weights.scalar_type() == x.scalar_type(),
              "moe_experts: topk_weights must be [N, k] in x.dtype");
  TORCH_CHECK(w_gate_up.dim() == 3 && w_down.dim() == 3 && w_gate_up.size(0) == w_down.size(0) &&
                  w_gate_up.size(2) == x.size(1) && w_gate_up.size(1) == 2 * w_down.size(2) &&
                  w_down.size(1) == x.size(1),
              "moe_experts: expected w_gate_up [E, 2I, H] and w_down [E, H, I] with H = ", x.size(1), ", got ",
              w_gate_up.sizes(), " and ", w_down.sizes());
  TORCH_CHECK(w_gate_up.scalar_type() == x.scalar_type() && w_down.scalar_type() == x.scalar_type(),
              "moe_experts: weights must be in x.dtype");
  TORCH_CHECK(x.size(1) % 8 == 0 && w_down.size(2) % 8 == 0,
              "moe_experts: hidden and expert sizes must be multiples of 8 (16-byte rows)");
  TORCH_CHECK(w_gate_up.size(0) <= 1024 && topk_ids.size(1) <= q3::MAX_TOP_K,
              "moe_experts: at most 1024 experts and ", q3::MAX_TOP_K, " experts per token");
  const c10::cuda::CUDAGuard guard(x.device());
  auto xc = x.contiguous(), ids = topk_ids.contiguous(), wts = topk_weights.contiguous();
  auto wgu = w_gate_up.contiguous(), wd = w_down.contiguous();
  auto out = torch::empty_like(xc);
  if (x.size(0) == 0 || topk_ids.size(1) == 0) return out.zero_();
  if (x.scalar_type() == at::kBFloat16) run_moe_sized<__nv_bfloat16>(xc, ids, wts, wgu, wd, out);
  else run_moe_sized<__half>(xc, ids, wts, wgu, wd, out);
  return out;
}
