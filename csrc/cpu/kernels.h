// The CPU kernels of the op contract (csrc/README.md), written once and compiled once per instruction set.
//
// This header is included by kernels_baseline.cpp (portable: whatever the compiler's baseline is, SSE2 on
// x86-64) and by kernels_avx2.cpp (under `#pragma GCC target("avx2,fma")`), each time inside its own
// namespace QWEN3MINI_ISA. ops.cpp picks one at run time with __builtin_cpu_supports, so the same binary
// runs on any x86-64 (or non-x86) CPU and uses 256-bit FMA where the CPU has it.
//
// The kernels are plain C++ over raw pointers: no ATen in here. Vectors are GCC vector extensions
// (`v8f` = 8 floats); the compiler maps them to one ymm register under AVX2 and to two xmm registers otherwise.
//
// Numerics (the rules the reference backend follows, docs/qwen3.md §7): every dot product accumulates in fp32, and a
// value is rounded to the activation dtype T exactly where the reference rounds it (round_to<T>). For
// T = float rounding is the identity, so one template serves fp32 and bf16.
//
// The including file includes common.h first (standard headers, bf16_t, View3, KernelTable).

namespace QWEN3MINI_ISA {

typedef float v8f __attribute__((vector_size(32)));
typedef int32_t v8i __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));
typedef uint16_t v8h __attribute__((vector_size(16)));

// ------------------------------------------------------------------ dtype plumbing: fp32 and bf16

