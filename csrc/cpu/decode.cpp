// The C++ backend's whole decode step (qwen3mini.ops.decode_step; Python side: qwen3mini/ops/cpp.py CppDecodeStep).
//
// model.decode_step runs a token through the model one op at a time from Python, a few thousand Python calls
// and a few hundred ATen allocations a token on top of the arithmetic (bench/RESULTS.md, "cpu kernels"). This
// file runs the same step as one call, in the manner of llama2.c's forward(): the same kernels as the ops (the
// KernelTable of ops.cpp), in the same order, with the same roundings, into buffers allocated once. Its logits
// therefore equal the op path's (tests/model/test_decoders.py checks them, the K/V it writes and the lengths
// it advances). The weights come by their names in the model (qwen3mini/ops/decode_step.py, named_weights).
//
// One step, for n <= B rows each holding lengths[b] tokens (model.py, DecoderLayer and DecodeContext):
//   x = embed[token]
//   per layer:  h, residual = add_rms_norm(x, residual)          (rms_norm of x in the first layer)
//               q, k, v = split(h @ Wqkv^T);  q, k = qk_norm_rope(q, k, cos[pos], sin[pos])
//               cache[b, pos] = k, v;  x = attention(q, cache, pos + 1) @ Wo^T
//               h, residual = add_rms_norm(x, residual)
//               x = down(silu(gate) * up)  or the MoE block: route, experts
//   logits = add_rms_norm(x, residual) @ Wlm^T;  lengths += 1
#include <torch/extension.h>

#include "common.h"

namespace {

template <class T> T* ptr(const at::Tensor& t) { return reinterpret_cast<T*>(t.data_ptr()); }

// A projection's weight [N, K]: in the activation dtype (`<name>.weight`), or int8 with one fp32 scale per output
// feature (`<name>.qweight`, `<name>.scale`: qwen3mini/quantize.py), multiplied by linear_int8.
struct Projection {
    at::Tensor weight, scale;                              // scale undefined: not quantised
    bool defined() const { return weight.defined(); }
    int64_t size(int dim) const { return weight.size(dim); }
};

// One decoder layer's weights; the MLP's or the MoE block's are empty for the other kind.
struct Layer {
    at::Tensor input_norm;
    Projection qkv;
    at::Tensor q_norm, k_norm;
    Projection o;
    at::Tensor post_norm;
    Projection gate_up, down;                              // dense MLP
    at::Tensor router, experts_gate_up, experts_down;      // MoE: [E, H], [E, 2I, H], [E, H, I]
    bool moe() const { return router.defined(); }
};

class DecodeStep {
  public:
    DecodeStep(std::map<std::string, at::Tensor> weights, at::Tensor k_cache, at::Tensor v_cache, at::Tensor lengths,
               at::Tensor cos, at::Tensor sin, int64_t num_heads, int64_t num_kv_heads, double eps, double scale,
               int64_t top_k, bool norm_topk)
        : k_cache_(k_cache), v_cache_(v_cache), lengths_(lengths), cos_(cos), sin_(sin), nH_(num_heads),
          nKV_(num_kv_heads), eps_(eps), scale_(scale), top_k_(top_k), norm_topk_(norm_topk) {
        embed_ = weight(weights, "model.embed_tokens.weight", true);
        final_norm_ = weight(weights, "model.norm.weight", true);
        head_ = projection(weights, "lm_head", true);
        const at::Tensor& embed = embed_;
        const char* op = "CppDecodeStep";
        TORCH_CHECK(embed.dim() == 2, op, ": embed must be [vocab, hidden]");
        const auto dtype = embed.scalar_type();
        TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, op, ": dtype ", dtype,
                    " not supported (float32 or bfloat16)");
        TORCH_CHECK(k_cache.dim() == 5 && k_cache.is_contiguous() && v_cache.is_contiguous() &&
                        v_cache.sizes() == k_cache.sizes(),
                    op, ": k_cache/v_cache must be contiguous [layers, B, S, nKV, D], got ", k_cache.sizes());
        B_ = k_cache.size(1), S_ = k_cache.size(2), D_ = k_cache.size(4), H_ = embed.size(1);
        TORCH_CHECK(k_cache.size(3) == nKV_, op, ": k_cache ", k_cache.sizes(), " does not fit ", nKV_, " KV heads");
        TORCH_CHECK(nKV_ > 0 && nH_ % nKV_ == 0 && D_ % 2 == 0 && D_ <= 512, op, ": unsupported heads nH=", nH_,
                    " nKV=", nKV_, " D=", D_);
        TORCH_CHECK(lengths.scalar_type() == at::kInt && lengths.is_contiguous() && lengths.numel() == B_, op,
                    ": lengths must be a contiguous int32 [", B_, "]");
        TORCH_CHECK(cos.dim() == 2 && cos.size(0) == S_ && cos.size(1) == D_ && sin.sizes() == cos.sizes(), op,
                    ": cos/sin tables must be [", S_, ", ", D_, "], got ", cos.sizes());
        for (int64_t i = 0; i < k_cache.size(0); ++i) layers_.push_back(to_layer(weights, i));
        TORCH_CHECK(!weights.count("model.layers." + std::to_string(k_cache.size(0)) + ".input_layernorm.weight"), op,
                    ": the model has more layers than k_cache (", k_cache.size(0), ")");
        std::vector<at::Tensor> all = {embed_, final_norm_, k_cache, v_cache, cos, sin};
        std::vector<Projection> projections = {head_};
        for (const Layer& l : layers_) {
            for (const at::Tensor& t : {l.input_norm, l.q_norm, l.k_norm, l.post_norm, l.router, l.experts_gate_up,
                                        l.experts_down})
                if (t.defined()) all.push_back(t);
            for (const Projection& p : {l.qkv, l.o, l.gate_up, l.down})
                if (p.defined()) projections.push_back(p);
        }
        for (const Projection& p : projections) {
            if (!p.scale.defined()) {
                all.push_back(p.weight);
                continue;
            }
            TORCH_CHECK(p.weight.device().is_cpu() && p.weight.scalar_type() == at::kChar && p.weight.dim() == 2 &&
                            p.weight.is_contiguous() && p.scale.device().is_cpu() &&
                            p.scale.scalar_type() == at::kFloat && p.scale.is_contiguous() &&
                            p.scale.sizes() == at::IntArrayRef({p.weight.size(0)}),
                        op, ": a quantised weight must be a contiguous CPU int8 [N, K] with a float32 scale [N]; got ",
                        p.weight.scalar_type(), " ", p.weight.sizes(), " and ", p.scale.scalar_type(), " ",
                        p.scale.sizes());
        }
        for (const at::Tensor& t : all)
            TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == dtype && t.is_contiguous(), op,
                        ": every weight, the caches and the rotary tables must be contiguous CPU ", dtype,
                        " tensors; got ", t.scalar_type(), " ", t.sizes());
        TORCH_CHECK(head_.weight.dim() == 2 && head_.size(1) == H_, op, ": head must be [vocab, ", H_, "]");

