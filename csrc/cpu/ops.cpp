// ATen glue of the CPU backend (qwen3mini._C): checks arguments, picks the kernel table for the CPU's ISA and
// the tensor dtype, and calls it. Every op writes into an `out` tensor the caller allocated (qwen3mini/ops/cpp.py
// uses torch.empty, which the conformance suite fills with NaN), so an element the kernel forgets shows up.
#include <torch/extension.h>

#include <iterator>
#include <string>
#include <vector>

#include "common.h"

namespace {

// ------------------------------------------------------------------ ISA choice

// The instruction sets with a build of kernels.h (kernels_<name>.cpp), best first. Adding one is its
// kernels_<name>.cpp, its namespace in common.h and one entry here.
struct Isa {
    const char* name;
    bool (*runs_here)();  // does this CPU execute it?
    KernelTable<float> (*f32)();
    KernelTable<bf16_t> (*bf16)();
};

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

bool cpu_has_avx512_bf16() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

const Isa kIsas[] = {
    {"avx512", cpu_has_avx512_bf16, avx512::table<float>, avx512::table<bf16_t>},
    {"avx2", cpu_has_avx2, avx2::table<float>, avx2::table<bf16_t>},
    {"baseline", [] { return true; }, baseline::table<float>, baseline::table<bf16_t>},
};

// The ISA in use: the best one this CPU executes, until set_isa picks another.
const Isa*& current_isa() {
    static const Isa* isa = [] {
        for (const Isa& i : kIsas)
            if (i.runs_here()) return &i;
        return &kIsas[std::size(kIsas) - 1];
    }();
    return isa;
}

// The ISAs this CPU executes, best first (the conformance suite runs on each).
std::vector<std::string> isas_here() {
    std::vector<std::string> names;
    for (const Isa& i : kIsas)
        if (i.runs_here()) names.push_back(i.name);
    return names;
}

void set_isa(const std::string& name) {
    std::string known;
    for (const Isa& i : kIsas) {
        if (name == i.name) {
            TORCH_CHECK(i.runs_here(), "qwen3mini._C.set_isa: this CPU cannot execute '", name, "' kernels (it runs ",
                        c10::Join(", ", isas_here()), ")");
            current_isa() = &i;
            return;
        }
        known += known.empty() ? i.name : std::string(", ") + i.name;
    }
    TORCH_CHECK(false, "qwen3mini._C.set_isa: unknown ISA '", name, "' (known: ", known, ")");
}

// Run `body(kernel_table, T*)` for the dtype of `t` (fp32 or bf16).
template <class Body>
void dispatch(const at::Tensor& t, const char* op, Body&& body) {
    if (t.scalar_type() == at::kFloat)
        body(kernels<float>(), (float*)nullptr);
    else if (t.scalar_type() == at::kBFloat16)
        body(kernels<bf16_t>(), (bf16_t*)nullptr);
    else
        TORCH_CHECK(false, op, ": dtype ", t.scalar_type(), " not supported (float32 or bfloat16)");
}

template <class T> T* ptr(const at::Tensor& t) { return reinterpret_cast<T*>(t.data_ptr()); }
template <class T> const T* cptr(const at::Tensor& t) { return reinterpret_cast<const T*>(t.data_ptr()); }
template <class T> View3<T> view3(const at::Tensor& t) { return {cptr<T>(t), t.stride(0), t.stride(1)}; }

// ------------------------------------------------------------------ argument checks (name the culprit)

void check(const at::Tensor& t, const char* op, const char* name, int64_t dims, const at::Tensor& like,
           bool contiguous = true) {
    TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got ", t.device());
    TORCH_CHECK(t.dim() == dims, op, ": ", name, " must have ", dims, " dims, got shape ", t.sizes());
    TORCH_CHECK(t.scalar_type() == like.scalar_type(), op, ": ", name, " has dtype ", t.scalar_type(),
                ", expected ", like.scalar_type());
    if (contiguous) {
        TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
    } else {
        TORCH_CHECK(t.dim() == 0 || t.stride(-1) == 1, op, ": ", name, " must be contiguous in its last dim");
    }
}

void check_index(const at::Tensor& t, const char* op, const char* name, at::ScalarType type, int64_t numel) {
    TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == type && t.is_contiguous() && t.dim() == 1 &&
                    t.numel() == numel,
                op, ": ", name, " must be a contiguous CPU ", type, " vector of length ", numel, ", got ",
                t.scalar_type(), " ", t.sizes());
}

