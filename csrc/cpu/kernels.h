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

// ------------------------------------------------------------------ attention with online softmax
//
// Both attention kernels share one inner step (FlashAttention's recurrence, Dao et al. 2022): for a block
// of keys, compute the scores of one query row, raise the running max, rescale the running sum and the fp32
// output accumulator, add the new probabilities times V. The T x T score matrix never exists: a thread holds
// the scores of kScoreRows rows (1, or 4 in the AVX-512 build) and one key block (kBlock floats) at a time.

constexpr int kBlock = 64;                                 // keys per block (K and V widened to fp32 once)

// The attention's inner loops run on the widest float vector of the build: 16 lanes (one zmm register) in the
// AVX-512 build, else v8f.
#ifdef QWEN3MINI_AVX512
typedef float vwf __attribute__((vector_size(64)));
#else
typedef v8f vwf;
#endif
constexpr int kWide = sizeof(vwf) / sizeof(float);
inline vwf loadw(const float* p) { vwf v; std::memcpy(&v, p, sizeof v); return v; }
inline void storew(float* p, vwf v) { std::memcpy(p, &v, sizeof v); }

struct RowState {                                          // one query row of one head
    float max, sum;
    float* acc;                                            // [D] fp32
};

// Rows r < R: acc[r][i0, i0 + A * kWide) = acc * correction[r] + sum_j p[r * ldp + j] * v_j[...], v_j = vf + j * D.
// R * A independent vector sums hide the FMA latency, and each load of V serves all R rows.
template <int R, int A>
inline void accumulate_values(const float* vf, const float* p, int ldp, int n, int D, const float* correction,
                              float* const* acc, int i0) {
    vwf a[R][A];
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < A; ++c) a[r][c] = loadw(acc[r] + i0 + c * kWide) * correction[r];
    for (int j = 0; j < n; ++j)
        for (int c = 0; c < A; ++c) {
            const vwf v = loadw(vf + j * D + i0 + c * kWide);
            for (int r = 0; r < R; ++r) a[r][c] += p[r * ldp + j] * v;
        }
    for (int r = 0; r < R; ++r)
        for (int c = 0; c < A; ++c) storew(acc[r] + i0 + c * kWide, a[r][c]);
}

// acc[r][0, D) = acc[r] * correction[r] + p_r @ V for R rows of probabilities (row stride ldp), keys [0, n).
template <int R>
inline void accumulate_rows(const float* vf, const float* p, int ldp, int n, int D, const float* correction,
                            float* const* acc) {
    constexpr int A = R == 1 ? 8 : 4;                     // vector sums a row
    int i = 0;
    for (; i + A * kWide <= D; i += A * kWide) accumulate_values<R, A>(vf, p, ldp, n, D, correction, acc, i);
    for (; i + kWide <= D; i += kWide) accumulate_values<R, 1>(vf, p, ldp, n, D, correction, acc, i);
    for (; i < D; ++i)
        for (int r = 0; r < R; ++r) {
            float a = acc[r][i] * correction[r];
            for (int j = 0; j < n; ++j) a += p[r * ldp + j] * vf[j * D + i];
            acc[r][i] = a;
        }
}

// The softmax half of a block step for one row: scores[0, n) = q·k_j (q already multiplied by the softmax
// scale) on entry, the block's probabilities on return; raises the running max and rescales the running sum.
// Returns the factor the row's output accumulator must be rescaled by.
inline float softmax_block(int n, RowState& st, float* scores) {
    int j = 0;
    float block_max = -INFINITY;
    for (j = 0; j < n; ++j) block_max = std::max(block_max, scores[j]);
    const float new_max = std::max(st.max, block_max);
    const float correction = std::exp(st.max - new_max);  // exp(-inf) = 0 on the first block
    v8f sums = {};
    for (j = 0; j + 8 <= n; j += 8) {
        const v8f p = exp8(load8(scores + j) - new_max);
        store8(scores + j, p);
        sums += p;
    }
    float sum = hsum(sums);
    for (; j < n; ++j) { scores[j] = std::exp(scores[j] - new_max); sum += scores[j]; }
    st.sum = st.sum * correction + sum;
    st.max = new_max;
    return correction;
}

// One query row against keys [0, n) of a block, kf: [n][D] fp32 (decode: a few query rows share a block).
inline void online_softmax_step(const float* q, const float* kf, const float* vf, int n, int D, RowState& st,
                                float* scores) {
    int j = 0;
    for (; j + 4 <= n; j += 4) dot4(q, kf + j * D, D, scores + j);
    for (; j < n; ++j) scores[j] = dot(q, kf + j * D, D);
    const float correction = softmax_block(n, st, scores);
    accumulate_rows<1>(vf, scores, 0, n, D, &correction, &st.acc);
}

