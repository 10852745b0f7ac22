// The portable build of kernels.h: compiler baseline ISA (SSE2 on x86-64), runs on any CPU.
#include "common.h"

#pragma GCC diagnostic ignored "-Wpsabi"  // v8f is passed in two xmm registers here; it never crosses an ABI

#define QWEN3MINI_ISA generic
#include "kernels.h"

template KernelTable<float> generic::table<float>();
template KernelTable<bf16_t> generic::table<bf16_t>();
