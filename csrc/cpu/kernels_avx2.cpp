// The AVX2 + FMA build of kernels.h (256-bit vectors, fused multiply-add). Only the functions below this
// pragma use these instructions; ops.cpp calls them only when __builtin_cpu_supports says the CPU has them.
#include "common.h"

#if defined(__x86_64__) || defined(__i386__)
#pragma GCC target("avx2,fma")
#define QWEN3MINI_ISA avx2
#define QWEN3MINI_AVX2  // g++ does not define __AVX2__ under the pragma: tell kernels.h itself
#include "kernels.h"

template KernelTable<float> avx2::table<float>();
template KernelTable<bf16_t> avx2::table<bf16_t>();
#else
namespace avx2 {  // not an x86 CPU: the "avx2" table is the portable one and is never chosen
template <class T> KernelTable<T> table() { return baseline::table<T>(); }
}
template KernelTable<float> avx2::table<float>();
template KernelTable<bf16_t> avx2::table<bf16_t>();
#endif
