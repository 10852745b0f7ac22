// The fused decode step's projections (decode_step.cu): GEMV kernels with an RMSNorm prologue and a store,
// residual or SiLU * up epilogue, greedy decoding's argmax inside the LM head, and their launchers. The
// matrix-vector core (one warp per output row) is gemv.cuh's, shared with the linear op's batch-1 GEMV.
//
// Norm prologues: every block recomputes the RMSNorm of the few hidden rows (2 KB each, from L2) into shared
// memory, instead of a separate kernel writing them; each thread scales the chunks it loaded, so one barrier (for
// the sum of squares) is all the norm costs. Residual epilogues: the warp that owns output column c updates
// residual[c] in place, having read residual[c] right after its griddepcontrol.wait rather than after its dot
// product (where that read's latency was on the critical path); the next kernel reads the whole row only after
// its own wait, i.e. after this grid finished. Rounding follows the reference exactly (projection output rounded
// to the dtype, then the sum rounded, then the norm's fp32 statistics of the rounded sum).
//
// GEMV bandwidth: one warp per output row (lanes across K, 16-byte loads, a whole row of K <= 1024 per lane in
// registers). Where a batch-1 projection fits (all four of a Qwen3-0.6B layer), every row of the kernel is loaded
// into registers before griddepcontrol.wait, by one block per SM at most (step_gemv_resident_kernel), so the
// next kernel's blocks fit beside it and load theirs early too. Otherwise (the LM head, larger models, batches)
// blocks loop over rows (grid = one wave), loading the next row before using the current one, the first two
// before the wait. Every kernel of the step asks for the largest shared-memory carveout: the attention kernel needs
// 200 KB, and (our reading of the measurement) an SM whose L1/shared split must change between kernels waits for
// its blocks to drain first (the default split was slower). Tried and not kept (bench/RESULTS.md, "cuda"): an
// L2 prefetch of the next projections' weights (cp.async.bulk.prefetch.L2), staging the rows in shared memory
// (with cp.async, and with the bulk-copy engine), and (batch 1) the input row read into registers by every warp,
// with a warp-only norm, instead of through shared memory (for o/down alone and for all four); all were slower.

#pragma once
#include <c10/cuda/CUDAException.h>

#include <algorithm>
#include <map>
#include <utility>

#include "gemv.cuh"