        const auto opts = embed.options();
        const int64_t qkv_width = (nH_ + 2 * nKV_) * D_;
        int64_t widest = std::max({qkv_width, nH_ * D_, H_}), intermediate = 1;  // projection outputs; MLP width
        for (const Layer& l : layers_) {
            widest = std::max(widest, l.moe() ? l.router.size(0) : l.gate_up.size(0));
            if (!l.moe()) intermediate = std::max(intermediate, l.down.size(1));
        }
        x_ = at::empty({B_, H_}, opts), residual_ = at::empty({B_, H_}, opts), h_ = at::empty({B_, H_}, opts);
        wide_ = at::empty({B_, widest}, opts), act_ = at::empty({B_, intermediate}, opts);
        q_ = at::empty({B_, nH_, D_}, opts), k_ = at::empty({B_, nKV_, D_}, opts);
        attn_ = at::empty({B_, nH_ * D_}, opts), rope_cos_ = at::empty({B_, D_}, opts);
        rope_sin_ = at::empty({B_, D_}, opts), seqlens_ = at::empty({B_}, lengths.options());
        ids_ = at::empty({B_, std::max<int64_t>(top_k, 1)}, lengths.options().dtype(at::kLong));
        route_weights_ = at::empty({B_, std::max<int64_t>(top_k, 1)}, opts);
        logits_ = at::empty({B_, head_.size(0)}, opts);
    }

    // tokens: int64 [n], one per cache row 0..n-1 (n <= B). Returns the logits [n, vocab] (a view of a buffer
    // the next step overwrites).
    at::Tensor step(const at::Tensor& tokens) {
        TORCH_CHECK(tokens.device().is_cpu() && tokens.scalar_type() == at::kLong && tokens.dim() == 1 &&
                        tokens.numel() >= 1 && tokens.numel() <= B_ && tokens.is_contiguous(),
                    "CppDecodeStep.step: tokens must be a contiguous int64 CPU vector of 1 to ", B_,
                    " ids (one per cache row), got ", tokens.scalar_type(), " ", tokens.sizes());
        const int64_t n = tokens.numel();
        const int64_t* token = tokens.data_ptr<int64_t>();
        const int32_t* len = lengths_.data_ptr<int32_t>();
        for (int64_t b = 0; b < n; ++b) {
            TORCH_CHECK(token[b] >= 0 && token[b] < embed_.size(0), "CppDecodeStep.step: token ", token[b],
                        " outside the vocabulary [0, ", embed_.size(0), ")");
            TORCH_CHECK(len[b] >= 0 && len[b] < S_, "CppDecodeStep.step: cache row ", b, " holds ", len[b],
                        " tokens; the KV cache holds ", S_);
        }
        if (embed_.scalar_type() == at::kFloat)
            run<float>(kernels<float>(), token, len, int(n));
        else
            run<bf16_t>(kernels<bf16_t>(), token, len, int(n));
        return logits_.narrow(0, 0, n);
    }

    int64_t max_rows() const { return B_; }

  private:
    // The weight `name` (a key of ops/decode_step.py named_weights), or an undefined tensor if it is absent and
    // not required.
    static at::Tensor weight(const std::map<std::string, at::Tensor>& weights, const std::string& name,
                             bool required) {
        auto it = weights.find(name);
        TORCH_CHECK(it != weights.end() || !required, "CppDecodeStep: the model has no weight '", name, "'");
        return it == weights.end() ? at::Tensor() : it->second;
    }

    // The projection `name`: `name.weight`, or else `name.qweight` with `name.scale` (int8).
    static Projection projection(const std::map<std::string, at::Tensor>& weights, const std::string& name,
                                 bool required) {
        if (weights.count(name + ".weight") || !weights.count(name + ".qweight"))
            return {weight(weights, name + ".weight", required), at::Tensor()};
        return {weights.at(name + ".qweight"), weight(weights, name + ".scale", true)};
    }

    static Layer to_layer(const std::map<std::string, at::Tensor>& w, int64_t index) {
        const std::string at = "model.layers." + std::to_string(index) + ".";
        auto get = [&](const char* name, bool required) { return weight(w, at + name, required); };
        auto get_projection = [&](const char* name, bool required) { return projection(w, at + name, required); };
        Layer l{get("input_layernorm.weight", true),
                get_projection("self_attn.qkv_proj", true),
                get("self_attn.q_norm.weight", true),
                get("self_attn.k_norm.weight", true),
                get_projection("self_attn.o_proj", true),
                get("post_attention_layernorm.weight", true),
                get_projection("mlp.gate_up_proj", false),
                get_projection("mlp.down_proj", false),
                get("mlp.gate.weight", false),
                get("mlp.experts.gate_up_proj", false),
                get("mlp.experts.down_proj", false)};
        TORCH_CHECK(l.moe() ? l.experts_gate_up.defined() && l.experts_down.defined()
                            : l.gate_up.defined() && l.down.defined(),
                    "CppDecodeStep: layer ", index, " needs mlp.gate_up_proj + mlp.down_proj or mlp.gate + ",
                    "mlp.experts.gate_up_proj + mlp.experts.down_proj");
        return l;
    }

    template <class T>
    void run(const KernelTable<T>& kt, const int64_t* token, const int32_t* len, int B) {
        const int H = int(H_), D = int(D_), nH = int(nH_), nKV = int(nKV_);
        const float eps = float(eps_);
        T *x = ptr<T>(x_), *residual = ptr<T>(residual_), *h = ptr<T>(h_), *wide = ptr<T>(wide_);
        int32_t* seqlens = seqlens_.data_ptr<int32_t>();
        for (int b = 0; b < B; ++b) {
            std::memcpy(x + b * H, ptr<T>(embed_) + token[b] * H, H * sizeof(T));
            std::memcpy(ptr<T>(rope_cos_) + b * D, ptr<T>(cos_) + int64_t(len[b]) * D, D * sizeof(T));
            std::memcpy(ptr<T>(rope_sin_) + b * D, ptr<T>(sin_) + int64_t(len[b]) * D, D * sizeof(T));
            seqlens[b] = len[b] + 1;
        }
        const int64_t qkv_width = (nH + 2 * nKV) * D;
        for (size_t i = 0; i < layers_.size(); ++i) {
            const Layer& l = layers_[i];
            if (i == 0) {
                std::memcpy(residual, x, sizeof(T) * B * H);
                kt.rms_norm(x, ptr<T>(l.input_norm), eps, B, H, h);
            } else {
                kt.add_rms_norm(x, residual, ptr<T>(l.input_norm), eps, B, H, h, residual);
            }
            // attention: q, k, v are head slices of the fused projection's rows (stride qkv_width)
            project(kt, l.qkv, h, B, wide);
            const View3<T> q{wide, qkv_width, D}, k{wide + nH * D, qkv_width, D};
            kt.qk_norm_rope(q, k, ptr<T>(l.q_norm), ptr<T>(l.k_norm), eps, ptr<T>(rope_cos_), ptr<T>(rope_sin_), B,
                            nH, nKV, D, ptr<T>(q_), ptr<T>(k_));
            T* k_layer = ptr<T>(k_cache_) + int64_t(i) * B_ * S_ * nKV * D;
            T* v_layer = ptr<T>(v_cache_) + int64_t(i) * B_ * S_ * nKV * D;
            for (int b = 0; b < B; ++b) {
                const int64_t slot = (int64_t(b) * S_ + len[b]) * nKV * D;
                std::memcpy(k_layer + slot, ptr<T>(k_) + int64_t(b) * nKV * D, nKV * D * sizeof(T));
                std::memcpy(v_layer + slot, wide + b * qkv_width + (nH + nKV) * D, nKV * D * sizeof(T));
            }
            kt.attention_decode(View3<T>{ptr<T>(q_), int64_t(nH) * D, D}, k_layer, v_layer, S_ * nKV * D,
                                int64_t(nKV) * D, D, seqlens, B, nH, nKV, D, float(scale_),
                                ptr<T>(attn_));
            project(kt, l.o, ptr<T>(attn_), B, x);
            kt.add_rms_norm(x, residual, ptr<T>(l.post_norm), eps, B, H, h, residual);
            if (l.moe())
                moe(kt, l, h, x, B);
            else
                mlp(kt, l, h, x, B);
        }
        kt.add_rms_norm(x, residual, ptr<T>(final_norm_), eps, B, H, h, residual);
        project(kt, head_, h, B, ptr<T>(logits_));
        int32_t* lengths = lengths_.data_ptr<int32_t>();
        for (int b = 0; b < B; ++b) lengths[b] += 1;
    }

    // out[B, N] = x[B, K] @ p^T, by the kernel of p's storage.
    template <class T>
    static void project(const KernelTable<T>& kt, const Projection& p, const T* x, int B, T* out) {
        const int N = int(p.size(0)), K = int(p.size(1));
        if (p.scale.defined())
            kt.linear_int8(x, B, p.weight.data_ptr<int8_t>(), p.scale.data_ptr<float>(), N, K, out);
        else
            kt.linear(x, B, ptr<T>(p.weight), N, K, out);
    }

    template <class T>
    void mlp(const KernelTable<T>& kt, const Layer& l, const T* h, T* out, int B) {
        const int I = int(l.down.size(1));
        project(kt, l.gate_up, h, B, ptr<T>(wide_));
        kt.silu_mul(ptr<T>(wide_), 2 * I, B, I, ptr<T>(act_));
        project(kt, l.down, ptr<T>(act_), B, out);
    }

    template <class T>
    void moe(const KernelTable<T>& kt, const Layer& l, const T* h, T* out, int B) {
        const int H = int(H_), E = int(l.router.size(0)), I = int(l.experts_down.size(2));
        kt.linear(h, B, ptr<T>(l.router), E, H, ptr<T>(wide_));
        kt.moe_route(ptr<T>(wide_), B, E, int(top_k_), norm_topk_, ids_.data_ptr<int64_t>(), ptr<T>(route_weights_));
        kt.moe_experts(h, B, H, ids_.data_ptr<int64_t>(), ptr<T>(route_weights_), int(top_k_),
                       ptr<T>(l.experts_gate_up), ptr<T>(l.experts_down), E, I, out);
    }

    Projection head_;
    at::Tensor embed_, final_norm_, k_cache_, v_cache_, lengths_, cos_, sin_;
    std::vector<Layer> layers_;
    int64_t nH_, nKV_, B_ = 0, S_ = 0, D_ = 0, H_ = 0;
    double eps_, scale_;
    int64_t top_k_;
    bool norm_topk_;
    // scratch, allocated once: hidden vectors, the widest projection output, attention and rotary inputs
    at::Tensor x_, residual_, h_, wide_, act_, q_, k_, attn_, rope_cos_, rope_sin_, seqlens_, ids_, route_weights_,
        logits_;
};

}  // namespace

void bind_decode_step(pybind11::module& m) {
    pybind11::class_<DecodeStep>(m, "DecodeStep", "The whole decode step of a Qwen3 model in one call (decode.cpp)")
        .def(pybind11::init<std::map<std::string, at::Tensor>, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                            at::Tensor, int64_t, int64_t, double, double, int64_t, bool>(),
             pybind11::arg("weights"), pybind11::arg("k_cache"), pybind11::arg("v_cache"), pybind11::arg("lengths"),
             pybind11::arg("cos"), pybind11::arg("sin"), pybind11::arg("num_heads"), pybind11::arg("num_kv_heads"),
             pybind11::arg("eps"), pybind11::arg("scale"), pybind11::arg("top_k"), pybind11::arg("norm_topk"))
        .def("step", &DecodeStep::step, pybind11::arg("tokens"))
        .def_property_readonly("max_rows", &DecodeStep::max_rows);
}