// ------------------------------------------------------------------ ops

void linear(const at::Tensor& x, const at::Tensor& w, const at::Tensor& out) {
    const char* op = "linear";
    check(x, op, "x", 2, x);
    check(w, op, "weight", 2, x);
    check(out, op, "out", 2, x);
    TORCH_CHECK(w.size(1) == x.size(1), op, ": x has ", x.size(1), " features but weight expects ", w.size(1));
    TORCH_CHECK(out.size(0) == x.size(0) && out.size(1) == w.size(0), op, ": out has shape ", out.sizes());
    dispatch(x, op, [&](auto table, auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        table.linear(cptr<T>(x), x.size(0), cptr<T>(w), w.size(0), w.size(1), ptr<T>(out));
    });
}

// linear with int8 weights and one fp32 scale per output feature (csrc/README.md, "Quantized linear").
void quantized_linear(const at::Tensor& x, const at::Tensor& qweight, const at::Tensor& scale, const at::Tensor& out) {
    const char* op = "quantized_linear";
    check(x, op, "x", 2, x);
    check(out, op, "out", 2, x);
    check(qweight, op, "qweight", 2, qweight);
    check(scale, op, "scale", 1, scale);
    TORCH_CHECK(qweight.scalar_type() == at::kChar, op, ": qweight has dtype ", qweight.scalar_type(),
                ", expected int8");
    TORCH_CHECK(scale.scalar_type() == at::kFloat, op, ": scale has dtype ", scale.scalar_type(), ", expected float32");
    TORCH_CHECK(qweight.size(1) == x.size(1), op, ": x has ", x.size(1), " features but qweight expects ",
                qweight.size(1));
    TORCH_CHECK(scale.size(0) == qweight.size(0), op, ": scale has ", scale.size(0), " elements, qweight ",
                qweight.size(0), " rows");
    TORCH_CHECK(out.size(0) == x.size(0) && out.size(1) == qweight.size(0), op, ": out has shape ", out.sizes());
    dispatch(x, op, [&](auto table, auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        table.linear_int8(cptr<T>(x), x.size(0), qweight.data_ptr<int8_t>(), scale.data_ptr<float>(), qweight.size(0),
                          qweight.size(1), ptr<T>(out));
    });
}

void silu_mul(const at::Tensor& gate_up, const at::Tensor& out) {
    const char* op = "silu_mul";
    check(gate_up, op, "gate_up", 2, gate_up, /*contiguous=*/false);
    check(out, op, "out", 2, gate_up);
    const int64_t I = gate_up.size(1) / 2;
    TORCH_CHECK(gate_up.size(1) % 2 == 0, op, ": gate_up's last dim ", gate_up.size(1), " must be even (gate, up)");
    TORCH_CHECK(out.size(0) == gate_up.size(0) && out.size(1) == I, op, ": out has shape ", out.sizes(),
                ", expected [", gate_up.size(0), ", ", I, "]");
    dispatch(gate_up, op, [&](auto table, auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        table.silu_mul(cptr<T>(gate_up), gate_up.stride(0), gate_up.size(0), I, ptr<T>(out));
    });
}

void rms_norm(const at::Tensor& x, const at::Tensor& w, double eps, const at::Tensor& out) {
    const char* op = "rms_norm";
    check(x, op, "x", x.dim(), x);
    check(w, op, "weight", 1, x);
    check(out, op, "out", x.dim(), x);
    TORCH_CHECK(x.dim() >= 1 && w.size(0) == x.size(-1), op, ": weight has ", w.size(0), " elements, x has ",
                x.size(-1), " features");
    TORCH_CHECK(out.sizes() == x.sizes(), op, ": out has shape ", out.sizes());
    const int H = x.size(-1);
    dispatch(x, op, [&](auto table, auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        table.rms_norm(cptr<T>(x), cptr<T>(w), float(eps), H ? x.numel() / H : 0, H, ptr<T>(out));
    });
}

