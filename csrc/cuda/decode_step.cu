// The CUDA backend's own decode step for dense Qwen3 models: one token per cache row, five kernels a layer.
//
// Contract: what qwen3mini/model.py Qwen3ForCausalLM.decode_step computes over the ops of reference.py (embedding,
// per layer add_rms_norm -> qkv_proj -> qk_norm_rope -> KV write -> attention_decode -> o_proj -> add_rms_norm ->
// gate_up_proj -> silu_mul -> down_proj, final norm, LM head), with the same rounding to the model dtype after
// every op. Python side: qwen3mini/ops/cuda.py (CudaDecodeStep), which passes the weights by their names in the
// model (qwen3mini/ops/decode_step.py). Why it exists: at batch 1 the op path is ~12 kernels a layer, most of
// them moving a few KB yet each costing a launch; this step is 5 (bench/RESULTS.md, "cuda", has the speeds).
//
// A layer here is
//   1. qkv GEMV      prologue: RMSNorm of the residual stream (input_layernorm); layer 0 reads the embedding row
//   2. attention     QK-Norm + RoPE of this token's q and k, K/V written into the cache at position lengths[b],
//                    split-KV attention (6 warps a block, merged in shared memory; where the cache has several
//                    splits, the last block to finish merges the blocks: no second kernel)
//   3. o GEMV        epilogue: residual += round(o)            (the residual add of add_rms_norm)
//   4. gate_up GEMV  prologue: RMSNorm (post_attention_layernorm); epilogue: silu(gate) * up (one warp computes
//                    gate row i and up row I + i, so the 2I-wide intermediate never exists)
//   5. down GEMV     epilogue: residual += round(down)
// and the step ends with the LM head GEMV (prologue: the final norm), which also advances lengths and, for greedy
// decoding, picks each row's argmax (GemvArgs::next_tokens).
//
// The projections' kernels, their norm prologues and residual epilogues are decode_step_gemv.cuh's (its top
// comment says how they load the weights and what was tried); the attention kernel and the host side are here.

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <climits>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "attention_tiles.cuh"
#include "decode_step_gemv.cuh"