namespace q3 {

constexpr int DG_WARPS = 8, DG_THREADS = DG_WARPS * 32;  // (4 warps were slower)
enum Epilogue { kStore = 0, kResidual = 1, kSwiGLU = 2 };

struct GemvArgs {
  const void* w;          // [n, k] (kSwiGLU: [2n, k], gate rows first)
  const void* x;          // input rows [batch, k]; with norm_w set: the residual stream to normalise
  const void* norm_w;     // RMSNorm weight [k], or nullptr (input used as is)
  const void* embed;      // set in layer 0: input rows are embed[tokens[b]], also copied into `res`
  const int64_t* tokens;  // [batch]
  void* res;              // residual stream [batch, n] (kResidual), or the target of the embedding copy
  void* y;                // output [batch, n] (kStore, kSwiGLU)
  int* lengths;           // set for the last kernel of a step: lengths[b] += 1
  int64_t* next_tokens;   // set on the LM head for greedy decoding: next_tokens[b] = argmax of logits row b
  unsigned long long* best_key;  // with it: [batch], each row's best (value, column) key; zero between launches
  int* blocks_done;              // with it: the blocks that offered theirs; zero between launches
  int n, k, batch, vocab;
  float eps;
};

// The RMSNorm weight [k] into shared memory `ws` by cp.async, where the kernel has one. It is constant, so the
// GEMV kernels issue this before griddepcontrol.wait; gemv_stage_x waits for it.
template <typename T>
__device__ __forceinline__ void gemv_copy_norm_weight(T* ws, const GemvArgs& a) {
  if (a.norm_w == nullptr) return;
  for (int c = threadIdx.x * 8; c < a.k; c += DG_THREADS * 8)
    cp_async_16(ws + c, static_cast<const T*>(a.norm_w) + c, true);
  cp_async_commit();
}

// The input rows into shared memory xs [batch, k]; with a norm weight, RMSNorm'd exactly as reference.rms_norm:
// fp32 statistics, the normalised value rounded to T, then the weight product rounded to T. The norm weight is
// already on its way into shared memory `ws` [k] (gemv_copy_norm_weight, before griddepcontrol.wait).
template <typename T, int MAXB>
__device__ __forceinline__ void gemv_stage_x(T* xs, const T* ws, const GemvArgs& a) {
  const int k = a.k, batch = a.batch;
  if (a.norm_w == nullptr) {  // rows laid out as in memory: a plain copy, up to 4 loads in flight per thread
    constexpr int INFLIGHT = 4;
    const int vecs = batch * k / 8;
    const uint4* src = static_cast<const uint4*>(a.x);
    for (int i0 = threadIdx.x; i0 < vecs; i0 += INFLIGHT * blockDim.x) {
      uint4 v[INFLIGHT];
#pragma unroll
      for (int j = 0; j < INFLIGHT; ++j)
        if (i0 + j * blockDim.x < vecs) v[j] = __ldcg(src + i0 + j * blockDim.x);
#pragma unroll
      for (int j = 0; j < INFLIGHT; ++j)
        if (i0 + j * blockDim.x < vecs) reinterpret_cast<uint4*>(xs)[i0 + j * blockDim.x] = v[j];
    }
    return;
  }
  // Each thread squares, normalises and stores the same 16-byte chunks (its own: no barrier between the copy into
  // shared memory and the scaling), so one barrier, for the warps' partial sums, is all the norm needs.
  __shared__ float partial[DG_WARPS][MAXB];
  float sq[MAXB];
#pragma unroll
  for (int b = 0; b < MAXB; ++b) {
    sq[b] = 0.f;
    if (b >= batch) continue;
    const T* src = static_cast<const T*>(a.x) + (int64_t)b * k;
    if (a.embed != nullptr) {  // token ids outside the vocabulary are clamped (a check would need a host sync)
      const int64_t token = a.tokens[b];
      const int64_t id = token < 0 ? 0 : token >= a.vocab ? a.vocab - 1 : token;
      src = static_cast<const T*>(a.embed) + id * k;
    }
    for (int c = threadIdx.x * 8; c < k; c += blockDim.x * 8) {
      const uint4 raw = *reinterpret_cast<const uint4*>(src + c);
      *reinterpret_cast<uint4*>(xs + b * k + c) = raw;
      if (a.embed != nullptr && blockIdx.x == 0)  // the residual stream starts as the embedding
        *reinterpret_cast<uint4*>(static_cast<T*>(a.res) + (int64_t)b * k + c) = raw;
      const T* v = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int i = 0; i < 8; ++i) sq[b] += Traits<T>::to_float(v[i]) * Traits<T>::to_float(v[i]);
    }
  }
#pragma unroll
  for (int b = 0; b < MAXB; ++b) {
    if (b >= batch) break;
    sq[b] = warp_sum(sq[b]);
    if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32][b] = sq[b];
  }
  cp_async_wait<0>();
  __syncthreads();
#pragma unroll
  for (int b = 0; b < MAXB; ++b) {
    if (b >= batch) break;
    float total = 0.f;
#pragma unroll
    for (int w = 0; w < DG_WARPS; ++w) total += partial[w][b];
    const float inv_rms = rsqrtf(total / k + a.eps);
    for (int c = threadIdx.x * 8; c < k; c += blockDim.x * 8) {
      uint4 raw = *reinterpret_cast<const uint4*>(xs + b * k + c);
      rms_scale8<T>(raw, *reinterpret_cast<const uint4*>(ws + c), inv_rms);
      *reinterpret_cast<uint4*>(xs + b * k + c) = raw;
    }
  }
}