// bf16 is the top half of an fp32: widening is a 16-bit shift, narrowing rounds to nearest-even (as torch).
inline float to_float(float x) { return x; }
inline float to_float(bf16_t x) {
    uint32_t bits = uint32_t(x.bits) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

template <class T> inline T from_float(float x);
template <> inline float from_float<float>(float x) { return x; }
template <> inline bf16_t from_float<bf16_t>(float x) {
    uint32_t bits;
    std::memcpy(&bits, &x, 4);
    if (x != x) return bf16_t{0x7fc0};                            // NaN stays NaN
    return bf16_t{uint16_t((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16)};
}

// The value x would have after the reference stored it in dtype T.
template <class T> inline float round_to(float x) { return to_float(from_float<T>(x)); }

inline v8f load8(const float* p) { v8f v; std::memcpy(&v, p, sizeof v); return v; }
inline v8f load8(const bf16_t* p) {
#ifdef QWEN3MINI_AVX2  // one vpmovzxwd from memory; GCC lowers the generic code below to four instructions
    return (v8f)_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16);
#endif
    v8h h;
    std::memcpy(&h, p, sizeof h);
    return (v8f)(__builtin_convertvector(h, v8u) << 16);
}
inline void store8(float* p, v8f v) { std::memcpy(p, &v, sizeof v); }
inline void store8(bf16_t* p, v8f v) {
    v8u bits = (v8u)v;
    v8u rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16;
    v8u is_nan = (v8u)(v != v);
    rounded = (rounded & ~is_nan) | (0x7fc0u & is_nan);
    v8h h = __builtin_convertvector(rounded, v8h);
    std::memcpy(p, &h, sizeof h);
}

// The 8 values a vector would hold after the reference stored them in dtype T (round_to, 8 lanes at once).
inline v8f round8(v8f v, float) { return v; }
inline v8f round8(v8f v, bf16_t) {
    v8u bits = (v8u)v;
    v8u rounded = ((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16) << 16;
    v8u is_nan = (v8u)(v != v);
    return (v8f)((rounded & ~is_nan) | (bits & is_nan));
}
template <class T> inline v8f round8(v8f v) { return round8(v, T{}); }

// e^x for 8 lanes (Cephes expf: x = n ln2 + r, |r| <= ln2/2, degree-5 polynomial for e^r, times 2^n built
// in the exponent bits); ~1 ulp, inputs clamped to the finite range. GCC has no vector std::exp.
inline v8f exp8(v8f x) {
    const v8f lo = v8f{} - 87.3f, hi = v8f{} + 88.3f, half = v8f{} + 0.5f;
    x = x < lo ? lo : x;
    x = x > hi ? hi : x;
    const v8f t = x * 1.44269504f;
    const v8i n = __builtin_convertvector(t + (t < 0.f ? -half : half), v8i);   // round to nearest
    const v8f nf = __builtin_convertvector(n, v8f);
    const v8f r = x - nf * 0.693359375f + nf * 2.12194440e-4f;                   // ln2 in two parts
    v8f p = v8f{} + 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.f;
    return (v8f)((v8i)p + (n << 23));
}

inline float hsum(v8f v) {
    float s = 0.f;
    for (int i = 0; i < 8; ++i) s += v[i];
    return s;
}

template <class T> inline float dot(const float* a, const T* b, int n) {
    v8f acc = {};
    int i = 0;
    for (; i + 8 <= n; i += 8) acc += load8(a + i) * load8(b + i);
    float s = hsum(acc);
    for (; i < n; ++i) s += a[i] * to_float(b[i]);
    return s;
}

// q . k_j for 4 consecutive rows k (row stride n): 4 independent FMA chains instead of one.
inline void dot4(const float* q, const float* k, int n, float* out) {
    v8f a0 = {}, a1 = {}, a2 = {}, a3 = {};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const v8f qv = load8(q + i);
        a0 += qv * load8(k + i);
        a1 += qv * load8(k + n + i);
        a2 += qv * load8(k + 2 * n + i);
        a3 += qv * load8(k + 3 * n + i);
    }
    out[0] = hsum(a0), out[1] = hsum(a1), out[2] = hsum(a2), out[3] = hsum(a3);
    for (; i < n; ++i)
        for (int r = 0; r < 4; ++r) out[r] += q[i] * k[r * n + i];
}

template <class T> inline void to_float_row(const T* src, float* dst, int n, float scale = 1.f) {
    int i = 0;
    for (; i + 8 <= n; i += 8) store8(dst + i, load8(src + i) * scale);
    for (; i < n; ++i) dst[i] = to_float(src[i]) * scale;
}

#include "linear.h"  // linear and its int8 variant: out = x @ W^T for a few rows of x

// ------------------------------------------------------------------ SwiGLU gate: silu(gate) * up

// out[i] = round(round(silu(gate[i])) * up[i]) for one token (HF Qwen3MLP's roundings in T). In and Out are
// T, or fp32 holding values already rounded to T (the MoE's scratch).
template <class T, class In, class Out>
inline void silu_mul_row(const In* gate, const In* up, int I, Out* out) {
    int i = 0;
    for (; i + 8 <= I; i += 8) {
        const v8f g = load8(gate + i);
        store8(out + i, round8<T>(round8<T>(g / (1.f + exp8(-g))) * load8(up + i)));
    }
    for (; i < I; ++i) {
        const float g = to_float(gate[i]);
        out[i] = from_float<Out>(round_to<T>(round_to<T>(g / (1.f + std::exp(-g))) * to_float(up[i])));
    }
}

// gate_up: R rows of 2I (gate first), row stride ld; out: [R, I] contiguous.
template <class T>
void silu_mul(const T* gate_up, int64_t ld, int64_t R, int I, T* out) {
#pragma omp parallel for schedule(static) if (R * I > 65536)
    for (int64_t r = 0; r < R; ++r) silu_mul_row<T>(gate_up + r * ld, gate_up + r * ld + I, I, out + r * I);
}

// ------------------------------------------------------------------ RMSNorm (+ residual add)

// out = w * round_T(x * rsqrt(mean(x²) + eps)), the product rounded to T (HF Qwen3RMSNorm).
// 1 / sqrt(mean(x²) + eps) of n values, the statistics in fp32.
template <class T>
inline float inv_rms(const T* x, int n, float eps) {
    v8f ss = {};
    int i = 0;
    for (; i + 8 <= n; i += 8) { v8f v = load8(x + i); ss += v * v; }
    float sum = hsum(ss);
    for (; i < n; ++i) sum += to_float(x[i]) * to_float(x[i]);
    return 1.f / std::sqrt(sum / n + eps);
}

template <class T>
inline void rms_norm_row(const T* x, const T* w, float eps, int H, T* out) {
    const float r = inv_rms(x, H, eps);
    for (int i = 0; i < H; ++i) out[i] = from_float<T>(to_float(w[i]) * round_to<T>(to_float(x[i]) * r));
}

template <class T>
void rms_norm(const T* x, const T* w, float eps, int64_t N, int H, T* out) {
#pragma omp parallel for schedule(static) if (N * H > 65536)
    for (int64_t t = 0; t < N; ++t) rms_norm_row(x + t * H, w, eps, H, out + t * H);
}

// summed = round_T(x + residual); out = rms_norm(summed).
template <class T>
void add_rms_norm(const T* x, const T* residual, const T* w, float eps, int64_t N, int H, T* out, T* summed) {
#pragma omp parallel for schedule(static) if (N * H > 65536)
    for (int64_t t = 0; t < N; ++t) {
        T* s = summed + t * H;
        for (int i = 0; i < H; ++i) s[i] = from_float<T>(to_float(x[t * H + i]) + to_float(residual[t * H + i]));
        rms_norm_row(s, w, eps, H, out + t * H);
    }
}

// ------------------------------------------------------------------ QK-Norm + RoPE (split halves), one pass

// One head of one token: n = rms_norm(x) (as rms_norm_row, kept in fp32 but with T's roundings), then
// out = round(round(n*cos) + round(rotate_half(n)*sin)): the roundings of the bf16 reference, element j < D/2
// pairing with j + D/2. D <= kMaxHeadDim (checked by ops.cpp).
constexpr int kMaxHeadDim = 512;

template <class T>
inline void qk_norm_rope_row(const T* x, const T* w, float eps, const T* cos, const T* sin, int D, T* out) {
    float n[kMaxHeadDim];
    const float r = inv_rms(x, D, eps);
    int i = 0;
    for (; i + 8 <= D; i += 8) store8(n + i, round8<T>(load8(w + i) * round8<T>(load8(x + i) * r)));
    for (; i < D; ++i) n[i] = round_to<T>(to_float(w[i]) * round_to<T>(to_float(x[i]) * r));
    const int half = D / 2;
    int j = 0;
    for (; j + 8 <= half; j += 8) {
        const v8f x1 = load8(n + j), x2 = load8(n + j + half);
        store8(out + j, round8<T>(x1 * load8(cos + j)) - round8<T>(x2 * load8(sin + j)));
        store8(out + j + half, round8<T>(x2 * load8(cos + j + half)) + round8<T>(x1 * load8(sin + j + half)));
    }
    for (; j < half; ++j) {
        const float x1 = n[j], x2 = n[j + half];
        out[j] = from_float<T>(round_to<T>(x1 * to_float(cos[j])) - round_to<T>(x2 * to_float(sin[j])));
        out[j + half] = from_float<T>(round_to<T>(x2 * to_float(cos[j + half])) +
                                      round_to<T>(x1 * to_float(sin[j + half])));
    }
}

// q [N, nH, D] and k [N, nKV, D] (strided rows, e.g. head slices of the fused q/k/v projection) into
// contiguous q_out, k_out. One task per (token, head) of q and k together.
template <class T>
void qk_norm_rope(View3<T> q, View3<T> k, const T* q_w, const T* k_w, float eps, const T* cos, const T* sin,
                  int64_t N, int nH, int nKV, int D, T* q_out, T* k_out) {
    const int heads = nH + nKV;
#pragma omp parallel for schedule(static) if (N * heads * D > 65536)
    for (int64_t task = 0; task < N * heads; ++task) {
        const int64_t t = task / heads;
        const int h = int(task % heads);
        if (h < nH)
            qk_norm_rope_row(q.row(t, h), q_w, eps, cos + t * D, sin + t * D, D, q_out + (t * nH + h) * D);
        else
            qk_norm_rope_row(k.row(t, h - nH), k_w, eps, cos + t * D, sin + t * D, D,
                             k_out + (t * nKV + h - nH) * D);
    }
}

#include "attention.h"  // attention_prefill and attention_decode, with online softmax

// ------------------------------------------------------------------ MoE router: softmax, top-k, renormalise

// For each of N rows of E logits: fp32 softmax, the top_k largest probabilities in descending order (ties
// by lower id), divided by their sum when `normalize`, rounded to T (HF Qwen3MoeSparseMoeBlock).
template <class T>
void moe_route(const T* logits, int64_t N, int E, int top_k, bool normalize, int64_t* ids, T* weights) {
#pragma omp parallel for schedule(static) if (N * E > 65536)
    for (int64_t t = 0; t < N; ++t) {
        const T* row = logits + t * E;
        std::vector<float> probs(E);
        std::vector<int> order(E);
        float max = -INFINITY, sum = 0.f;
        for (int e = 0; e < E; ++e) max = std::max(max, to_float(row[e]));
        for (int e = 0; e < E; ++e) sum += probs[e] = std::exp(to_float(row[e]) - max);
        for (int e = 0; e < E; ++e) { probs[e] /= sum; order[e] = e; }
        std::partial_sort(order.begin(), order.begin() + top_k, order.end(),
                          [&](int a, int b) { return probs[a] > probs[b] || (probs[a] == probs[b] && a < b); });
        float chosen = 0.f;
        for (int j = 0; j < top_k; ++j) chosen += probs[order[j]];
        for (int j = 0; j < top_k; ++j) {
            ids[t * top_k + j] = order[j];
            weights[t * top_k + j] = from_float<T>(normalize ? probs[order[j]] / chosen : probs[order[j]]);
        }
    }
}

// ------------------------------------------------------------------ MoE dispatch
//
// 1. sort the (token, slot) pairs by expert (counting sort: stable, so tokens stay ascending);
// 2. for every expert that got tokens, gate_up = x_e @ W_gu[e]^T, h = silu(gate) * up, y = h @ W_down[e]^T
//    (each phase is one parallel loop over (expert, block of output features), so every selected weight
//    row is read once and unselected experts are never touched);
// 3. out[t] = sum over its experts in ascending id of round(y * weight), accumulated in T (HF order).

template <class T>
void moe_experts(const T* x, int64_t N, int H, const int64_t* ids, const T* weights, int top_k, const T* w_gate_up,
                 const T* w_down, int E, int I, T* out) {
    const int64_t P = N * top_k;                           // (token, slot) pairs
    std::vector<int64_t> start(E + 1, 0), pair_of(P), token_of(P);
    for (int64_t p = 0; p < P; ++p) start[ids[p] + 1]++;
    for (int e = 0; e < E; ++e) start[e + 1] += start[e];
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t p = 0; p < P; ++p) {
        const int64_t row = fill[ids[p]]++;
        pair_of[p] = row;                                  // where pair p's results live in the sorted buffers
        token_of[row] = p / top_k;
    }
    std::vector<int> active;
    for (int e = 0; e < E; ++e)
        if (start[e + 1] > start[e]) active.push_back(e);

    std::vector<float> xs(P * H), gate_up(P * 2 * I), hidden(P * I), y(P * H);
#pragma omp parallel for schedule(static) if (P * H > 65536)
    for (int64_t row = 0; row < P; ++row) to_float_row(x + token_of[row] * H, &xs[row * H], H);

    // One task per (active expert, 16 output features); `rows` output features in all.
    auto for_each_block = [&](int rows, auto&& body) {
        const int per_expert = (rows + 15) / 16;
        const int tasks = int(active.size()) * per_expert;
#pragma omp parallel for schedule(dynamic)
        for (int task = 0; task < tasks; ++task) {
            const int e = active[task / per_expert], n0 = (task % per_expert) * 16;
            body(e, start[e], int(start[e + 1] - start[e]), n0, std::min(rows, n0 + 16));
        }
    };
    for_each_block(2 * I, [&](int e, int64_t row0, int count, int n0, int n1) {
        linear_block<T>(&xs[row0 * H], H, count, w_gate_up + int64_t(e) * 2 * I * H, H, H, n0, n1, nullptr,
                        &gate_up[row0 * 2 * I], 2 * I);
    });
#pragma omp parallel for schedule(static) if (P * I > 65536)
    for (int64_t row = 0; row < P; ++row)
        silu_mul_row<T>(&gate_up[row * 2 * I], &gate_up[row * 2 * I + I], I, &hidden[row * I]);
    for_each_block(H, [&](int e, int64_t row0, int count, int n0, int n1) {
        linear_block<T>(&hidden[row0 * I], I, count, w_down + int64_t(e) * H * I, I, I, n0, n1, nullptr, &y[row0 * H],
                        H);
    });
#pragma omp parallel for schedule(static) if (P * H > 65536)
    for (int64_t t = 0; t < N; ++t) {
        int slots[64];                                     // top_k <= 64, checked by the caller
        for (int j = 0; j < top_k; ++j) slots[j] = j;
        std::sort(slots, slots + top_k, [&](int a, int b) { return ids[t * top_k + a] < ids[t * top_k + b]; });
        for (int i = 0; i < H; ++i) {
            float acc = 0.f;
            for (int j = 0; j < top_k; ++j) {
                const int64_t p = t * top_k + slots[j];
                acc = round_to<T>(acc + round_to<T>(y[pair_of[p] * H + i] * to_float(weights[p])));
            }
            out[t * H + i] = from_float<T>(acc);
        }
    }
}

// ------------------------------------------------------------------ the table ops.cpp dispatches through

template <class T>
KernelTable<T> table() {
    return {linear<T>, linear_int8<T>, silu_mul<T>, rms_norm<T>, add_rms_norm<T>, qk_norm_rope<T>,
            attention_prefill<T>, attention_decode<T>, moe_route<T>, moe_experts<T>};
}

}  // namespace QWEN3MINI_ISA