namespace q3 {

// ------------------------------------------------------------------------------------------------ attention
// Warps per attention block, one K/V tile of 64 positions each at a time: 6 tiles in flight before the wait cover a
// 384-position cache in one round (4 warps, whose second round of tiles was loaded after the wait, were slower).
constexpr int ATT_WARPS = 6;

struct StepAttnArgs {
  const void* qkv;                // [B, (nH + 2 nKV) * D]: this token's fused projection
  const void *q_norm, *k_norm;    // [D]
  const void *cos, *sin;          // [capacity, D]: the model's rotary tables for every position
  void *k_cache, *v_cache;        // this layer's [B, S, nKV, D] (batch and position strides below; heads D apart)
  int64_t cache_b, cache_s;
  const int* lengths;             // [B]: the new token goes to position lengths[b]
  float *o_part, *lse_part;       // [B, nH, splits, D], [B, nH, splits]
  int* counters;                  // [B, nKV]: splits finished; zero between launches
  void* out;                      // [B, nH * D]
  int capacity, n_heads, n_kv, splits, chunk;
  float eps, scale_log2;
};

// One block of ATT_WARPS warps per (split of the cache, KV head, row). Before griddepcontrol.wait, every warp's
// first K/V tile starts streaming, and the constants of QK-Norm + RoPE and the zero rows of the query tile are
// loaded. After it, the lengths and this token's heads are read in one round trip, the warps normalise and
// rotate the group's queries and the key (TokenHeads), and the block holding the new position writes its K and V
// into the cache (for later steps) and into its own shared-memory tile (the copy may have fetched that row
// before the write). Each warp runs the online softmax of decode_split_kernel (attention.cu) over tiles w,
// w + ATT_WARPS, ... of the block's chunk; the warps' partials are merged in shared memory, and where the cache
// has several splits, the last block to finish merges the blocks' partials (no second kernel).
template <typename T, int D>
__global__ void __launch_bounds__(ATT_WARPS * 32) step_attention_kernel(const StepAttnArgs p) {
  constexpr int THREADS = ATT_WARPS * 32;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* qs = reinterpret_cast<T*>(smem_raw);         // 16 x D
  T* kv = qs + 16 * D;                            // per warp: a K tile and a V tile, BLOCK_N x D each
  T* knew = kv + ATT_WARPS * 2 * BLOCK_N * D;     // this token's K and V (D each)
  T* vnew = knew + D;
  __shared__ int last_block;
  pdl_launch_dependents();
  const int split = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int group = p.n_heads / p.n_kv, h0 = kvh * group, s0 = split * p.chunk;
  T* kg = static_cast<T*>(p.k_cache) + (int64_t)b * p.cache_b + (int64_t)kvh * D;
  T* vg = static_cast<T*>(p.v_cache) + (int64_t)b * p.cache_b + (int64_t)kvh * D;
  T* ks = kv + warp * 2 * BLOCK_N * D;
  T* vs = ks + BLOCK_N * D;
  const AttnStrides stride{p.cache_s, 0};
  int n0 = s0 + warp * BLOCK_N;  // this warp's first tile
  // Each lane copies its share of its warp's first K/V tile before the wait: the cache rows before this
  // token's were written by earlier steps, and the lengths change only at the end of a step (the LM head), so
  // the lengths read now are this step's unless the previous step has not finished; the lane then re-reads
  // them after the wait and copies again if they moved. (The new position's row, if fetched, is replaced in
  // shared memory below.)
  auto copy_first_tile = [&](int length) {
    const int end = min(s0 + p.chunk, min(length + 1, p.capacity));
    if (n0 < end) {
      load_tile_by<T, D, 32>(lane, ks, kg, stride, n0, 0, BLOCK_N, end - n0);
      load_tile_by<T, D, 32>(lane, vs, vg, stride, n0, 0, BLOCK_N, end - n0);
    }
    cp_async_commit();
  };
  const int early = __ldcg(p.lengths + b);  // (through L2 both times: no stale L1 line after the wait)
  copy_first_tile(early);
  // Before the wait as well: the zero rows that pad the group's queries to the 16-row MMA tile, the norm weights
  // and the rotation at position `early` (all constant).
  auto load_rope = [&](RopeConsts<T, D>& rc, int length) {  // the rotation of position min(length, capacity - 1)
    const int64_t row = (int64_t)min(length, p.capacity - 1) * D;
    rc.load(static_cast<const T*>(p.q_norm), static_cast<const T*>(p.k_norm), static_cast<const T*>(p.cos) + row,
            static_cast<const T*>(p.sin) + row, lane);
  };
  for (int i = threadIdx.x; i < (16 - group) * (D / 8); i += THREADS)
    *reinterpret_cast<uint4*>(qs + swz<D>(group + i / (D / 8), (i % (D / 8)) * 8)) = make_uint4(0, 0, 0, 0);
  RopeConsts<T, D> rc;
  load_rope(rc, early);
  pdl_wait();  // the qkv projection, the lengths and the cache are earlier kernels' writes

  const int pos = __ldcg(p.lengths + b);       // this token's position (the caller keeps it < capacity)
  TokenHeads<T, D, ATT_WARPS> heads;           // issued with the lengths' load: one round trip for both
  heads.load(static_cast<const T*>(p.qkv) + (int64_t)b * (p.n_heads + 2 * p.n_kv) * D, h0, p.n_heads + kvh,
             p.n_heads + p.n_kv + kvh, group, warp, lane);
  if (pos != early) {
    cp_async_wait<0>();
    copy_first_tile(pos);
    load_rope(rc, pos);
  }
  const int len = min(pos + 1, p.capacity);    // positions attended
  if (s0 >= len) {
    cp_async_wait<0>();  // (nothing was copied at the right length; a stale copy must land before the exit)
    return;
  }
  const int s1 = min(s0 + p.chunk, len), active = (len + p.chunk - 1) / p.chunk;
  const bool holds_new = pos < p.capacity && pos >= s0 && pos < s1;
  heads.finish(qs, knew, vnew, holds_new ? kg + (int64_t)pos * p.cache_s : nullptr,
               holds_new ? vg + (int64_t)pos * p.cache_s : nullptr, rc, group, p.eps, warp, lane);
  __syncthreads();

  uint32_t qf[D / 16][4];
  load_q_frags<T, D>(qf, qs, 0, lane);
  float o[D / 8][4] = {};
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  for (; n0 < s1; n0 += ATT_WARPS * BLOCK_N) {
    cp_async_wait<0>();
    __syncwarp();
    if (holds_new && pos >= n0 && pos < n0 + BLOCK_N) {  // the new row, as computed (not as fetched)
      for (int c = lane; c < D; c += 32) ks[swz<D>(pos - n0, c)] = knew[c], vs[swz<D>(pos - n0, c)] = vnew[c];
      __syncwarp();
    }
    float s[BLOCK_N / 8][4];
    qk_tile<T, D>(s, qf, ks, lane);
    scale_and_mask(s, n0, s1, p.scale_log2, lane);
    softmax_update<D>(s, m, l, o);
    pv_tile<T, D>(o, s, vs, lane);
    __syncwarp();  // done with this tile's buffers before the next copy lands in them
    const int next = n0 + ATT_WARPS * BLOCK_N;
    if (next < s1) {
      load_tile_by<T, D, 32>(lane, ks, kg, stride, next, 0, BLOCK_N, s1 - next);
      load_tile_by<T, D, 32>(lane, vs, vg, stride, next, 0, BLOCK_N, s1 - next);
      cp_async_commit();
    }
  }

  // Merge the warps: each writes its normalised rows and their log2-sum-exp (-inf: the warp saw no position).
  __syncthreads();  // every warp is done with the K/V tiles: reuse them
  float* wo = reinterpret_cast<float*>(kv);   // [ATT_WARPS, 16, D]
  float* wlse = wo + ATT_WARPS * 16 * D;      // [ATT_WARPS, 16]
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int head = g + r * 8;
    const float sum = warp_sum4(l[r]);
    if (head >= group) continue;
    const float inv = sum > 0.f ? 1.f / sum : 0.f;
    float* dst = wo + (warp * 16 + head) * D + 2 * t;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt)
      *reinterpret_cast<float2*>(dst + dt * 8) = make_float2(o[dt][2 * r] * inv, o[dt][2 * r + 1] * inv);
    if (t == 0) wlse[warp * 16 + head] = sum > 0.f ? m[r] + log2f(sum) : -INFINITY;
  }
  __syncthreads();
  T* out = static_cast<T*>(p.out) + (int64_t)b * p.n_heads * D;
  const int64_t part0 = ((int64_t)b * p.n_heads + h0) * p.splits;  // (b, h0, split 0) of the block partials
  for (int i = threadIdx.x; i < group * D; i += THREADS) {
    const int head = i / D, d = i % D;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < ATT_WARPS; ++w) mx = fmaxf(mx, wlse[w * 16 + head]);  // finite: warp 0 saw s0
    float acc = 0.f, wsum = 0.f;
