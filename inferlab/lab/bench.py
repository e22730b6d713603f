"""Measuring speed honestly: timing, tokens/s, memory bandwidth, the decode roofline, peak memory.

Introduced in lesson 00 and used by every later lesson. Three rules make a timing mean
something:

1. **Warm up.** The first call pays for lazy initialisation, memory allocation, kernel
   selection and caches; it is not what a served request costs.
2. **Synchronise.** CUDA kernels are queued asynchronously: without ``torch.cuda.synchronize()``
   a timer measures how fast Python *queued* work, not how fast the GPU did it.
3. **Repeat and take the median.** Other processes, clock changes and the garbage collector
   make single runs noisy; the median ignores the outliers that the mean would absorb.

Batch-1 decoding reads every weight once per generated token, so its speed limit is
``memory bandwidth / bytes per token`` - the *decode roofline*. ``measure_bandwidth`` measures
the bandwidth this device really reaches with a large copy, and ``DATASHEET_BANDWIDTH`` lists
the figures vendors publish for common GPUs, to show beside it.
"""
from __future__ import annotations

import os
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from inferlab.lab import settings
from inferlab.lab.settings import threads

# Peak memory bandwidth from the vendors' datasheets, in GB/s (1 GB = 1e9 bytes).
DATASHEET_BANDWIDTH = {
    "T4": 320.0,          # NVIDIA T4, GDDR6 (free Colab)
    "L4": 300.0,          # NVIDIA L4, GDDR6
    "A10G": 600.0,        # NVIDIA A10G, GDDR6 (AWS g5)
    "A100 40GB": 1555.0,  # NVIDIA A100 SXM4 40GB, HBM2
    "A100 80GB": 2039.0,  # NVIDIA A100 SXM4 80GB, HBM2e
    "H100 SXM": 3350.0,   # NVIDIA H100 SXM5 80GB, HBM3
    "H100 PCIe": 2000.0,  # NVIDIA H100 PCIe 80GB, HBM2e
    "H200": 4800.0,       # NVIDIA H200 SXM 141GB, HBM3e
}


# -------------------------------------------------------------------------------- threads
def pin_threads(n: int | None = None) -> int:
    """Give PyTorch a sensible number of CPU threads and return it.

    More threads than free cores makes PyTorch's thread pool fight itself; on a shared 2-vCPU
    machine that was measured 13-15x slower. Default: ``INFERLAB_THREADS`` if set, else the
    number of cores this process may run on (at most 8).
    """
    n = max(1, int(threads() if n is None else n))
    torch.set_num_threads(n)
    return n


def device_name(device: str | torch.device | None = None) -> str:
    """Human name of the device: the GPU's name, or the CPU model and thread count."""
    device = torch.device(device or default_device())
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = "CPU"
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    n = torch.get_num_threads()
    return f"{model} ({n} thread{'s' if n != 1 else ''})"


def default_device() -> str:
    """The device lessons run on: the GPU when present, unless ``INFERLAB_DEVICE`` says otherwise
    (see ``inferlab.lab.settings.device``)."""
    return settings.device()


def synchronize(device: str | torch.device | None = None) -> None:
    """Wait for queued GPU work; a no-op on CPU."""
    device = torch.device(device or default_device())
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# -------------------------------------------------------------------------------- timing
@dataclass
class Timing:
    """Seconds of each timed repeat (warm-up runs excluded)."""
    times: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def spread(self) -> float:
        """Relative spread (max - min) / median: how noisy the measurement was."""
        return (max(self.times) - min(self.times)) / self.median if self.median else 0.0

    def __repr__(self) -> str:
        return (f"Timing(median={self.median * 1e3:.2f} ms, n={len(self.times)}, "
                f"spread={self.spread:.0%})")


def time_fn(fn: Callable[[], object], *, warmup: int = 1, repeats: int = 5,
            device: str | torch.device | None = None) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeats`` synchronised timed calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError("need repeats >= 1 and warmup >= 0")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return Timing(times)


def tokens_per_second(n_tokens: int, seconds: float) -> float:
    if seconds <= 0:
        raise ValueError("seconds must be positive")
    return n_tokens / seconds


