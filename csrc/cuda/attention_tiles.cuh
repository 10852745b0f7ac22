// Tile-level building blocks of the attention kernels: K/V tiles through swizzled shared memory, Q K^T and
// P V on the tensor cores, the online softmax, and QK-Norm + RoPE of the new token's heads for the kernels that
// start from its fused qkv projection. Shared by attention.cu (prefill, split-KV decode) and decode_step.cu (the
// fused decode step). The MMA register layouts are written out in common.cuh.
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

// Per lane, what QK-Norm + RoPE needs besides the heads: the q and k norm weights and the rotation at one
// position, for the pairs (j, j + D/2) the lane owns, j = lane + 32 i. Never written by any kernel, so the
// attention kernel loads them before griddepcontrol.wait.
template <typename T, int D>
struct RopeConsts {
  static constexpr int P = D / 64, HALF = D / 2;
  float w1[2][P], w2[2][P], c1[P], c2[P], s1[P], s2[P];
  __device__ __forceinline__ void load(const T* qw, const T* kw, const T* cs, const T* sn, int lane) {
    auto f = [](T v) { return Traits<T>::to_float(v); };
#pragma unroll
    for (int i = 0; i < P; ++i) {
      const int j = lane + 32 * i;
      w1[0][i] = f(qw[j]), w2[0][i] = f(qw[j + HALF]), w1[1][i] = f(kw[j]), w2[1][i] = f(kw[j + HALF]);
      c1[i] = f(cs[j]), c2[i] = f(cs[j + HALF]), s1[i] = f(sn[j]), s2[i] = f(sn[j + HALF]);
    }
  }
};

// This token's heads of one KV group, spread over the block's WARPS warps: items 0..group-1 are the query heads,
// item `group` the key, item group + 1 the value; warp w takes items w, w + WARPS, ... (MAX_ITEMS of them: a
// lone warp goes in passes, passing the pass's first item as `warp`). load() issues all of a warp's loads at
// once (one round trip to L2), finish() applies QK-Norm + RoPE (reference.qk_norm_rope; rounding
// as qk_norm_rope_kernel) and stores: queries into the MMA tile `qs` (swizzled), key and value into `knew` /
// `vnew`, and where this block holds the new position, into the cache rows `kd` / `vd` as well.
template <typename T, int D, int WARPS, int MAX_ITEMS = (16 + 2 + WARPS - 1) / WARPS>
struct TokenHeads {
  static constexpr int P = D / 64, HALF = D / 2, ITEMS = MAX_ITEMS;
  float x1[ITEMS][P], x2[ITEMS][P];
  __device__ __forceinline__ void load(const T* row, int q_head0, int k_head, int v_head, int group, int warp,
                                       int lane) {
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int item = warp + it * WARPS;
      if (item > group + 1) break;
      const T* in = row + (int64_t)(item < group ? q_head0 + item : item == group ? k_head : v_head) * D;
#pragma unroll
      for (int i = 0; i < P; ++i)
        x1[it][i] = Traits<T>::to_float(__ldcg(in + lane + 32 * i)),
        x2[it][i] = Traits<T>::to_float(__ldcg(in + lane + 32 * i + HALF));
    }
  }
  __device__ __forceinline__ void finish(T* qs, T* knew, T* vnew, T* kd, T* vd, const RopeConsts<T, D>& rc,
                                         int group, float eps, int warp, int lane) {
    auto r = [](float v) { return Traits<T>::to_float(Traits<T>::from_float(v)); };
#pragma unroll
    for (int it = 0; it < ITEMS; ++it) {
      const int item = warp + it * WARPS;
      if (item > group + 1) break;
      if (item == group + 1) {  // the value: copied as it is
#pragma unroll
        for (int i = 0; i < P; ++i) {
          const int j = lane + 32 * i;
          const T o1 = Traits<T>::from_float(x1[it][i]), o2 = Traits<T>::from_float(x2[it][i]);
          vnew[j] = o1, vnew[j + HALF] = o2;
          if (vd != nullptr) vd[j] = o1, vd[j + HALF] = o2;
        }
        continue;
      }
      float sq = 0.f;
#pragma unroll
      for (int i = 0; i < P; ++i) sq += x1[it][i] * x1[it][i] + x2[it][i] * x2[it][i];
      sq = warp_sum(sq);
      const float inv = rsqrtf(sq / D + eps);
      const int wi = item < group ? 0 : 1;
#pragma unroll
      for (int i = 0; i < P; ++i) {
        const int j = lane + 32 * i;
        const float y1 = r(rc.w1[wi][i] * r(x1[it][i] * inv)), y2 = r(rc.w2[wi][i] * r(x2[it][i] * inv));
        const T o1 = Traits<T>::from_float(r(y1 * rc.c1[i]) + r(-y2 * rc.s1[i]));
        const T o2 = Traits<T>::from_float(r(y2 * rc.c2[i]) + r(y1 * rc.s2[i]));
        if (item < group) {
          qs[swz<D>(item, j)] = o1, qs[swz<D>(item, j + HALF)] = o2;
        } else {
          knew[j] = o1, knew[j + HALF] = o2;
          if (kd != nullptr) kd[j] = o1, kd[j + HALF] = o2;
        }
      }
    }
  }
};

}  // namespace q3