// Sum the lanes' partial dot products; lane b writes batch row b. kResidual: `residual` holds the entries of the
// residual stream being updated, where the caller read them ahead; else they are read here.
template <typename T, int R, int MAXB, int MODE>
__device__ __forceinline__ void gemv_epilogue(float (&acc)[R][MAXB], const GemvArgs& a, int task, int lane,
                                              const T* residual = nullptr) {
  auto round_t = [](float v) { return Traits<T>::to_float(Traits<T>::from_float(v)); };
#pragma unroll
  for (int b = 0; b < MAXB; ++b) {
    if (b >= a.batch) break;
#pragma unroll
    for (int r = 0; r < R; ++r)
      acc[r][b] = warp_sum(acc[r][b]);
    if (lane != b) continue;
    const int64_t at = (int64_t)b * a.n + task;
    if constexpr (MODE == kStore) {
      static_cast<T*>(a.y)[at] = Traits<T>::from_float(acc[0][b]);
    } else if constexpr (MODE == kResidual) {  // add_rms_norm's sum: round(residual + round(projection))
      T* res = static_cast<T*>(a.res);
      const T before = residual != nullptr ? residual[b] : res[at];
      res[at] = Traits<T>::from_float(Traits<T>::to_float(before) + round_t(acc[0][b]));
    } else {  // silu_mul: silu(gate) rounded, times up, rounded (gate and up rounded as the projection's output)
      const float g = round_t(acc[0][b]), u = round_t(acc[1][b]);
      static_cast<T*>(a.y)[at] = Traits<T>::from_float(round_t(g / (1.f + __expf(-g))) * u);
    }
  }
}

// Greedy decoding inside the LM head (GemvArgs::next_tokens): the argmax of each logits row as torch.argmax
// computes it on the stored logits, i.e. on the values rounded to T: the first column of the largest value, a NaN
// counting as the largest. A (value, column) pair is packed into one 64-bit key that orders as that rule does,
// so the search is a max: over each lane's columns, then the block's warps, then the blocks (one atomicMax per
// row and block); the last block to finish (a counter, as for the attention splits) turns the key back into a
// column and resets it. It spares a greedy loop the argmax and copy kernels it would run after the step.
__device__ __forceinline__ unsigned long long argmax_key(float value, int column) {
  unsigned bits = __float_as_uint(value);
  if ((bits & 0x7fffffffu) == 0) bits = 0;  // -0 ties with +0, as the comparison of floats has it
  if ((bits & 0x7fffffffu) > 0x7f800000u) bits = 0xffffffffu;  // any NaN: above everything
  else bits = bits & 0x80000000u ? ~bits : bits | 0x80000000u;  // order the floats as unsigned integers
  return static_cast<unsigned long long>(bits) << 32 | ~static_cast<unsigned>(column);  // lower column: larger
}

template <int MAXB>
__device__ __forceinline__ void gemv_argmax_finish(unsigned long long lane_best, const GemvArgs& a) {
  __shared__ unsigned long long warp_best[DG_WARPS][MAXB];
  __shared__ bool last_block;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane < a.batch) warp_best[warp][lane] = lane_best;  // lane b holds row b's best of its warp
  __syncthreads();
  if (threadIdx.x < a.batch) {
    unsigned long long best = 0;
    for (int w = 0; w < DG_WARPS; ++w) best = max(best, warp_best[w][threadIdx.x]);
    atomicMax(a.best_key + threadIdx.x, best);
  }
  __threadfence();  // this block's offers land before it counts itself done
  __syncthreads();
  if (threadIdx.x == 0) last_block = atomicAdd(a.blocks_done, 1) == gridDim.x - 1;
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  if (threadIdx.x < a.batch)
    a.next_tokens[threadIdx.x] = ~static_cast<unsigned>(atomicExch(a.best_key + threadIdx.x, 0ull));
  if (threadIdx.x == 0) *a.blocks_done = 0;
}