def achieved_bandwidth(bytes_per_token: float, tokens_per_s: float) -> float:
    """Bytes/s the run moved: every decoded token re-reads ``bytes_per_token`` bytes."""
    return bytes_per_token * tokens_per_s


def decode_roofline(bytes_per_token: float, bandwidth: float) -> float:
    """Upper bound on batch-1 decode tokens/s: bandwidth (bytes/s) / bytes read per token."""
    if bytes_per_token <= 0:
        raise ValueError("bytes_per_token must be positive")
    return bandwidth / bytes_per_token


# ---------------------------------------------------------------------------- bandwidth
def measure_bandwidth(device: str | torch.device | None = None, megabytes: int = 256,
                      repeats: int = 5) -> float:
    """Memory bandwidth in bytes/s reached by copying a large buffer (read + write counted).

    The buffer must be much larger than the caches, or we would measure the cache instead. The
    fastest repeat counts: the result is a ceiling, and anything else running on the machine
    (another notebook sharing the GPU, a busy CPU) can only make a copy slower, never faster.
    """
    device = torch.device(device or default_device())
    n = megabytes * (1 << 20) // 4
    src = torch.ones(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    timing = time_fn(lambda: dst.copy_(src), warmup=2, repeats=repeats, device=device)
    return 2 * src.numel() * src.element_size() / timing.min


def datasheet_for(name: str) -> tuple[str, float] | None:
    """Match a device name (``torch.cuda.get_device_name``) to a datasheet entry."""
    upper = name.upper()
    if "H100" in upper:
        key = "H100 PCIe" if "PCIE" in upper else "H100 SXM"
    elif "A100" in upper:
        key = "A100 80GB" if "80" in upper else "A100 40GB"
    else:
        key = next((k for k in DATASHEET_BANDWIDTH if k in upper), None)
    return (key, DATASHEET_BANDWIDTH[key]) if key else None


def compute_dtype(device: str | torch.device | None = None) -> torch.dtype:
    """The dtype a lesson computes in on ``device``: float32 on the CPU (PyTorch's fast CPU
    kernels), bfloat16 on GPUs that compute in it natively (compute capability 8.0 and newer:
    A100, L4, H100), float16 on older GPUs (T4, V100), where bfloat16 is emulated and slow."""
    device = torch.device(device or default_device())
    if device.type != "cuda":
        return torch.float32
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


REFERENCE_GPU = "H100 SXM"   # lessons size their GPU workloads for this card, then scale


def gpu_workload_scale(device: str | torch.device | None = None) -> float:
    """How much of an H100-sized workload to run on this GPU so that a lesson takes about as long:
    its datasheet bandwidth over the H100's, at most 1 (a T4: 320 / 3350 = 0.1). Decoding is
    bandwidth-bound, so the ratio predicts its time; training is compute-bound and scales about
    the same way between these cards. A GPU missing from the table is measured (a short copy).
    1.0 on the CPU, whose lessons choose their own settings."""
    device = torch.device(device or default_device())
    if device.type != "cuda":
        return 1.0
    sheet = datasheet_for(torch.cuda.get_device_name(device))
    bandwidth = sheet[1] * 1e9 if sheet else measure_bandwidth(device, megabytes=256, repeats=3)
    return max(0.05, min(1.0, bandwidth / (DATASHEET_BANDWIDTH[REFERENCE_GPU] * 1e9)))


# ------------------------------------------------------------------------------ memory
def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_memory(fn: Callable[[], object], device: str | torch.device | None = None,
                interval: float = 0.001) -> tuple[object, int]:
    """Run ``fn()`` and return ``(result, extra peak bytes)`` it needed on ``device``.

    CUDA: the allocator's own peak counter. CPU: the process's resident memory, sampled
    every millisecond by a background thread (allocations shorter than that can be missed).
    """
    device = torch.device(device or default_device())
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        result = fn()
        synchronize(device)
        return result, torch.cuda.max_memory_allocated(device) - base
    base = _rss_bytes()
    peak = [base]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = fn()
    finally:
        peak[0] = max(peak[0], _rss_bytes())
        done.set()
        sampler.join()
    return result, max(0, peak[0] - base)
