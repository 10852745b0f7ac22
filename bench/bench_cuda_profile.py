"""Kernel-time breakdown of one call, from the PyTorch profiler (CUPTI): where the GPU time of a step goes."""
import torch
from torch.profiler import ProfilerActivity, profile


def kernel_breakdown(fn, title, top=12):
    """Run ``fn`` once under the profiler; print the kernels by total GPU time and their sum."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    events = [e for e in prof.key_averages() if getattr(e, "device_time_total", 0) > 0]
    events.sort(key=lambda e: e.device_time_total, reverse=True)
    total = sum(e.device_time_total for e in events)
    launches = sum(e.count for e in events)
    print(f"{title}: {launches} kernels, {total:.0f} us of GPU time in total; top {top}:")
    for e in events[:top]:
        print(f"  {e.device_time_total:8.1f} us  x{e.count:<4d} {e.key[:90]}")
    return total, launches