#pragma unroll
    for (int w = 0; w < ATT_WARPS; ++w) {
      const float lse = wlse[w * 16 + head];
      if (lse == -INFINITY) continue;  // an empty warp wrote no rows (its scratch holds stale bytes)
      const float weight = exp2f(lse - mx);
      wsum += weight;
      acc += weight * wo[(w * 16 + head) * D + d];
    }
    if (active == 1) {
      out[(int64_t)(h0 + head) * D + d] = Traits<T>::from_float(acc / wsum);
    } else {
      p.o_part[(part0 + (int64_t)head * p.splits + split) * D + d] = acc / wsum;
      if (d == 0) p.lse_part[part0 + (int64_t)head * p.splits + split] = mx + log2f(wsum);
    }
  }
  if (active == 1) return;

  // Several splits: whichever block finishes last merges them (threadFenceReduction pattern): publish the
  // partials, count; the last one reads everyone's through L2 and resets the counter for the next launch.
  __threadfence();
  __syncthreads();
  int* counter = p.counters + (int64_t)b * p.n_kv + kvh;
  if (threadIdx.x == 0) last_block = atomicAdd(counter, 1) == active - 1;
  __syncthreads();
  if (!last_block) return;
  __threadfence();
  for (int i = threadIdx.x; i < group * D; i += THREADS) {
    const int head = i / D, d = i % D;
    const float* lse = p.lse_part + part0 + (int64_t)head * p.splits;
    const float* op = p.o_part + (part0 + (int64_t)head * p.splits) * D + d;
    float mx = -INFINITY;
    for (int s = 0; s < active; ++s) mx = fmaxf(mx, __ldcg(lse + s));
    float acc = 0.f, wsum = 0.f;
#pragma unroll 4
    for (int s = 0; s < active; ++s) {
      const float weight = exp2f(__ldcg(lse + s) - mx);
      wsum += weight;
      acc += weight * __ldcg(op + (int64_t)s * D);
    }
    out[(int64_t)(h0 + head) * D + d] = Traits<T>::from_float(acc / wsum);
  }
  if (threadIdx.x == 0) *counter = 0;
}

}  // namespace q3