template <typename T, int U, int MAXB, int MODE>
__global__ void __launch_bounds__(DG_THREADS) step_gemv_kernel(const GemvArgs a) {
  constexpr int R = MODE == kSwiGLU ? 2 : 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* xs = reinterpret_cast<T*>(smem_raw);  // [batch, k]
  T* ws = xs + a.batch * a.k;               // [k]: the norm weight, when there is one
  const int lane = threadIdx.x % 32, stride = gridDim.x * DG_WARPS;
  const int rounds = (a.k + 256 * U - 1) / (256 * U);
  const T* w = static_cast<const T*>(a.w);
  int task = blockIdx.x * DG_WARPS + threadIdx.x / 32, round = 0;

  pdl_launch_dependents();
  // Software pipeline over (task, round) items, loads one item ahead of the FMAs. The first two items' weights
  // are loaded before griddepcontrol.wait (weights are never written): while the previous kernel still runs.
  auto advance = [&](int& t, int& rd) {
    if (++rd == rounds) rd = 0, t += stride;
  };
  uint4 cur[R][U], nxt[R][U];
  int next_task = task, next_round = round;
  advance(next_task, next_round);
  if (task < a.n) gemv_load<T, U, R>(cur, w, task, a.n, a.k, round, lane);
  if (next_task < a.n) gemv_load<T, U, R>(nxt, w, next_task, a.n, a.k, next_round, lane);
  gemv_copy_norm_weight<T>(ws, a);
  pdl_wait();  // the input rows are the last kernel's output
  gemv_stage_x<T, MAXB>(xs, ws, a);
  __syncthreads();

  float acc[R][MAXB];
#pragma unroll
  for (int r = 0; r < R; ++r)
#pragma unroll
    for (int b = 0; b < MAXB; ++b) acc[r][b] = 0.f;
  unsigned long long greedy = 0;  // lane b: the best key of row b among this warp's columns
  while (task < a.n) {
    gemv_fma<T, U, R, MAXB>(acc, cur, xs, a.k, a.batch, round, lane);
    if (round == rounds - 1) {
      gemv_epilogue<T, R, MAXB, MODE>(acc, a, task, lane);
      if constexpr (MODE == kStore) {
        if (a.next_tokens != nullptr) {
#pragma unroll
          for (int b = 0; b < MAXB; ++b) {  // (the epilogue's reduction left every lane every row's sum)
            const float logit = Traits<T>::to_float(Traits<T>::from_float(acc[0][b]));
            if (b == lane && b < a.batch) greedy = max(greedy, argmax_key(logit, task));
          }
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r)
#pragma unroll
        for (int b = 0; b < MAXB; ++b) acc[r][b] = 0.f;
    }
    task = next_task, round = next_round;
    if (task >= a.n) break;
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int u = 0; u < U; ++u) cur[r][u] = nxt[r][u];
    advance(next_task, next_round);
    if (next_task < a.n) gemv_load<T, U, R>(nxt, w, next_task, a.n, a.k, next_round, lane);  // in flight during FMAs
  }
  if constexpr (MODE == kStore)
    if (a.next_tokens != nullptr) gemv_argmax_finish<MAXB>(greedy, a);
  if (a.lengths != nullptr && blockIdx.x == 0 && threadIdx.x < a.batch) a.lengths[threadIdx.x] += 1;
}