void add_rms_norm(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& w, double eps,
                  const at::Tensor& out, const at::Tensor& summed) {
    const char* op = "add_rms_norm";
    check(x, op, "x", x.dim(), x);
    check(residual, op, "residual", x.dim(), x);
    check(w, op, "weight", 1, x);
    check(out, op, "out", x.dim(), x);
    check(summed, op, "summed", x.dim(), x);
    TORCH_CHECK(residual.sizes() == x.sizes(), op, ": residual has shape ", residual.sizes(), ", x ", x.sizes());
    TORCH_CHECK(x.dim() >= 1 && w.size(0) == x.size(-1), op, ": weight has ", w.size(0), " elements, x has ",
                x.size(-1), " features");
    TORCH_CHECK(out.sizes() == x.sizes() && summed.sizes() == x.sizes(), op, ": out/summed shape mismatch");
    const int H = x.size(-1);
    dispatch(x, op, [&](auto table, auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        table.add_rms_norm(cptr<T>(x), cptr<T>(residual), cptr<T>(w), float(eps), H ? x.numel() / H : 0, H,
                           ptr<T>(out), ptr<T>(summed));
    });
}

void qk_norm_rope(const at::Tensor& q, const at::Tensor& k, const at::Tensor& q_w, const at::Tensor& k_w, double eps,
                  const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& q_out, const at::Tensor& k_out) {
    const char* op = "qk_norm_rope";
    check(q, op, "q", 3, q, /*contiguous=*/false);
    check(k, op, "k", 3, q, /*contiguous=*/false);
    check(q_w, op, "q_weight", 1, q);
    check(k_w, op, "k_weight", 1, q);
    check(cos, op, "cos", 2, q);
    check(sin, op, "sin", 2, q);
    check(q_out, op, "q_out", 3, q);
    check(k_out, op, "k_out", 3, q);
    const int64_t N = q.size(0), D = q.size(2);
    TORCH_CHECK(D % 2 == 0 && D <= 512, op, ": head dim ", D, " must be even and at most 512");
    TORCH_CHECK(k.size(0) == N && k.size(2) == D, op, ": k must be [", N, ", nKV, ", D, "], got ", k.sizes());
    TORCH_CHECK(q_w.size(0) == D && k_w.size(0) == D, op, ": q_weight/k_weight must have ", D, " elements, got ",
                q_w.size(0), " and ", k_w.size(0));
    TORCH_CHECK(cos.size(0) == N && cos.size(1) == D && sin.sizes() == cos.sizes(), op, ": cos/sin must be [",
                N, ", ", D, "], got ", cos.sizes(), " and ", sin.sizes());
    TORCH_CHECK(q_out.sizes() == q.sizes() && k_out.sizes() == k.sizes(), op, ": q_out/k_out have shapes ",
                q_out.sizes(), " and ", k_out.sizes());
    dispatch(q, op, [&](auto table, auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        table.qk_norm_rope(view3<T>(q), view3<T>(k), cptr<T>(q_w), cptr<T>(k_w), float(eps), cptr<T>(cos),
                           cptr<T>(sin), N, q.size(1), k.size(1), D, ptr<T>(q_out), ptr<T>(k_out));
    });
}

void check_gqa(const char* op, int64_t nH, int64_t nKV) {
    TORCH_CHECK(nKV > 0 && nH % nKV == 0, op, ": query heads (", nH, ") must be a multiple of KV heads (", nKV, ")");
}

void attention_prefill(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& cu_q,
                       const at::Tensor& cu_k, double scale, const at::Tensor& out) {
    const char* op = "attention_prefill";
    check(q, op, "q", 3, q, false);
    check(k, op, "k", 3, q, false);
    check(v, op, "v", 3, q, false);
    check(out, op, "out", 3, q);
    TORCH_CHECK(v.sizes() == k.sizes(), op, ": v has shape ", v.sizes(), ", k ", k.sizes());
    TORCH_CHECK(k.size(2) == q.size(2), op, ": k head dim ", k.size(2), " != q head dim ", q.size(2));
    TORCH_CHECK(out.sizes() == q.sizes(), op, ": out has shape ", out.sizes());
    check_gqa(op, q.size(1), k.size(1));
    TORCH_CHECK(cu_q.dim() == 1 && cu_q.numel() >= 1, op, ": cu_seqlens_q must be a vector [B+1]");
    const int64_t B = cu_q.numel() - 1;
    check_index(cu_q, op, "cu_seqlens_q", at::kInt, B + 1);
    check_index(cu_k, op, "cu_seqlens_k", at::kInt, B + 1);
    const int32_t* bq = cu_q.data_ptr<int32_t>();
    const int32_t* bk = cu_k.data_ptr<int32_t>();
    TORCH_CHECK(bq[0] == 0 && bk[0] == 0, op, ": cu_seqlens_q and cu_seqlens_k must start at 0");
    TORCH_CHECK(bq[B] == q.size(0) && bk[B] == k.size(0), op, ": cu_seqlens_q/k must end at q.shape[0]=",
                q.size(0), " / k.shape[0]=", k.size(0), ", got ", bq[B], " / ", bk[B]);
    for (int64_t b = 0; b < B; ++b)
        TORCH_CHECK(bq[b + 1] >= bq[b] && bk[b + 1] - bk[b] >= bq[b + 1] - bq[b], op, ": sequence ", b,
                    " needs 0 <= Lq <= Lk (cu_seqlens_q/k), got Lq=", bq[b + 1] - bq[b], " Lk=", bk[b + 1] - bk[b]);
    dispatch(q, op, [&](auto table, auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        table.attention_prefill(view3<T>(q), view3<T>(k), view3<T>(v), bq, bk, B, q.size(1), k.size(1), q.size(2),
                                float(scale), ptr<T>(out));
    });
}