namespace {
using namespace q3;

constexpr int kMaxRows = 8;  // the most cache rows a step serves (MAX_ROWS in Python)
// A layer's weights by their names in the model (qwen3mini/ops/decode_step.py, named_weights), in the order
// DecodeStep::weight(layer, i) reads them.
constexpr const char* kLayerWeights[] = {"input_layernorm.weight",   "self_attn.qkv_proj.weight",
                                         "self_attn.q_norm.weight",  "self_attn.k_norm.weight",
                                         "self_attn.o_proj.weight",  "post_attention_layernorm.weight",
                                         "mlp.gate_up_proj.weight",  "mlp.down_proj.weight"};
constexpr int kWeightsPerLayer = 8;

torch::Tensor named(const std::map<std::string, torch::Tensor>& weights, const std::string& name) {
  auto it = weights.find(name);
  TORCH_CHECK(it != weights.end(), "DecodeStep: the model has no weight '", name, "' (dense models only)");
  return it->second;
}

void check_tensor(const torch::Tensor& t, const torch::Tensor& like, const char* name, std::vector<int64_t> shape) {
  TORCH_CHECK(t.device() == like.device() && t.scalar_type() == like.scalar_type(), "DecodeStep: ", name,
              " must be on ", like.device(), " in ", like.scalar_type(), ", got ", t.device(), " ", t.scalar_type());
  TORCH_CHECK(t.sizes() == c10::IntArrayRef(shape), "DecodeStep: ", name, " must be ", c10::IntArrayRef(shape), ", got ",
              t.sizes());
  TORCH_CHECK(t.is_contiguous() && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0, "DecodeStep: ", name,
              " must be contiguous and 16-byte aligned");
}
}  // namespace