// Batch 1, every weight row of the kernel in registers before griddepcontrol.wait: TASKS tasks per warp, one
// block per SM at most, so that the grid needs few registers per SM and the next kernel's blocks fit beside it
// and load their own rows early as well (with as many blocks per SM as fit, the gate_up grid filled the
// register file and the down projection's blocks only started, and loaded, after it).
template <typename T, int V, int MODE, int TASKS>
__global__ void __launch_bounds__(DG_THREADS, 2) step_gemv_resident_kernel(const GemvArgs a) {
  constexpr int R = MODE == kSwiGLU ? 2 : 1;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  T* xs = reinterpret_cast<T*>(smem_raw);  // [k]
  T* ws = xs + a.k;                         // [k]: the norm weight, when there is one
  const int lane = threadIdx.x % 32, warp = blockIdx.x * DG_WARPS + threadIdx.x / 32;
  const int stride = gridDim.x * DG_WARPS;
  const T* w = static_cast<const T*>(a.w);
  pdl_launch_dependents();
  uint4 rows[TASKS][R][V];
#pragma unroll
  for (int t = 0; t < TASKS; ++t)
    if (warp + t * stride < a.n) gemv_load<T, V, R>(rows[t], w, warp + t * stride, a.n, a.k, 0, lane);
  gemv_copy_norm_weight<T>(ws, a);
  pdl_wait();  // the input row is the last kernel's output
  // kResidual: the residual entries this warp will update, read now rather than after the dot products, where the
  // read's latency would add to the step's critical path. (Final now: every earlier kernel has completed.)
  T residual[TASKS][1];
  if constexpr (MODE == kResidual) {
#pragma unroll
    for (int t = 0; t < TASKS; ++t)
      if (warp + t * stride < a.n) residual[t][0] = static_cast<const T*>(a.res)[warp + t * stride];
  }
  gemv_stage_x<T, 1>(xs, ws, a);
  __syncthreads();
  // An empty asm that "rewrites" every weight register: left to itself the compiler converts the loaded bf16
  // pairs to fp32 as soon as they arrive, doubling the registers the rows take (228 instead of 128 for gate_up)
  // and with them the footprint that keeps the next kernel's blocks off the SM.
#pragma unroll
  for (int t = 0; t < TASKS; ++t)
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
      for (int u = 0; u < V; ++u)
        asm volatile("" : "+r"(rows[t][r][u].x), "+r"(rows[t][r][u].y), "+r"(rows[t][r][u].z),
                     "+r"(rows[t][r][u].w));
#pragma unroll
  for (int t = 0; t < TASKS; ++t) {
    if (warp + t * stride >= a.n) break;
    float acc[R][1];
#pragma unroll
    for (int r = 0; r < R; ++r) acc[r][0] = 0.f;
    gemv_fma<T, V, R, 1>(acc, rows[t], xs, a.k, 1, 0, lane);
    gemv_epilogue<T, R, 1, MODE>(acc, a, warp + t * stride, lane, MODE == kResidual ? residual[t] : nullptr);
  }
}

