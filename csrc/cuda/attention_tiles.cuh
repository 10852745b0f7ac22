// Tile-level building blocks of the attention kernels: K/V tiles through swizzled shared memory, Q K^T and
// P V on the tensor cores, the online softmax. Shared by attention.cu (prefill, split-KV decode) and
// decode_step.cu (the fused decode step). The MMA register layouts are written out in common.cuh.
#pragma once

#include "common.cuh"

namespace q3 {

constexpr int BLOCK_N = 64;  // keys per K/V tile, for both kernels

struct AttnStrides {  // element strides of a [tokens, heads, D] view (last dim contiguous)
  int64_t tok, head;
};

// Load `rows` x D of a [tokens, heads, D] tensor (rows from `row0`, `valid` of them real) into swizzled smem, by
// THREADS threads, this one being number `thread` of them.
template <typename T, int D, int THREADS>
__device__ __forceinline__ void load_tile_by(int thread, T* smem, const T* base, AttnStrides s, int64_t row0,
                                             int head, int rows, int valid) {
  constexpr int CHUNKS = D / 8;
  for (int i = thread; i < rows * CHUNKS; i += THREADS) {
    const int r = i / CHUNKS, c = (i % CHUNKS) * 8;
    const bool ok = r < valid;
    const T* src = base + (ok ? (row0 + r) * s.tok + head * s.head + c : 0);
    cp_async_16(smem + swz<D>(r, c), src, ok);
  }
}

// The same by the first THREADS threads of the block.
template <typename T, int D, int THREADS>
__device__ __forceinline__ void load_tile(T* smem, const T* base, AttnStrides s, int64_t row0, int head, int rows,
                                          int valid) {
  load_tile_by<T, D, THREADS>(threadIdx.x, smem, base, s, row0, head, rows, valid);
}

// S[16 x 64] = Q_frag (16 x D, registers) @ K_tile^T, K tile in swizzled smem.
template <typename T, int D>
__device__ __forceinline__ void qk_tile(float (&s)[BLOCK_N / 8][4], const uint32_t (&qf)[D / 16][4], const T* ks,
                                        int lane) {
#pragma unroll
  for (int nt = 0; nt < BLOCK_N / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
  const int mi = lane / 8;
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) {
#pragma unroll
    for (int np = 0; np < BLOCK_N / 16; ++np) {
      uint32_t b[4];
      ldmatrix_x4(b, ks + swz<D>(np * 16 + (lane % 8) + (mi / 2) * 8, kc * 16 + (mi % 2) * 8));
      mma_16816<T>(s[2 * np], qf[kc], b[0], b[1]);
      mma_16816<T>(s[2 * np + 1], qf[kc], b[2], b[3]);
    }
  }
}

// O[16 x D] += P (scores as A fragments) @ V_tile, V tile in swizzled smem (row-major, read transposed).
template <typename T, int D>
__device__ __forceinline__ void pv_tile(float (&o)[D / 8][4], const float (&p)[BLOCK_N / 8][4], const T* vs,
                                        int lane) {
  const int mi = lane / 8;
#pragma unroll
  for (int kk = 0; kk < BLOCK_N / 16; ++kk) {
    const uint32_t a[4] = {Traits<T>::pack(p[2 * kk][0], p[2 * kk][1]), Traits<T>::pack(p[2 * kk][2], p[2 * kk][3]),
                           Traits<T>::pack(p[2 * kk + 1][0], p[2 * kk + 1][1]),
                           Traits<T>::pack(p[2 * kk + 1][2], p[2 * kk + 1][3])};
#pragma unroll
    for (int dp = 0; dp < D / 16; ++dp) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, vs + swz<D>(kk * 16 + (lane % 8) + (mi % 2) * 8, dp * 16 + (mi / 2) * 8));
      mma_16816<T>(o[2 * dp], a, b[0], b[1]);
      mma_16816<T>(o[2 * dp + 1], a, b[2], b[3]);
    }
  }
}

// Scores to the log2 domain (scale_log2 = softmax scale * log2 e) with keys at or past `end` masked out; the tile
// starts at key n0, and a thread holds columns 2 (lane % 4) and + 1 of each 8-column MMA tile.
__device__ __forceinline__ void scale_and_mask(float (&s)[BLOCK_N / 8][4], int n0, int end, float scale_log2,
                                               int lane) {
#pragma unroll
  for (int nt = 0; nt < BLOCK_N / 8; ++nt)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = n0 + nt * 8 + 2 * (lane % 4) + (e & 1);
      s[nt][e] = col < end ? s[nt][e] * scale_log2 : -INFINITY;
    }
}

// Online softmax update for one 16 x 64 score tile held by a warp. Each thread owns rows g and g + 8; m and l are
// in the log2 domain and l is this thread's partial row sum (summed over the quad once, at the end).
template <int D>
__device__ __forceinline__ void softmax_update(float (&s)[BLOCK_N / 8][4], float (&m)[2], float (&l)[2],
                                               float (&o)[D / 8][4]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = m[r];
#pragma unroll
    for (int nt = 0; nt < BLOCK_N / 8; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
    mx = warp_max4(mx);
    const float base = mx == -INFINITY ? 0.f : mx;  // a row with nothing visible yet stays all-zero
    const float corr = exp2f(m[r] - base);
    m[r] = mx;
    float sum = 0.f;
#pragma unroll
    for (int nt = 0; nt < BLOCK_N / 8; ++nt) {
      s[nt][2 * r] = exp2f(s[nt][2 * r] - base);
      s[nt][2 * r + 1] = exp2f(s[nt][2 * r + 1] - base);
      sum += s[nt][2 * r] + s[nt][2 * r + 1];
    }
    l[r] = l[r] * corr + sum;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][2 * r] *= corr;
      o[dt][2 * r + 1] *= corr;
    }
  }
}

// Q fragments for the warp's 16 rows, from a swizzled smem tile.
template <typename T, int D>
__device__ __forceinline__ void load_q_frags(uint32_t (&qf)[D / 16][4], const T* qs, int row0, int lane) {
#pragma unroll
  for (int kc = 0; kc < D / 16; ++kc) ldmatrix_x4(qf[kc], qs + swz<D>(row0 + lane % 16, kc * 16 + (lane / 16) * 8));
}

}  // namespace q3
