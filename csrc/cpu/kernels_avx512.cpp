// The AVX-512 build of kernels.h: everything the AVX2 build has (the v8f code of kernels.h in 256-bit EVEX
// form), plus the 512-bit matrix-vector products of linear.h (QWEN3MINI_AVX512): bf16 weights through
// vdpbf16ps (AVX512-BF16), int8 weights widened 16 at a time. ops.cpp calls it only where
// __builtin_cpu_supports finds avx512f, avx512bw, avx512vl and avx512bf16.
#include "common.h"

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16")
// GCC 12's own AVX-512 intrinsics start from _mm512_undefined_*() and trip this warning (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define QWEN3MINI_ISA avx512
#define QWEN3MINI_AVX2    // the AVX2 intrinsics of kernels.h are AVX-512 instructions too
#define QWEN3MINI_AVX512  // g++ does not define __AVX512F__ under the pragma: tell linear.h itself
#include "kernels.h"
#else
namespace avx512 {  // not an x86 CPU: never chosen
template <class T> KernelTable<T> table() { return baseline::table<T>(); }
}
#endif

template KernelTable<float> avx512::table<float>();
template KernelTable<bf16_t> avx512::table<bf16_t>();
