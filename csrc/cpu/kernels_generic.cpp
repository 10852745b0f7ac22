// The portable build of kernels.h: compiler baseline ISA (SSE2 on x86-64), runs on any CPU.
#include "common.h"

#define QWEN3MINI_ISA generic
#include "kernels.h"

template KernelTable<float> generic::table<float>();
template KernelTable<bf16_t> generic::table<bf16_t>();