// The fused decode step over one KV cache (see the top of this file). Holds the weights, the cache views and
// its own activation buffers, so every launch address is fixed: step() can be captured in a CUDA graph.
class DecodeStep {
 public:
  DecodeStep(const std::map<std::string, torch::Tensor>& weights, torch::Tensor k_cache, torch::Tensor v_cache,
             torch::Tensor lengths, torch::Tensor cos, torch::Tensor sin, int64_t n_heads, int64_t n_kv, double eps,
             int64_t min_chunk)
      : embed_(named(weights, "model.embed_tokens.weight")), final_norm_(named(weights, "model.norm.weight")),
        lm_head_(named(weights, "lm_head.weight")), k_(k_cache), v_(v_cache), lengths_(lengths), cos_(cos),
        sin_(sin), n_heads_(n_heads), n_kv_(n_kv), eps_(eps) {
    const torch::Tensor &embed = embed_, &final_norm = final_norm_, &lm_head = lm_head_;
    TORCH_CHECK(embed.is_cuda() && embed.dim() == 2 &&
                    (embed.scalar_type() == at::kBFloat16 || embed.scalar_type() == at::kHalf),
                "DecodeStep: embed must be a bf16/fp16 CUDA tensor [vocab, hidden]");
    TORCH_CHECK(k_cache.dim() == 5 && k_cache.sizes() == v_cache.sizes() && k_cache.strides() == v_cache.strides(),
                "DecodeStep: k_cache and v_cache must be [layers, B, S, nKV, D] views with the same strides");
    layers_ = static_cast<int>(k_cache.size(0));
    TORCH_CHECK(layers_ >= 1, "DecodeStep: the cache has no layers");
    for (int l = 0; l < layers_; ++l)
      for (const char* name : kLayerWeights) w_.push_back(named(weights, "model.layers." + std::to_string(l) + "." + name));
    batch_ = k_cache.size(1), capacity_ = k_cache.size(2), head_dim_ = k_cache.size(4);
    hidden_ = embed.size(1), vocab_ = embed.size(0);
    inter_ = w_[7].size(1);
    const int64_t D = head_dim_, H = hidden_, qkv_rows = (n_heads + 2 * n_kv) * D;
    TORCH_CHECK(D == 64 || D == 128, "DecodeStep: head_dim must be 64 or 128, got ", D);
    TORCH_CHECK(k_cache.size(0) == layers_ && k_cache.size(3) == n_kv, "DecodeStep: the cache must be [", layers_,
                ", B, S, ", n_kv, ", D], got ", k_cache.sizes());
    TORCH_CHECK(k_cache.stride(4) == 1 && k_cache.stride(3) == D && k_cache.stride(2) == n_kv * D,
                "DecodeStep: each cache row must be dense [S, nKV, D]");
    TORCH_CHECK(n_heads % n_kv == 0 && n_heads / n_kv <= 16, "DecodeStep: query heads per KV head must divide evenly ",
                "and be at most 16, got ", n_heads, "/", n_kv);
    TORCH_CHECK(batch_ >= 1 && batch_ <= kMaxRows, "DecodeStep: 1 to ", kMaxRows, " cache rows, got ", batch_);
    TORCH_CHECK(H % 8 == 0 && inter_ % 8 == 0, "DecodeStep: hidden and intermediate sizes must be multiples of 8");
    TORCH_CHECK(lengths.is_cuda() && lengths.scalar_type() == at::kInt && lengths.numel() == batch_ &&
                    lengths.is_contiguous(),
                "DecodeStep: lengths must be a contiguous int32 CUDA tensor of ", batch_, " entries");
    check_tensor(embed, embed, "embed", {vocab_, H});
    check_tensor(final_norm, embed, "final norm", {H});
    check_tensor(lm_head, embed, "lm_head", {vocab_, H});
    check_tensor(cos, embed, "cos", {capacity_, D});
    check_tensor(sin, embed, "sin", {capacity_, D});
    TORCH_CHECK(k_cache.scalar_type() == embed.scalar_type() && k_cache.device() == embed.device(),
                "DecodeStep: the cache must be in the model's dtype and on its device");
    for (int l = 0; l < layers_; ++l) {
      const torch::Tensor* lw = &w_[l * kWeightsPerLayer];
      check_tensor(lw[0], embed, "input_layernorm", {H});
      check_tensor(lw[1], embed, "qkv_proj", {qkv_rows, H});
      check_tensor(lw[2], embed, "q_norm", {D});
      check_tensor(lw[3], embed, "k_norm", {D});
      check_tensor(lw[4], embed, "o_proj", {H, n_heads * D});
      check_tensor(lw[5], embed, "post_attention_layernorm", {H});
      check_tensor(lw[6], embed, "gate_up_proj", {2 * inter_, H});
      check_tensor(lw[7], embed, "down_proj", {H, inter_});
    }
    auto opts = embed.options();
    res_ = torch::empty({batch_, H}, opts);
    qkv_ = torch::empty({batch_, qkv_rows}, opts);
    attn_ = torch::empty({batch_, n_heads * D}, opts);
    act_ = torch::empty({batch_, inter_}, opts);
    logits_ = torch::empty({batch_, vocab_}, opts);
    // Split-KV plan from shapes alone (no host sync): splits of whole block-chunks (ATT_WARPS tiles, at least
    // min_chunk positions), enough of them for several blocks per SM; splits past a row's length exit at once.
    int sms = 0;
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, embed.get_device()));
    const int64_t unit = ATT_WARPS * BLOCK_N;
    const int64_t smallest = (std::max<int64_t>(min_chunk, unit) + unit - 1) / unit * unit;
    const int64_t want = (2LL * sms + batch_ * n_kv - 1) / (batch_ * n_kv);
    splits_ = std::max<int64_t>(1, std::min((capacity_ + smallest - 1) / smallest, want));
    chunk_ = ((capacity_ + splits_ - 1) / splits_ + unit - 1) / unit * unit;
    splits_ = (capacity_ + chunk_ - 1) / chunk_;
    auto f32 = opts.dtype(at::kFloat);
    o_part_ = torch::empty({batch_, n_heads, splits_, D}, f32);
    lse_part_ = torch::empty({batch_, n_heads, splits_}, f32);
    counters_ = torch::zeros({batch_, n_kv}, opts.dtype(at::kInt));
    best_key_ = torch::zeros({batch_}, opts.dtype(at::kLong));  // greedy decoding's state (zero between steps)
    blocks_done_ = torch::zeros({1}, opts.dtype(at::kInt));
  }

  // tokens: int64 [n], one per cache row 0..n-1 (1 <= n <= the cache's rows). Returns the logits [n, vocab], a
  // view of a buffer the next step overwrites.
  torch::Tensor step(torch::Tensor tokens, std::optional<torch::Tensor> next_tokens) {
    TORCH_CHECK(tokens.dim() == 1 && tokens.numel() >= 1 && tokens.numel() <= batch_, "DecodeStep.step: tokens must ",
                "hold 1 to ", batch_, " ids (one per cache row), got ", tokens.sizes());
    rows_ = tokens.numel();
    check_ids(tokens, "tokens");
    int64_t* greedy = nullptr;
    if (next_tokens) {
      check_ids(*next_tokens, "next_tokens");
      TORCH_CHECK(next_tokens->is_contiguous(), "DecodeStep.step: next_tokens must be contiguous");
      greedy = next_tokens->data_ptr<int64_t>();
    }
    const c10::cuda::CUDAGuard guard(embed_.device());
    auto ids = tokens.contiguous();
    auto stream = c10::cuda::getCurrentCUDAStream();
    if (embed_.scalar_type() == at::kBFloat16) run<__nv_bfloat16>(ids, greedy, stream);
    else run<__half>(ids, greedy, stream);
    return logits_.narrow(0, 0, rows_);
  }

  int64_t max_rows() const { return batch_; }

  int64_t splits() const { return splits_; }

 private:
  const torch::Tensor& weight(int layer, int i) const { return w_[layer * kWeightsPerLayer + i]; }

  void check_ids(const torch::Tensor& t, const char* name) const {
    TORCH_CHECK(t.is_cuda() && t.scalar_type() == at::kLong && t.numel() == rows_ && t.device() == embed_.device(),
                "DecodeStep.step: ", name, " must be an int64 CUDA tensor of ", rows_, " ids (one per cache row) on ",
                embed_.device(), ", got ", t.sizes(), " ", t.scalar_type(), " on ", t.device());
  }

  GemvArgs gemv(const torch::Tensor& w, const torch::Tensor& x, int64_t n) const {
    GemvArgs a{};
    a.w = w.data_ptr(), a.x = x.data_ptr(), a.n = static_cast<int>(n), a.k = static_cast<int>(w.size(1));
    a.batch = static_cast<int>(rows_), a.vocab = static_cast<int>(vocab_), a.eps = static_cast<float>(eps_);
    return a;
  }

  template <typename T>
  void run(const torch::Tensor& ids, int64_t* next_tokens, cudaStream_t stream) {
    const int64_t D = head_dim_, layer_stride = k_.stride(0);
    for (int l = 0; l < layers_; ++l) {
      // 1. qkv projection of the normalised residual stream (layer 0: of the embedding rows)
      GemvArgs qkv = gemv(weight(l, 1), res_, weight(l, 1).size(0));
      qkv.norm_w = weight(l, 0).data_ptr(), qkv.y = qkv_.data_ptr();
      if (l == 0) qkv.embed = embed_.data_ptr(), qkv.tokens = ids.data_ptr<int64_t>(), qkv.res = res_.data_ptr();
      launch_step_gemv<T>(qkv, kStore, stream);
      // 2. attention
      StepAttnArgs p{qkv_.data_ptr(), weight(l, 2).data_ptr(), weight(l, 3).data_ptr(), cos_.data_ptr(),
                        sin_.data_ptr(), static_cast<T*>(k_.data_ptr()) + l * layer_stride,
                        static_cast<T*>(v_.data_ptr()) + l * layer_stride, k_.stride(1), k_.stride(2),
                        lengths_.data_ptr<int>(), o_part_.data_ptr<float>(), lse_part_.data_ptr<float>(),
                        counters_.data_ptr<int>(), attn_.data_ptr(), static_cast<int>(capacity_),
                        static_cast<int>(n_heads_), static_cast<int>(n_kv_), static_cast<int>(splits_),
                        static_cast<int>(chunk_), static_cast<float>(eps_),
                        static_cast<float>(1.4426950408889634 / std::sqrt(static_cast<double>(D)))};
      if (D == 64) launch_attention<T, 64>(p, stream);
      else launch_attention<T, 128>(p, stream);
      // 3. o_proj, added to the residual stream
      GemvArgs o = gemv(weight(l, 4), attn_, hidden_);
      o.res = res_.data_ptr();
      launch_step_gemv<T>(o, kResidual, stream);
      // 4. gate_up projection of the normalised stream, silu(gate) * up
      GemvArgs gu = gemv(weight(l, 6), res_, inter_);
      gu.norm_w = weight(l, 5).data_ptr(), gu.y = act_.data_ptr();
      launch_step_gemv<T>(gu, kSwiGLU, stream);
      // 5. down_proj, added to the residual stream
      GemvArgs down = gemv(weight(l, 7), act_, hidden_);
      down.res = res_.data_ptr();
      launch_step_gemv<T>(down, kResidual, stream);
    }
    // 6. the LM head of the final norm; it also advances the lengths (and picks the greedy tokens, if asked)
    GemvArgs head = gemv(lm_head_, res_, vocab_);
    head.norm_w = final_norm_.data_ptr(), head.y = logits_.data_ptr(), head.lengths = lengths_.data_ptr<int>();
    if (next_tokens != nullptr) {
      head.next_tokens = next_tokens, head.blocks_done = blocks_done_.data_ptr<int>();
      head.best_key = reinterpret_cast<unsigned long long*>(best_key_.data_ptr<int64_t>());
    }
    launch_step_gemv<T>(head, kStore, stream);
  }

  template <typename T, int D>
  void launch_attention(const StepAttnArgs& p, cudaStream_t stream) {
    const int smem = (16 + ATT_WARPS * 2 * BLOCK_N + 2) * D * sizeof(T);
    auto kernel = step_attention_kernel<T, D>;
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    launch_pdl(kernel, dim3(splits_, n_kv_, rows_), dim3(ATT_WARPS * 32), smem, stream, p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }

  std::vector<torch::Tensor> w_;
  torch::Tensor embed_, final_norm_, lm_head_, k_, v_, lengths_, cos_, sin_;
  torch::Tensor res_, qkv_, attn_, act_, logits_, o_part_, lse_part_, counters_, best_key_, blocks_done_;
  int64_t n_heads_, n_kv_, batch_ = 0, rows_ = 0, capacity_ = 0, head_dim_ = 0, hidden_ = 0, vocab_ = 0, inter_ = 0;
  int64_t splits_ = 1, chunk_ = ATT_WARPS * BLOCK_N;
  int layers_ = 0;
  double eps_;
};

void bind_decode_step(pybind11::module& m) {
  m.attr("MAX_ROWS") = pybind11::int_(kMaxRows);
  pybind11::class_<DecodeStep>(m, "DecodeStep", "The fused decode step of a dense model (csrc/cuda/decode_step.cu)")
      .def(pybind11::init<const std::map<std::string, torch::Tensor>&, torch::Tensor, torch::Tensor, torch::Tensor,
                          torch::Tensor, torch::Tensor, int64_t, int64_t, double, int64_t>())
      .def("step", &DecodeStep::step,
           "tokens int64 [n] for cache rows 0..n-1 -> logits [n, vocab] (a view of a buffer reused by every step); "
           "next_tokens int64 [n], if given, receives each row's greedy token (logits.argmax(-1)), computed in the "
           "LM head kernel",
           pybind11::arg("tokens"), pybind11::arg("next_tokens") = pybind11::none())
      .def_property_readonly("max_rows", &DecodeStep::max_rows)
      .def_property_readonly("splits", &DecodeStep::splits);
}
