// linear: out = x @ W^T for a few rows of x (decode), part of kernels.h: included inside its namespace
// QWEN3MINI_ISA once per instruction set (no include guard), after the dtype plumbing it uses.
//
// W holds the activation dtype T, or int8 with one fp32 scale per output feature (weight-only quantisation,
// csrc/README.md "Quantized linear"): out[m, n] = round_T(scale[n] * sum_k x[m, k] * q[n, k]). The int8 values
// are widened to fp32 in registers and multiplied like bf16 ones; `scale` is nullptr for an unquantised W.
//
// Decode is bound by reading the weights, so W is streamed exactly once: each thread takes blocks of 4
// output features (4 rows of W) and multiplies them with *all* M rows of x while those 4 rows sit in L1.
// x arrives already widened to fp32 (it is small). The micro-kernel keeps 4 x MR accumulators, MR <= 3 rows
// of x, and one row of W in registers: 4*3 + 3 + 1 = 16, all 16 ymm registers of AVX2, no spills.

typedef int8_t v8b __attribute__((vector_size(8)));
typedef int16_t v8s __attribute__((vector_size(16)));

inline float to_float(int8_t x) { return float(x); }
inline v8f load8(const int8_t* p) {
#ifdef QWEN3MINI_AVX2  // one vpmovsxbd from memory and one conversion
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i*)p)));
#endif
    v8b b;
    std::memcpy(&b, p, sizeof b);   // through int16 and int32: GCC turns int8 -> float directly into scalar code
    return __builtin_convertvector(__builtin_convertvector(__builtin_convertvector(b, v8s), v8i), v8f);
}

// The dot product of output feature n, times its scale where W is quantised.
inline float scaled(float sum, const float* scale, int n) { return scale ? sum * scale[n] : sum; }

template <int NR, int MR, class W>
inline void dot_tile(const float* x, int64_t ldx, const W* w, int64_t ldw, int K, float* result /*[MR][NR]*/) {
    v8f acc[MR][NR] = {};
    int i = 0;
    for (; i + 8 <= K; i += 8) {
        v8f xv[MR];
        for (int m = 0; m < MR; ++m) xv[m] = load8(x + m * ldx + i);
        for (int n = 0; n < NR; ++n) {
            const v8f wv = load8(w + n * ldw + i);
            for (int m = 0; m < MR; ++m) acc[m][n] += xv[m] * wv;
        }
    }
    for (int m = 0; m < MR; ++m)
        for (int n = 0; n < NR; ++n) {
            float s = hsum(acc[m][n]);
            for (int j = i; j < K; ++j) s += x[m * ldx + j] * to_float(w[n * ldw + j]);
            result[m * NR + n] = s;
        }
}

// out[m, n0:n0+NR] for all m < M, rounded to T and stored as OutT (T itself, or fp32 scratch in the MoE).
template <int NR, class T, class W, class OutT>
inline void linear_rows(const float* x, int64_t ldx, int M, const W* w, int64_t ldw, int K, int n0,
                        const float* scale, OutT* out, int64_t ldo) {
    float result[3 * NR];
    for (int m0 = 0; m0 < M; m0 += 3) {
        int mr = std::min(3, M - m0);
        const float* xm = x + m0 * ldx;
        const W* wn = w + n0 * ldw;
        switch (mr) {
            case 1: dot_tile<NR, 1>(xm, ldx, wn, ldw, K, result); break;
            case 2: dot_tile<NR, 2>(xm, ldx, wn, ldw, K, result); break;
            default: dot_tile<NR, 3>(xm, ldx, wn, ldw, K, result); break;
        }
        for (int m = 0; m < mr; ++m)
            for (int n = 0; n < NR; ++n)
                out[(m0 + m) * ldo + n0 + n] =
                    from_float<OutT>(round_to<T>(scaled(result[m * NR + n], scale, n0 + n)));
    }
}

// One row of x (decode): the rows of W are read one after another, a single sequential stream that the
// hardware prefetcher follows at full speed (interleaved row streams were slower on Zen 3); four accumulators
// hide the FMA latency. A software prefetch kPrefetchBytes ahead, with the non-temporal hint (each weight byte
// is used once per token), read the decode weights faster on Zen 3 than the hardware prefetcher alone; 512 B
// and 2 KB ahead were no better (bench/RESULTS.md, "cpu kernels").
constexpr int kPrefetchBytes = 1024;

template <class W>
inline float row_dot(const float* x, const W* row, int K) {
    v8f a0 = {}, a1 = {}, a2 = {}, a3 = {};
    int i = 0;
    for (; i + 32 <= K; i += 32) {
        for (int line = 0; line < 32 * int(sizeof(W)); line += 64)       // the 64 B lines of this step
            __builtin_prefetch((const char*)(row + i) + kPrefetchBytes + line, 0, 0);
        a0 += load8(x + i) * load8(row + i);
        a1 += load8(x + i + 8) * load8(row + i + 8);
        a2 += load8(x + i + 16) * load8(row + i + 16);
        a3 += load8(x + i + 24) * load8(row + i + 24);
    }
    for (; i + 8 <= K; i += 8) a0 += load8(x + i) * load8(row + i);
    float sum = hsum((a0 + a1) + (a2 + a3));
    for (; i < K; ++i) sum += x[i] * to_float(row[i]);
    return sum;
}

