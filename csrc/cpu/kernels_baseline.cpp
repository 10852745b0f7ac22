// The portable build of kernels.h: compiler baseline ISA (SSE2 on x86-64), runs on any CPU.
#include "common.h"

#define QWEN3MINI_ISA baseline
#include "kernels.h"

template KernelTable<float> baseline::table<float>();
template KernelTable<bf16_t> baseline::table<bf16_t>();