// ------------------------------------------------------------------------------------------------ launchers
template <typename T, int U, int MAXB, int MODE>
void launch_gemv_inst(const GemvArgs& a, cudaStream_t stream) {
  auto kernel = step_gemv_kernel<T, U, MAXB, MODE>;
  const int smem = (a.batch + (a.norm_w != nullptr)) * a.k * static_cast<int>(sizeof(T));
  // One wave of blocks (they loop over the rows): the occupancy at this shared-memory size, cached.
  static std::map<std::pair<int, int>, int> wave;  // (device, smem) -> blocks
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  auto key = std::make_pair(device, smem);
  auto found = wave.find(key);
  if (found == wave.end()) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                        cudaSharedmemCarveoutMaxShared));  // (see the top of this file)
    if (smem > 48 * 1024)
      C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    int sms = 0, per_sm = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, DG_THREADS, smem));
    found = wave.emplace(key, sms * std::max(per_sm, 1)).first;
  }
  const int64_t blocks = (a.n + DG_WARPS - 1) / DG_WARPS;
  launch_pdl(kernel, dim3(static_cast<unsigned>(std::min<int64_t>(blocks, found->second))), dim3(DG_THREADS), smem,
             stream, a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, int U, int MAXB>
void launch_gemv_mode(const GemvArgs& a, int mode, cudaStream_t stream) {
  if (mode == kStore) launch_gemv_inst<T, U, MAXB, kStore>(a, stream);
  else if (mode == kResidual) launch_gemv_inst<T, U, MAXB, kResidual>(a, stream);
  else launch_gemv_inst<T, U, MAXB, kSwiGLU>(a, stream);
}

constexpr int kResidentVectors = 24;  // the most 16-byte weight vectors a lane holds in step_gemv_resident_kernel

template <typename T, int V, int MODE, int TASKS>
void launch_resident_inst(const GemvArgs& a, cudaStream_t stream) {
  const int smem = (1 + (a.norm_w != nullptr)) * a.k * static_cast<int>(sizeof(T));
  const int blocks = (a.n + TASKS * DG_WARPS - 1) / (TASKS * DG_WARPS);
  C10_CUDA_CHECK(cudaFuncSetAttribute(step_gemv_resident_kernel<T, V, MODE, TASKS>,
                                      cudaFuncAttributePreferredSharedMemoryCarveout, cudaSharedmemCarveoutMaxShared));
  launch_pdl(step_gemv_resident_kernel<T, V, MODE, TASKS>, dim3(blocks), dim3(DG_THREADS), smem, stream, a);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T, int V, int MODE>
bool launch_resident_tasks(const GemvArgs& a, int tasks, cudaStream_t stream) {
  constexpr int R = MODE == kSwiGLU ? 2 : 1;
  // (kResidual also holds the residual entries it updates, read ahead: at a full budget, 12 bytes spilled)
  constexpr int budget = kResidentVectors - (MODE == kResidual);
  if constexpr (R * V <= budget)
    if (tasks == 1) return launch_resident_inst<T, V, MODE, 1>(a, stream), true;
  if constexpr (2 * R * V <= budget)
    if (tasks == 2) return launch_resident_inst<T, V, MODE, 2>(a, stream), true;
  if constexpr (3 * R * V <= budget)
    if (tasks == 3) return launch_resident_inst<T, V, MODE, 3>(a, stream), true;
  if constexpr (4 * R * V <= budget)
    if (tasks == 4) return launch_resident_inst<T, V, MODE, 4>(a, stream), true;
  return false;
}

// The resident GEMV where a batch-1 projection fits one wave of one block per SM with at most kResidentVectors
// vectors per lane (Qwen3-0.6B: all four projections of a layer); false where it does not.
template <typename T, int MODE>
bool launch_resident_gemv(const GemvArgs& a, cudaStream_t stream) {
  static std::map<int, int> sm_count;  // device -> multiprocessors
  int device = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  if (!sm_count.count(device))
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sm_count[device], cudaDevAttrMultiProcessorCount, device));
  const int tasks = (a.n + sm_count[device] * DG_WARPS - 1) / (sm_count[device] * DG_WARPS);
  const int vectors = (a.k + 255) / 256;
  if (a.batch != 1 || tasks > 4) return false;
  if (vectors <= 4) return launch_resident_tasks<T, 4, MODE>(a, tasks, stream);
  if (vectors <= 8) return launch_resident_tasks<T, 8, MODE>(a, tasks, stream);
  if (vectors <= 12) return launch_resident_tasks<T, 12, MODE>(a, tasks, stream);
  return false;
}

// Rows of K <= 1024 in one round of 4 vectors per lane; longer rows in rounds of 8. Batch 1, or up to 8 rows.
template <typename T>
void launch_step_gemv(const GemvArgs& a, int mode, cudaStream_t stream) {
  if (a.lengths == nullptr && a.next_tokens == nullptr) {  // (the LM head streams: its rows never fit)
    const bool done = mode == kStore ? launch_resident_gemv<T, kStore>(a, stream)
                      : mode == kResidual ? launch_resident_gemv<T, kResidual>(a, stream)
                                          : launch_resident_gemv<T, kSwiGLU>(a, stream);
    if (done) return;
  }
  if (a.k <= 1024) {
    if (a.batch == 1) launch_gemv_mode<T, 4, 1>(a, mode, stream);
    else launch_gemv_mode<T, 4, 8>(a, mode, stream);
  } else {
    if (a.batch == 1) launch_gemv_mode<T, 8, 1>(a, mode, stream);
    else launch_gemv_mode<T, 8, 8>(a, mode, stream);
  }
}

}  // namespace q3
