// Attention of the op contract (csrc/README.md): causal prefill over packed sequences and decode against the
// KV cache, both with online softmax. Included by kernels.h inside its namespace (dtype plumbing, dot products
// and exp8 come from there), once per instruction set.

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
