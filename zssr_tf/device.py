"""What the machine computes fast: the accelerator present and the precision chosen for `--precision=auto`."""

from __future__ import annotations

import functools
import platform

import tensorflow as tf


def cpu_name() -> str:
    """The CPU's model name (for the machine line of benchmark tables)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@functools.lru_cache(maxsize=None)
def cpu_has_native_bfloat16() -> bool:
    """True when the CPU has bfloat16 matrix/vector instructions (AMX or AVX512-BF16), which oneDNN uses."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


@functools.lru_cache(maxsize=None)
def gpu_compute_capability() -> tuple[int, int] | None:
    """The first GPU's CUDA compute capability, or None without a GPU."""
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return None
    return tuple(tf.config.experimental.get_device_details(gpus[0]).get("compute_capability", (0, 0)))


def resolve_precision(precision: str) -> str:
    """`auto` -> mixed_bfloat16 on GPUs with compute capability >= 8.0 (Ampere and later) or CPUs with native
    bfloat16, else float32 (measured in benchmarks/results/speed.md: same PSNR, about 3x faster on an AMX CPU).
    Other values are returned unchanged."""
    if precision != "auto":
        return precision
    capability = gpu_compute_capability()
    if capability is not None:
        return "mixed_bfloat16" if capability >= (8, 0) else "float32"
    return "mixed_bfloat16" if cpu_has_native_bfloat16() else "float32"