// Prefill: a block serves kQRows rows x the query group, so its keys are transposed once, kt[d * kBlock + j], and
// a query row's scores over the whole block are kBlock / kWide vector sums fed by broadcasts of q[d]: no
// horizontal sum per key. With 16 lanes, kScoreRows = 4 rows share each load of kt (the transposed block does
// not stay in L1 beside V, so its loads are what bounds this loop) in 16 sums. Keys past the block's end give
// scores nobody reads; so do rows past the task's last (q's buffer has kScoreRows rows to spare).
constexpr int kScoreRows = kWide == 16 ? 4 : 1;

inline void transpose_block(const float* kf, int n, int D, float* kt) {
    for (int j = 0; j < n; ++j)
        for (int d = 0; d < D; ++d) kt[d * kBlock + j] = kf[j * D + d];
}

// scores[r][0, kBlock) = q_r · k_j for the kScoreRows rows q_r = q + r * D.
inline void block_scores(const float* q, const float* kt, int D, float* scores) {
    constexpr int kSums = kBlock / kWide;
    vwf acc[kScoreRows][kSums] = {};
    for (int d = 0; d < D; ++d)
        for (int c = 0; c < kSums; ++c) {
            const vwf k = loadw(kt + d * kBlock + kWide * c);
            for (int r = 0; r < kScoreRows; ++r) acc[r][c] += (vwf{} + q[r * D + d]) * k;
        }
    for (int r = 0; r < kScoreRows; ++r)
        for (int c = 0; c < kSums; ++c) storew(scores + r * kBlock + kWide * c, acc[r][c]);
}


template <class T>
inline void finish_row(const RowState& st, int D, T* out) {
    const float inv = 1.f / st.sum;
    for (int i = 0; i < D; ++i) out[i] = from_float<T>(st.acc[i] * inv);
}

// Rows [row0, row0 + n) of one head to fp32. Consecutive rows of a head are D-element slices a whole token
// apart in memory ([tokens, heads, D]: 256 B every 2 KB in Qwen3-0.6B's cache), a pattern the hardware
// prefetcher does not follow: at 4k cached tokens the decode attention spent most of its time stalled on these
// loads (perf). So each row prefetches the row kRowsAhead later, up to `end` (the rows that exist). Distances
// 4-16 measured alike, and far better than none (bench/RESULTS.md, "cpu kernels").
template <class T>
inline void widen_block(View3<T> src, int64_t row0, int n, int64_t head, int D, float* dst, int64_t end) {
    constexpr int kRowsAhead = 8;
    const int64_t bytes = int64_t(D) * sizeof(T);
    for (int j = 0; j < n; ++j) {
        if (row0 + j + kRowsAhead < end) {
            const char* ahead = reinterpret_cast<const char*>(src.row(row0 + j + kRowsAhead, head));
            for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(ahead + b, 0, 3);
        }
        to_float_row(src.row(row0 + j, head), dst + j * D, D);
    }
}