void attention_decode(const at::Tensor& q, const at::Tensor& k_cache, const at::Tensor& v_cache,
                      const at::Tensor& lengths, double scale, const at::Tensor& out) {
    const char* op = "attention_decode";
    check(q, op, "q", 3, q, false);
    check(k_cache, op, "k_cache", 4, q, false);
    check(v_cache, op, "v_cache", 4, q, false);
    check(out, op, "out", 3, q);
    const int64_t B = q.size(0), S = k_cache.size(1);
    TORCH_CHECK(k_cache.size(0) == B && k_cache.size(3) == q.size(2), op, ": k_cache must be [", B, ", S, nKV, ",
                q.size(2), "], got ", k_cache.sizes());
    TORCH_CHECK(v_cache.sizes() == k_cache.sizes() && v_cache.strides() == k_cache.strides(), op,
                ": v_cache must have k_cache's shape and strides");
    TORCH_CHECK(out.sizes() == q.sizes(), op, ": out has shape ", out.sizes());
    check_gqa(op, q.size(1), k_cache.size(2));
    check_index(lengths, op, "cache_seqlens", at::kInt, B);
    const int32_t* len = lengths.data_ptr<int32_t>();
    for (int64_t b = 0; b < B; ++b)
        TORCH_CHECK(len[b] >= 1 && len[b] <= S, op, ": cache_seqlens[", b, "]=", len[b], " outside [1, ", S, "]");
    dispatch(q, op, [&](auto table, auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        table.attention_decode(view3<T>(q), cptr<T>(k_cache), cptr<T>(v_cache), k_cache.stride(0),
                               k_cache.stride(1), k_cache.stride(2), len, B, q.size(1), k_cache.size(2), q.size(2),
                               float(scale), ptr<T>(out));
    });
}

void moe_route(const at::Tensor& logits, int64_t top_k, bool normalize, const at::Tensor& ids,
               const at::Tensor& weights) {
    const char* op = "moe_route";
    check(logits, op, "logits", 2, logits);
    check(weights, op, "weights", 2, logits);
    const int64_t N = logits.size(0), E = logits.size(1);
    TORCH_CHECK(top_k >= 1 && top_k <= E, op, ": top_k ", top_k, " must be in [1, ", E, "] (the number of experts)");
    TORCH_CHECK(ids.device().is_cpu() && ids.scalar_type() == at::kLong && ids.is_contiguous() &&
                    ids.sizes() == at::IntArrayRef({N, top_k}),
                op, ": ids must be a contiguous int64 [", N, ", ", top_k, "] CPU tensor, got ", ids.scalar_type(),
                " ", ids.sizes());
    TORCH_CHECK(weights.sizes() == ids.sizes(), op, ": weights has shape ", weights.sizes());
    dispatch(logits, op, [&](auto table, auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        table.moe_route(cptr<T>(logits), N, E, top_k, normalize, ids.data_ptr<int64_t>(), ptr<T>(weights));
    });
}

