// The C++ backend's whole decode step (qwen3mini.ops.decoder, Python side: qwen3mini/ops/cpp.py CppDecoder).
//
// model.decode_step runs a token through the model one op at a time from Python: for Qwen3-0.6B that is
// ~4,800 Python calls and ~200 ATen allocations a token, 7-10 ms of a 70 ms step on a 2-core CPU, on top of
// the arithmetic (bench/RESULTS.md, "cpu kernels"). This file runs the same step as one call, in the manner
// of llama2.c's forward(): the same kernels as the ops (the KernelTable of ops.cpp), in the same order, with
// the same roundings, into buffers allocated once. Its logits therefore equal the op path's
// (tests/model/test_decoders.py checks them, the K/V it writes and the lengths it advances).
//
// One step, for B rows each holding lengths[b] tokens (model.py, DecoderLayer and DecodeContext):
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

// One decoder layer's weights; the MLP's or the MoE block's are empty for the other kind.
struct Layer {
    at::Tensor input_norm, qkv, q_norm, k_norm, o, post_norm;
    at::Tensor gate_up, down;                              // dense MLP
    at::Tensor router, experts_gate_up, experts_down;      // MoE: [E, H], [E, 2I, H], [E, H, I]
    bool moe() const { return router.defined(); }
};

class Decoder {
  public:
    Decoder(at::Tensor embed, std::vector<std::map<std::string, at::Tensor>> layers, at::Tensor final_norm,
            at::Tensor head, at::Tensor k_cache, at::Tensor v_cache, at::Tensor lengths, at::Tensor cos,
            at::Tensor sin, int64_t num_heads, int64_t num_kv_heads, double eps, double scale, int64_t top_k, bool norm_topk)
        : embed_(embed), final_norm_(final_norm), head_(head), k_cache_(k_cache), v_cache_(v_cache),
          lengths_(lengths), cos_(cos), sin_(sin), nH_(num_heads), nKV_(num_kv_heads), eps_(eps), scale_(scale), top_k_(top_k),
          norm_topk_(norm_topk) {
        const char* op = "CppDecoder";
        TORCH_CHECK(embed.dim() == 2, op, ": embed must be [vocab, hidden]");
        const auto dtype = embed.scalar_type();
        TORCH_CHECK(dtype == at::kFloat || dtype == at::kBFloat16, op, ": dtype ", dtype,
                    " not supported (float32 or bfloat16)");
        TORCH_CHECK(k_cache.dim() == 5 && k_cache.is_contiguous() && v_cache.is_contiguous() &&
                        v_cache.sizes() == k_cache.sizes(),
                    op, ": k_cache/v_cache must be contiguous [layers, B, S, nKV, D], got ", k_cache.sizes());
        B_ = k_cache.size(1), S_ = k_cache.size(2), D_ = k_cache.size(4), H_ = embed.size(1);
        TORCH_CHECK(k_cache.size(0) == int64_t(layers.size()) && k_cache.size(3) == nKV_, op, ": k_cache ",
                    k_cache.sizes(), " does not fit ", layers.size(), " layers of ", nKV_, " KV heads");
        TORCH_CHECK(nKV_ > 0 && nH_ % nKV_ == 0 && D_ % 2 == 0 && D_ <= 512, op, ": unsupported heads nH=", nH_,
                    " nKV=", nKV_, " D=", D_);
        TORCH_CHECK(lengths.scalar_type() == at::kInt && lengths.is_contiguous() && lengths.numel() == B_, op,
                    ": lengths must be a contiguous int32 [", B_, "]");
        TORCH_CHECK(cos.dim() == 2 && cos.size(0) == S_ && cos.size(1) == D_ && sin.sizes() == cos.sizes(), op,
                    ": cos/sin tables must be [", S_, ", ", D_, "], got ", cos.sizes());
        for (size_t i = 0; i < layers.size(); ++i) layers_.push_back(to_layer(layers[i], int(i)));
        std::vector<at::Tensor> all = {embed, final_norm, head, k_cache, v_cache, cos, sin};
        for (const Layer& l : layers_)
            for (const at::Tensor& t : {l.input_norm, l.qkv, l.q_norm, l.k_norm, l.o, l.post_norm, l.gate_up,
                                        l.down, l.router, l.experts_gate_up, l.experts_down})
                if (t.defined()) all.push_back(t);
        for (const at::Tensor& t : all)
            TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == dtype && t.is_contiguous(), op,
                        ": every weight, the caches and the rotary tables must be contiguous CPU ", dtype,
                        " tensors; got ", t.scalar_type(), " ", t.sizes());
        TORCH_CHECK(head.dim() == 2 && head.size(1) == H_, op, ": head must be [vocab, ", H_, "]");

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
        logits_ = at::empty({B_, head.size(0)}, opts);
    }

    // tokens: int64 [B]. Returns the logits [B, vocab] (a buffer the next step overwrites).
    at::Tensor step(const at::Tensor& tokens) {
        TORCH_CHECK(tokens.device().is_cpu() && tokens.scalar_type() == at::kLong && tokens.dim() == 1 &&
                        tokens.numel() == B_ && tokens.is_contiguous(),
                    "CppDecoder.step: tokens must be a contiguous int64 CPU vector of ", B_, " (one per cache row)",
                    ", got ", tokens.scalar_type(), " ", tokens.sizes());
        const int64_t* token = tokens.data_ptr<int64_t>();
        const int32_t* len = lengths_.data_ptr<int32_t>();
        for (int64_t b = 0; b < B_; ++b) {
            TORCH_CHECK(token[b] >= 0 && token[b] < embed_.size(0), "CppDecoder.step: token ", token[b],
                        " outside the vocabulary [0, ", embed_.size(0), ")");
            TORCH_CHECK(len[b] >= 0 && len[b] < S_, "CppDecoder.step: cache row ", b, " holds ", len[b],
                        " tokens; the KV cache holds ", S_);
        }
        if (embed_.scalar_type() == at::kFloat)
            run<float>(kernels<float>(), token, len);
        else
            run<bf16_t>(kernels<bf16_t>(), token, len);
        return logits_;
    }

  private:
    static Layer to_layer(std::map<std::string, at::Tensor>& w, int index) {
        auto get = [&](const char* name, bool required) {
            auto it = w.find(name);
            TORCH_CHECK(it != w.end() || !required, "CppDecoder: layer ", index, " lacks weight '", name, "'");
            return it == w.end() ? at::Tensor() : it->second;
        };
        Layer l{get("input_norm", true), get("qkv", true),       get("q_norm", true),
                get("k_norm", true),     get("o", true),         get("post_norm", true),
                get("gate_up", false),   get("down", false),     get("router", false),
                get("experts_gate_up", false), get("experts_down", false)};
        TORCH_CHECK(l.moe() ? l.experts_gate_up.defined() && l.experts_down.defined()
                            : l.gate_up.defined() && l.down.defined(),
                    "CppDecoder: layer ", index, " needs gate_up+down or router+experts_gate_up+experts_down");
        return l;
    }

    template <class T>
    void run(const KernelTable<T>& kt, const int64_t* token, const int32_t* len) {
        const int H = int(H_), D = int(D_), nH = int(nH_), nKV = int(nKV_), B = int(B_);
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
            kt.linear(h, B, ptr<T>(l.qkv), int(qkv_width), H, wide);
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
            kt.linear(ptr<T>(attn_), B, ptr<T>(l.o), H, nH * D, x);
            kt.add_rms_norm(x, residual, ptr<T>(l.post_norm), eps, B, H, h, residual);
            if (l.moe())
                moe(kt, l, h, x);
            else
                mlp(kt, l, h, x);
        }
        kt.add_rms_norm(x, residual, ptr<T>(final_norm_), eps, B, H, h, residual);
        kt.linear(h, B, ptr<T>(head_), int(head_.size(0)), H, ptr<T>(logits_));
        int32_t* lengths = lengths_.data_ptr<int32_t>();
        for (int b = 0; b < B; ++b) lengths[b] += 1;
    }

    template <class T>
    void mlp(const KernelTable<T>& kt, const Layer& l, const T* h, T* out) {
        const int H = int(H_), I = int(l.down.size(1));
        kt.linear(h, int(B_), ptr<T>(l.gate_up), 2 * I, H, ptr<T>(wide_));
        kt.silu_mul(ptr<T>(wide_), 2 * I, B_, I, ptr<T>(act_));
        kt.linear(ptr<T>(act_), int(B_), ptr<T>(l.down), H, I, out);
    }

    template <class T>
    void moe(const KernelTable<T>& kt, const Layer& l, const T* h, T* out) {
        const int H = int(H_), E = int(l.router.size(0)), I = int(l.experts_down.size(2));
        kt.linear(h, int(B_), ptr<T>(l.router), E, H, ptr<T>(wide_));
        kt.moe_route(ptr<T>(wide_), B_, E, int(top_k_), norm_topk_, ids_.data_ptr<int64_t>(), ptr<T>(route_weights_));
        kt.moe_experts(h, B_, H, ids_.data_ptr<int64_t>(), ptr<T>(route_weights_), int(top_k_),
                       ptr<T>(l.experts_gate_up), ptr<T>(l.experts_down), E, I, out);
    }

    at::Tensor embed_, final_norm_, head_, k_cache_, v_cache_, lengths_, cos_, sin_;
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

void bind_decoder(pybind11::module& m) {
    pybind11::class_<Decoder>(m, "Decoder", "The whole decode step of a Qwen3 model in one call (decode.cpp)")
        .def(pybind11::init<at::Tensor, std::vector<std::map<std::string, at::Tensor>>, at::Tensor, at::Tensor,
                            at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, int64_t, int64_t, double,
                            double, int64_t, bool>(),
             pybind11::arg("embed"), pybind11::arg("layers"), pybind11::arg("final_norm"), pybind11::arg("head"),
             pybind11::arg("k_cache"), pybind11::arg("v_cache"), pybind11::arg("lengths"), pybind11::arg("cos"),
             pybind11::arg("sin"), pybind11::arg("num_heads"), pybind11::arg("num_kv_heads"), pybind11::arg("eps"),
             pybind11::arg("scale"), pybind11::arg("top_k"), pybind11::arg("norm_topk"))
        .def("step", &Decoder::step, pybind11::arg("tokens"));
}