// Prefill. One task = (sequence, KV head, block of kQRows query rows): its whole query group shares each
// widened K/V block. Query row i of a sequence sees keys j <= i + (Lk - Lq) (causal, bottom-right aligned).
// 64 rows a task widen and transpose each block for 128 query rows of Qwen3's 2-head groups: a layer's
// 512-token prefill took a fifth less time than with 16 (bench/RESULTS.md, "cpu kernels").
template <class T>
void attention_prefill(View3<T> q, View3<T> k, View3<T> v, const int32_t* cu_q, const int32_t* cu_k, int B,
                       int nH, int nKV, int D, float scale, T* out) {
    constexpr int kQRows = 64;
    const int group = nH / nKV;
    struct Task { int b, kv_head, row0; };
    std::vector<Task> tasks;
    for (int b = 0; b < B; ++b)
        for (int g = 0; g < nKV; ++g)
            for (int r = 0; r < cu_q[b + 1] - cu_q[b]; r += kQRows) tasks.push_back({b, g, r});

#pragma omp parallel
    {
        std::vector<float> qf((kQRows * group + kScoreRows) * D), acc(kQRows * group * D), kf(kBlock * D);
        std::vector<float> vf(kBlock * D), kt(kBlock * D), scores(kScoreRows * kBlock), spare(D);
        std::vector<RowState> state(kQRows * group);
#pragma omp for schedule(dynamic)
        for (size_t task = 0; task < tasks.size(); ++task) {
            const Task tk = tasks[task];
            const int lq = cu_q[tk.b + 1] - cu_q[tk.b], lk = cu_k[tk.b + 1] - cu_k[tk.b];
            const int rows = std::min(kQRows, lq - tk.row0), offset = lk - lq;
            for (int r = 0; r < rows; ++r)
                for (int h = 0; h < group; ++h) {
                    const int s = r * group + h;
                    to_float_row(q.row(cu_q[tk.b] + tk.row0 + r, tk.kv_head * group + h), &qf[s * D], D, scale);
                    state[s] = {-INFINITY, 0.f, &acc[s * D]};
                    std::fill_n(state[s].acc, D, 0.f);
                }
            const int key_end = tk.row0 + rows + offset;     // keys the last row of the task sees
            for (int j0 = 0; j0 < key_end; j0 += kBlock) {
                const int n = std::min(kBlock, key_end - j0);
                widen_block(k, cu_k[tk.b] + j0, n, tk.kv_head, D, kf.data(), cu_k[tk.b] + key_end);
                widen_block(v, cu_k[tk.b] + j0, n, tk.kv_head, D, vf.data(), cu_k[tk.b] + key_end);
                transpose_block(kf.data(), n, D, kt.data());
                for (int s0 = 0; s0 < rows * group; s0 += kScoreRows) {        // s = r * group + h
                    block_scores(&qf[s0 * D], kt.data(), D, scores.data());
                    float correction[kScoreRows], *accs[kScoreRows];
                    for (int r = 0; r < kScoreRows; ++r) {  // a row sees no key past `visible`: probability 0
                        const int s = s0 + r;
                        const int visible = s < rows * group ? std::clamp(tk.row0 + s / group + offset + 1 - j0, 0, n)
                                                             : 0;
                        float* p = &scores[r * kBlock];
                        correction[r] = visible > 0 ? softmax_block(visible, state[s], p) : 1.f;
                        std::fill(p + visible, p + n, 0.f);
                        accs[r] = s < rows * group ? state[s].acc : spare.data();
                    }
                    accumulate_rows<kScoreRows>(vf.data(), scores.data(), kBlock, n, D, correction, accs);
                }
            }
            for (int r = 0; r < rows; ++r)
                for (int h = 0; h < group; ++h)
                    finish_row(state[r * group + h], D,
                               out + ((int64_t(cu_q[tk.b]) + tk.row0 + r) * nH + tk.kv_head * group + h) * D);
        }
    }
}

// Decode. One task = (sequence, KV head): each K/V row of the cache is read from memory once and used by all
// `group` query heads that share it (GQA), instead of once per query head. Short caches run on one thread:
// waking the others costs more than the work (Zen 3, 16 x 128 query heads: one thread is faster up to
// ~256 cached tokens).
template <class T>
void attention_decode(View3<T> q /*[B, nH, D]*/, const T* k_cache, const T* v_cache, int64_t cs0, int64_t cs1,
                      int64_t cs2, const int32_t* lengths, int B, int nH, int nKV, int D, float scale, T* out) {
    const int group = nH / nKV;
    int64_t work = 0;                                      // (cached token, query head, dim) triples
    for (int b = 0; b < B; ++b) work += int64_t(lengths[b]) * nH * D;
#pragma omp parallel if (work > (1 << 19))
    {
        std::vector<float> qf(group * D), acc(group * D), kf(kBlock * D), vf(kBlock * D), scores(kBlock);
        std::vector<RowState> state(group);
#pragma omp for schedule(dynamic) collapse(2)
        for (int b = 0; b < B; ++b)
            for (int g = 0; g < nKV; ++g) {
                for (int h = 0; h < group; ++h) {
                    to_float_row(q.row(b, g * group + h), &qf[h * D], D, scale);
                    state[h] = {-INFINITY, 0.f, &acc[h * D]};
                    std::fill_n(state[h].acc, D, 0.f);
                }
                const View3<T> kb{k_cache + b * cs0 + g * cs2, cs1, 0}, vb{v_cache + b * cs0 + g * cs2, cs1, 0};
                for (int j0 = 0; j0 < lengths[b]; j0 += kBlock) {
                    const int n = std::min(kBlock, lengths[b] - j0);
                    widen_block(kb, j0, n, 0, D, kf.data(), lengths[b]);
                    widen_block(vb, j0, n, 0, D, vf.data(), lengths[b]);
                    for (int h = 0; h < group; ++h)
                        online_softmax_step(&qf[h * D], kf.data(), vf.data(), n, D, state[h], scores.data());
                }
                for (int h = 0; h < group; ++h) finish_row(state[h], D, out + (int64_t(b) * nH + g * group + h) * D);
            }
    }
}

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
