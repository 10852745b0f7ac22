// The matrix-vector core shared by the batch-1 GEMV of the linear op (gemv.cu) and the fused decode step's
// projections (decode_step_gemv.cuh): one warp per output row (a row of W), its 32 lanes reading the row in 16-byte
// vectors of 8 elements, lane l owning columns l*8 .. l*8+7 of every 256-column slice, fp32 accumulation. A
// kernel loads a round of U vectors per lane (gemv_load) before it multiplies any (gemv_fma), so that U loads
// per lane are in flight at once; the lanes' partial sums are then added with shuffles (warp_sum).
#pragma once
#include "common.cuh"

namespace q3 {

// One round of a task's weights: U vectors of 8 per lane per row (row `task`, and for SwiGLU also `n + task`).
// Loaded cache-streaming (ld.global.cs, evict-first): a step streams 1.2 GB of weights once through the 50 MB L2,
// which would otherwise push out the KV cache and activations it reuses (bench/RESULTS.md, "cuda").
template <typename T, int U, int R>
__device__ __forceinline__ void gemv_load(uint4 (&v)[R][U], const T* w, int task, int n, int k, int round, int lane) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const T* row = w + (int64_t)(task + r * n) * k;
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int c = (round * U + u) * 256 + lane * 8;
      v[r][u] = c < k ? __ldcs(reinterpret_cast<const uint4*>(row + c)) : make_uint4(0, 0, 0, 0);
    }
  }
}

// One round's products added to acc[r][b]: the loaded vectors of row r times input row b of xs [batch, k]
// (shared or global memory; MAXB: the most rows a kernel instance serves).
template <typename T, int U, int R, int MAXB>
__device__ __forceinline__ void gemv_fma(float (&acc)[R][MAXB], const uint4 (&v)[R][U], const T* xs, int k, int batch,
                                         int round, int lane) {
#pragma unroll
  for (int u = 0; u < U; ++u) {
    const int c = (round * U + u) * 256 + lane * 8;
    if (c >= k) break;
#pragma unroll
    for (int b = 0; b < MAXB; ++b) {
      if (b >= batch) break;
      const uint4 xv = *reinterpret_cast<const uint4*>(xs + b * k + c);
      const T* xt = reinterpret_cast<const T*>(&xv);
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const T* wt = reinterpret_cast<const T*>(&v[r][u]);
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[r][b] += Traits<T>::to_float(xt[i]) * Traits<T>::to_float(wt[i]);
      }
    }
  }
}

}  // namespace q3