#ifdef QWEN3MINI_AVX512
// 512-bit versions, 64 weights (one or two cache lines) a step. bf16: x goes back to bf16 pairs (exact: x
// holds values of a bf16 tensor whenever W is bf16) and vdpbf16ps multiplies 32 pairs and adds them into 16
// fp32 sums in one instruction. int8: vpmovsxbd + vcvtdq2ps widen 16 weights, an FMA adds them in. On the
// AVX-512 EPYC a prefetch 2 KB ahead read a model's matrices a few percent faster than 1 KB, int8 most
// (bench/RESULTS.md, "cpu kernels").
constexpr int kPrefetchBytes512 = 2048;

inline float row_dot(const float* x, const bf16_t* row, int K) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= K; i += 64) {
        __builtin_prefetch((const char*)(row + i) + kPrefetchBytes512, 0, 0);
        __builtin_prefetch((const char*)(row + i) + kPrefetchBytes512 + 64, 0, 0);
        const __m512bh x0 = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
        const __m512bh x1 = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(x + i + 32));
        a0 = _mm512_dpbf16_ps(a0, x0, (__m512bh)_mm512_loadu_si512(row + i));
        a1 = _mm512_dpbf16_ps(a1, x1, (__m512bh)_mm512_loadu_si512(row + i + 32));
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
    for (; i < K; ++i) sum += x[i] * to_float(row[i]);
    return sum;
}

inline __m512 load16(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i*)p)));
}

inline float row_dot(const float* x, const int8_t* row, int K) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(), a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= K; i += 64) {
        __builtin_prefetch((const char*)(row + i) + kPrefetchBytes512, 0, 0);
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), load16(row + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), load16(row + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), load16(row + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), load16(row + i + 48), a3);
    }
    float sum = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < K; ++i) sum += x[i] * to_float(row[i]);
    return sum;
}
#endif

template <class T, class W, class OutT>
inline void gemv_rows(const float* x, const W* w, int64_t ldw, int K, int n_begin, int n_end, const float* scale,
                      OutT* out) {
    for (int n = n_begin; n < n_end; ++n)
        out[n] = from_float<OutT>(round_to<T>(scaled(row_dot(x, w + n * ldw, K), scale, n)));
}

// Rows [n_begin, n_end) of the output, in blocks of 4 (then single rows for the tail).
template <class T, class W, class OutT>
inline void linear_block(const float* x, int64_t ldx, int M, const W* w, int64_t ldw, int K, int n_begin,
                         int n_end, const float* scale, OutT* out, int64_t ldo) {
    if (M == 1) return gemv_rows<T>(x, w, ldw, K, n_begin, n_end, scale, out);
    int n = n_begin;
    for (; n + 4 <= n_end; n += 4) linear_rows<4, T>(x, ldx, M, w, ldw, K, n, scale, out, ldo);
    for (; n < n_end; ++n) linear_rows<1, T>(x, ldx, M, w, ldw, K, n, scale, out, ldo);
}

// x in fp32: as is, or widened into `scratch` (x is a few rows in the regime this kernel serves).
inline const float* as_float(const float* x, int64_t, std::vector<float>&) { return x; }
inline const float* as_float(const bf16_t* x, int64_t n, std::vector<float>& scratch) {
    scratch.resize(n);
    to_float_row(x, scratch.data(), int(n));
    return scratch.data();
}

template <class T, class W>
void linear_scaled(const T* x, int M, const W* w, const float* scale, int N, int K, T* out) {
    std::vector<float> scratch;
    const float* xf = as_float(x, int64_t(M) * K, scratch);
    const int blocks = (N + 15) / 16;                     // 16 features per task: enough tasks, little overhead
    // Guided: each thread starts on a long contiguous run of rows (one stream for the prefetcher), and the
    // shrinking tail chunks let the thread that streams faster take more, so neither waits at the end (faster
    // than equal static halves on a shared 2-core Zen 3: bench/RESULTS.md, "cpu kernels").
#pragma omp parallel for schedule(guided, 4) if (int64_t(N) * K * std::max(M, 1) > 32768)
    for (int b = 0; b < blocks; ++b)
        linear_block<T>(xf, K, M, w, K, K, b * 16, std::min(N, b * 16 + 16), scale, out, N);
}

template <class T>
void linear(const T* x, int M, const T* w, int N, int K, T* out) { linear_scaled(x, M, w, nullptr, N, K, out); }

template <class T>
void linear_int8(const T* x, int M, const int8_t* w, const float* scale, int N, int K, T* out) {
    linear_scaled(x, M, w, scale, N, K, out);
}