void moe_experts(const at::Tensor& x, const at::Tensor& ids, const at::Tensor& weights, const at::Tensor& w_gate_up,
                 const at::Tensor& w_down, const at::Tensor& out) {
    const char* op = "moe_experts";
    check(x, op, "x", 2, x);
    check(weights, op, "topk_weights", 2, x);
    check(w_gate_up, op, "w_gate_up", 3, x);
    check(w_down, op, "w_down", 3, x);
    check(out, op, "out", 2, x);
    const int64_t N = x.size(0), H = x.size(1), E = w_gate_up.size(0), I = w_down.size(2);
    TORCH_CHECK(ids.device().is_cpu() && ids.scalar_type() == at::kLong && ids.is_contiguous() && ids.dim() == 2 &&
                    ids.size(0) == N,
                op, ": topk_ids must be a contiguous int64 [", N, ", k] CPU tensor, got ", ids.scalar_type(), " ",
                ids.sizes());
    const int64_t top_k = ids.size(1);
    TORCH_CHECK(top_k <= 64, op, ": top-k ", top_k, " > 64 not supported");
    TORCH_CHECK(weights.sizes() == ids.sizes(), op, ": topk_weights has shape ", weights.sizes(), ", topk_ids ",
                ids.sizes());
    TORCH_CHECK(w_gate_up.size(1) == 2 * I && w_gate_up.size(2) == H, op, ": w_gate_up must be [E, 2I, H] = [", E,
                ", ", 2 * I, ", ", H, "], got ", w_gate_up.sizes());
    TORCH_CHECK(w_down.size(0) == E && w_down.size(1) == H, op, ": w_down must be [E, H, I] = [", E, ", ", H, ", ",
                I, "], got ", w_down.sizes());
    TORCH_CHECK(out.sizes() == x.sizes(), op, ": out has shape ", out.sizes());
    const int64_t* id = ids.data_ptr<int64_t>();
    for (int64_t p = 0; p < ids.numel(); ++p)
        TORCH_CHECK(id[p] >= 0 && id[p] < E, op, ": topk_ids has expert id ", id[p], " outside [0, ", E, ")");
    dispatch(x, op, [&](auto table, auto* type) {
        using T = std::remove_pointer_t<decltype(type)>;
        table.moe_experts(cptr<T>(x), N, H, id, cptr<T>(weights), top_k, cptr<T>(w_gate_up), cptr<T>(w_down), E, I,
                          ptr<T>(out));
    });
}

}  // namespace

template <> KernelTable<float> kernels<float>() { return current_isa()->f32(); }
template <> KernelTable<bf16_t> kernels<bf16_t>() { return current_isa()->bf16(); }

void bind_decode_step(pybind11::module& m);  // decode.cpp

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.doc() = "qwen3mini CPU kernels (csrc/README.md). Every op writes into a caller-allocated `out`.";
    m.def("isa", [] { return std::string(current_isa()->name); }, "ISA of the kernels in use, e.g. 'avx2'");
    m.def("isas", &isas_here, "the ISAs this CPU executes, best first ('baseline' always)");
    m.def("set_isa", &set_isa, "use the kernels of one ISA (a name from isas())", py::arg("name"));
    m.def("linear", &linear, "out[M, N] = x[M, K] @ weight[N, K]^T", py::arg("x"), py::arg("weight"), py::arg("out"));
    m.def("quantized_linear", &quantized_linear, "out[M, N] = (x[M, K] @ qweight[N, K]^T) * scale[N], qweight int8",
          py::arg("x"), py::arg("qweight"), py::arg("scale"), py::arg("out"));
    m.def("silu_mul", &silu_mul, "out[R, I] = silu(gate_up[:, :I]) * gate_up[:, I:]", py::arg("gate_up"),
          py::arg("out"));
    m.def("rms_norm", &rms_norm, py::arg("x"), py::arg("weight"), py::arg("eps"), py::arg("out"));
    m.def("add_rms_norm", &add_rms_norm, py::arg("x"), py::arg("residual"), py::arg("weight"), py::arg("eps"),
          py::arg("out"), py::arg("summed"));
    m.def("qk_norm_rope", &qk_norm_rope, py::arg("q"), py::arg("k"), py::arg("q_weight"), py::arg("k_weight"),
          py::arg("eps"), py::arg("cos"), py::arg("sin"), py::arg("q_out"), py::arg("k_out"));
    m.def("attention_prefill", &attention_prefill, py::arg("q"), py::arg("k"), py::arg("v"),
          py::arg("cu_seqlens_q"), py::arg("cu_seqlens_k"), py::arg("scale"), py::arg("out"));
    m.def("attention_decode", &attention_decode, py::arg("q"), py::arg("k_cache"), py::arg("v_cache"),
          py::arg("cache_seqlens"), py::arg("scale"), py::arg("out"));
    m.def("moe_route", &moe_route, py::arg("logits"), py::arg("top_k"), py::arg("normalize"), py::arg("ids"),
          py::arg("weights"));
    m.def("moe_experts", &moe_experts, py::arg("x"), py::arg("topk_ids"), py::arg("topk_weights"),
          py::arg("w_gate_up"), py::arg("w_down"), py::arg("out"));
    bind_decode_step(m);
}
