// Small device helpers shared by the CUDA kernels: tensor-core MMA, ldmatrix, cp.async, and dtype traits.
//
// All matrix work uses the Ampere-style warp-level instruction mma.sync.m16n8k16 (fp32 accumulate), which also
// runs on Hopper. Its register layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16") drive the code, so they
// are written out once here. Within a warp, lane = 4*g + t (g = lane / 4 in 0..7, t = lane % 4 in 0..3):
//
//   A (16x16, row-major), 4 regs of 2 halves:  a0 = A[g][2t..2t+1]    a1 = A[g+8][2t..2t+1]
//                                              a2 = A[g][2t+8..2t+9]  a3 = A[g+8][2t+8..2t+9]
//   B (16x8, k-major),    2 regs of 2 halves:  b0 = B[2t..2t+1][g]    b1 = B[2t+8..2t+9][g]
//   C (16x8, fp32),       4 floats:            c0,c1 = C[g][2t..2t+1] c2,c3 = C[g+8][2t..2t+1]
//
// Two neighbouring C tiles (16 x 16) hold exactly the elements of one A fragment, so a score tile computed by
// one MMA can be fed, rounded to 16 bits, straight back in as the A operand of the next (the FlashAttention-2
// register trick): no trip through shared memory.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cstdint>
#include <cstdlib>

namespace q3 {

// ------------------------------------------------------------------ dtype traits
template <typename T> struct Traits;
template <> struct Traits<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
  static __device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  static __device__ __forceinline__ __nv_bfloat16 from_float(float v) { return __float2bfloat16(v); }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};
template <> struct Traits<__half> {
  using T2 = __half2;
  static __device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half from_float(float v) { return __float2half(v); }
  static __device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<uint32_t*>(&v);
  }
};

// reference.rms_norm's last step on 8 packed values in place: the normalised value rounded to T, then times the
// weight, rounded to T (`inv` = 1 / rms, fp32). Shared by the RMSNorm kernel and the decode step's norm prologues.
template <typename T>
__device__ __forceinline__ void rms_scale8(uint4& raw, const uint4& wraw, float inv) {
  T* v = reinterpret_cast<T*>(&raw);
  const T* wv = reinterpret_cast<const T*>(&wraw);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const float normed = Traits<T>::to_float(Traits<T>::from_float(Traits<T>::to_float(v[i]) * inv));
    v[i] = Traits<T>::from_float(Traits<T>::to_float(wv[i]) * normed);
  }
}

// The most experts a token may select: the MoE combine keeps a token's slots in shared arrays of this size
// (moe.cu), and the router (moe_router.cu) routes no more than the dispatch takes.
constexpr int MAX_TOP_K = 64;

// ------------------------------------------------------------------ tensor-core MMA: D = A @ B + D (fp32)
template <typename T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// ------------------------------------------------------------------ ldmatrix: four 8x8 16-bit tiles per call
// Lane l supplies the address of row (l % 8) of tile (l / 8); register i receives tile i in the fragment layout
// above (".trans" transposes each tile on the way, which turns a row-major V into a k-major B operand).
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

// ------------------------------------------------------------------ cp.async: 16-byte global -> shared copies
// `valid == false` copies nothing and zero-fills the 16 bytes (src-size 0), which is how tiles past the end of
// a sequence are padded: padded K/V rows must be finite zeros, since 0 * NaN would poison the accumulators.
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N)); }

// ------------------------------------------------------------------ swizzled shared-memory tiles
// A tile row of D 16-bit values is D/8 chunks of 16 bytes. ldmatrix reads one 16-byte chunk from each of 8
// consecutive rows; without care all 8 land in the same banks (rows are a multiple of 128 bytes apart). Storing
// chunk c of row r at chunk position c ^ (r % 8) spreads them over all 32 banks. Needs rows of at least 8
// chunks (64 elements): true for head_dim 64 and 128 and for the GEMM's BK = 64.
template <int ROW_ELEMS>
__device__ __forceinline__ int swz(int row, int col) {  // element offset of (row, col); col multiple of 8 ok
  static_assert(ROW_ELEMS % 64 == 0, "swizzle needs rows of at least 8 chunks");
  const int chunk = (col >> 3) ^ (row & 7);
  return row * ROW_ELEMS + (chunk << 3) + (col & 7);
}

// ------------------------------------------------------------------ programmatic dependent launch (Hopper)
// A decode step is ~350 small kernels, each shorter than the time it takes to launch and ramp up a grid. Kernels
// started with launch_pdl() below may begin while the kernel before them in the stream is still running, once
// every block of that one has called pdl_launch_dependents() (or exited): their blocks get scheduled and run
// their prologue in the shadow of the previous kernel. Such a kernel must call pdl_wait() before touching any
// memory an earlier kernel writes; pdl_wait returns when the previous grid has completed and its writes are
// visible (and since that grid waited for its own predecessor, so have all earlier ones). Work before the wait
// may only read memory no kernel writes: the GEMV streams its weight rows there (gemv.cu). Both are no-ops for
// kernels launched the ordinary way, and compile to nothing before sm_90. Captured CUDA graphs keep these
// programmatic edges.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// Launch `kernel` on `stream` with the programmatic-serialization attribute (sm_90 and later; QWEN3MINI_NO_PDL=1
// turns it off, for comparison). The kernel must call pdl_wait() before its first access to mutable memory.
inline bool pdl_enabled() {
  static const bool enabled = [] {
    int device = 0, major = 0;
    C10_CUDA_CHECK(cudaGetDevice(&device));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
    return major >= 9 && std::getenv("QWEN3MINI_NO_PDL") == nullptr;
  }();
  return enabled;
}

template <typename... Params, typename... Args>
void launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Args... args) {
  cudaLaunchConfig_t config = {};
  config.gridDim = grid;
  config.blockDim = block;
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attribute[0].val.programmaticStreamSerializationAllowed = 1;
  config.attrs = attribute;
  config.numAttrs = pdl_enabled() ? 1 : 0;
  C10_CUDA_CHECK(cudaLaunchKernelEx(&config, kernel, static_cast<Params>(args)...));
}

__device__ __forceinline__ float warp_max4(float v) {  // max over the 4 lanes of a quad (same g)
  v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, 1));
  return fmaxf(v, __shfl_xor_sync(0xffffffff, v, 2));
}
__device__ __forceinline__ float warp_sum4(float v) {
  v += __shfl_xor_sync(0xffffffff, v, 1);
  return v + __shfl_xor_sync(0xffffffff, v, 2);
}
// The sum of v over the warp's 32 lanes, in every lane.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
  return v;
}

}  // namespace q3
