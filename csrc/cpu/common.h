// Shared by the per-ISA kernel builds (kernels_baseline.cpp, kernels_avx2.cpp, kernels_avx512.cpp) and the ATen
// glue (ops.cpp, decode.cpp).
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>  // usable inside functions compiled for AVX2 or AVX-512 (kernels_avx2/avx512.cpp)
#endif

// bf16 as raw bits; ops.cpp reinterprets at::BFloat16 storage as this (same layout, no ATen in the kernels).
struct bf16_t {
    uint16_t bits;
};

// Strided 3-D view [rows, heads, D] with a contiguous last dim (q, k, v may be slices of a fused projection).
template <class T>
struct View3 {
    const T* data;
    int64_t s0, s1;
    const T* row(int64_t r, int64_t h) const { return data + r * s0 + h * s1; }
};

// Every kernel of one ISA for one dtype T (float or bf16_t). Argument meanings: kernels.h.
template <class T>
struct KernelTable {
    void (*linear)(const T* x, int M, const T* w, int N, int K, T* out);
    void (*linear_int8)(const T* x, int M, const int8_t* w, const float* scale, int N, int K, T* out);
    void (*silu_mul)(const T* gate_up, int64_t ld, int64_t R, int I, T* out);
    void (*rms_norm)(const T* x, const T* w, float eps, int64_t N, int H, T* out);
    void (*add_rms_norm)(const T* x, const T* residual, const T* w, float eps, int64_t N, int H, T* out, T* summed);
    void (*qk_norm_rope)(View3<T> q, View3<T> k, const T* q_w, const T* k_w, float eps, const T* cos, const T* sin,
                         int64_t N, int nH, int nKV, int D, T* q_out, T* k_out);
    void (*attention_prefill)(View3<T> q, View3<T> k, View3<T> v, const int32_t* cu_q, const int32_t* cu_k, int B,
                              int nH, int nKV, int D, float scale, T* out);
    void (*attention_decode)(View3<T> q, const T* k_cache, const T* v_cache, int64_t cs0, int64_t cs1, int64_t cs2,
                             const int32_t* lengths, int B, int nH, int nKV, int D, float scale, T* out);
    void (*moe_route)(const T* logits, int64_t N, int E, int top_k, bool normalize, int64_t* ids, T* weights);
    void (*moe_experts)(const T* x, int64_t N, int H, const int64_t* ids, const T* weights, int top_k,
                        const T* w_gate_up, const T* w_down, int E, int I, T* out);
};

// One build of kernels.h per instruction set (kernels_<isa>.cpp); ops.cpp lists them in its table of ISAs.
namespace baseline { template <class T> KernelTable<T> table(); }
namespace avx2 { template <class T> KernelTable<T> table(); }
namespace avx512 { template <class T> KernelTable<T> table(); }

// The table of the ISA in use (ops.cpp: the best this CPU runs, or the one QWEN3MINI_CPU_ISA names).
template <class T> KernelTable<T> kernels();
