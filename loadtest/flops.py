"""The compute side of the benchmark: how many FLOPs a paper costs, how many the cores can do.

MFU (model FLOPs utilisation) = 2 x non-embedding parameters x prompt tokens computed per
paper x papers/s, divided by the matrix-product rate that torch reaches on the same cores in the
same run, in the precision the engine computes in. One forward pass per paper costs about 2
FLOPs per parameter per token (attention's own share is left out, as is usual), the embedding
lookup costs no matrix product, and prompt tokens the engine found in its prefix cache cost
nothing (a second read reuses its first read's full KV blocks)."""

from __future__ import annotations

import json
import math
import os
import platform
import struct
import time
from pathlib import Path

from hardware.precision import cpu_features

EMBEDDING_SUFFIXES = ("embed_tokens.weight", "lm_head.weight", "wte.weight", "wpe.weight")


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor shapes from a safetensors header (8-byte length, then JSON) without loading."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    return {name: meta["shape"] for name, meta in header.items() if name != "__metadata__"}


def parameter_counts(model_dir: Path) -> dict[str, int]:
    """Total, embedding (input embedding and any untied LM head) and non-embedding parameters,
    counted from the safetensors files of a model directory."""
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    else:
        files = [p.name for p in sorted(model_dir.glob("*.safetensors"))]
    if not files:
        raise FileNotFoundError(f"no safetensors files in {model_dir}")
    total = embedding = 0
    for name in files:
        for tensor, shape in _safetensors_shapes(model_dir / name).items():
            count = math.prod(shape)
            total += count
            if tensor.endswith(EMBEDDING_SUFFIXES):
                embedding += count
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def flops_per_paper(non_embedding_params: int, prompt_tokens: float) -> float:
    return 2.0 * non_embedding_params * prompt_tokens


def mfu(non_embedding_params: int, prompt_tokens: float, papers_per_s: float,
        peak_flops: float) -> float:
    return flops_per_paper(non_embedding_params, prompt_tokens) * papers_per_s / peak_flops


#: Product sizes the peak is measured at, largest first: the largest whose single product
#: takes at most a twentieth of the time budget is used, so the measurement stays bounded even
#: where a precision is emulated (bf16 on an AVX2 CPU: 0.8 GFLOP/s, one 2048 product 21 s).
PEAK_SIZES = (2048, 1024, 512, 256)


def peak_flops(precision: str = "bfloat16", seconds: float = 3.0,
               threads: int | None = None) -> dict:
    """The matrix-product rate (FLOP/s) torch reaches in `precision` ("bfloat16", "float16" or
    "float32", on the CPU) with `threads` threads (default: every core this process may use):
    square products in a loop for about `seconds`, at the largest size of PEAK_SIZES that fits
    the budget. Takes about `seconds` plus one calibration product of the smallest size and
    one warm-up product of the size chosen."""
    import torch

    threads = threads or len(os.sched_getaffinity(0))
    dtype = getattr(torch, precision)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        size = _fitting_size(dtype, seconds / 20)
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        torch.mm(a, b)  # warm-up: thread pool, oneDNN kernel selection
        done, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds:
            torch.mm(a, b)
            done += 1
    finally:
        torch.set_num_threads(previous)
    return {"flops": 2.0 * size**3 * done / elapsed, "precision": precision,
            "threads": threads, "size": size, "seconds": round(elapsed, 2), "products": done}


def _fitting_size(dtype, budget_s: float) -> int:
    """The largest size of PEAK_SIZES whose product should take at most `budget_s`, estimated
    from two products of the smallest size (the first pays for kernel selection)."""
    import torch

    small = PEAK_SIZES[-1]
    a = torch.randn(small, small, dtype=dtype)
    torch.mm(a, a)
    started = time.perf_counter()
    torch.mm(a, a)
    rate = 2.0 * small**3 / max(time.perf_counter() - started, 1e-9)
    return next((n for n in PEAK_SIZES if 2.0 * n**3 / rate <= budget_s), small)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine_info() -> dict:
    cpuinfo, meminfo = _read("/proc/cpuinfo"), _read("/proc/meminfo")
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown")
    memory_kib = next((int(line.split()[1]) for line in meminfo.splitlines()
                       if line.startswith("MemTotal:")), None)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(memory_kib / 2**20, 1) if memory_kib else None,
        "bf16_flags": sorted(cpu_features(cpuinfo) & {"avx512_bf16", "amx_bf16", "bf16"}),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
