"""The compute precision for a device: the one rule every component asks (engine launcher,
vLLM's offline engine, transformers scoring, training autocast, the benchmark).

- bf16 where the hardware computes it natively: x86 with AVX512_BF16 or AMX-BF16, ARM with the
  BF16 extension, NVIDIA GPUs of compute capability 8.0 (Ampere) and up;
- fp16 on older NVIDIA GPUs with tensor cores (7.x: V100, T4), which have no bf16;
- fp32 everywhere else: a CPU without native bf16 emulates it (measured on a 2-core AVX2 EPYC:
  bf16 matrix products at 0.8 GFLOP/s against 105 GFLOP/s in fp32, and a vLLM server five times
  slower in bf16 than in fp32).

Weights are stored once (bf16 safetensors); vLLM and transformers cast them at load. CPU flags
come from /proc/cpuinfo; the GPU from torch when the caller already imported it (or a CUDA
device is asked for explicitly), else from `nvidia-smi`, so the gateway and the launcher never
pay for importing torch.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

#: What a service's precision setting accepts: "auto" follows the hardware rule.
PrecisionSetting = Literal["auto", "bfloat16", "float16", "float32"]

#: The GPU compute capability from which bf16 is native (Ampere; NVIDIA CUDA programming guide).
BF16_MIN_CAPABILITY = (8, 0)
#: From here fp16 runs on tensor cores (Volta); vLLM needs at least this.
FP16_MIN_CAPABILITY = (7, 0)
#: x86 /proc/cpuinfo flags that mean native bf16 matrix products.
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


class Precision(StrEnum):
    """Compute precisions by the name torch and vLLM give them (`--dtype`, `torch.<name>`)."""

    BF16 = "bfloat16"
    FP16 = "float16"
    FP32 = "float32"


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision a device computes in, and why (shown in logs, `GET /v1/model` and the
    benchmark's JSON)."""

    precision: Precision
    device: str  # "cpu" or "cuda"
    hardware: str  # what was looked at, e.g. "x86_64 CPU with avx512_bf16, amx_bf16"
    reason: str
    overridden: bool = False

    def as_dict(self) -> dict[str, str | bool]:
        return asdict(self) | {"precision": self.precision.value}

    def describe(self) -> str:
        return f"{self.precision.value} on {self.device}: {self.reason}"


def for_cpu(flags: Iterable[str], machine: str) -> PrecisionChoice:
    """The rule for a CPU, from its feature flags (x86 `flags` / ARM `Features` of
    /proc/cpuinfo, lower case) and its architecture (`platform.machine()`)."""
    flags = {f.lower() for f in flags}
    arm = machine.lower() in {"aarch64", "arm64"}
    native = sorted(flags & {"bf16"}) if arm else sorted(flags & set(X86_BF16_FLAGS))
    hardware = f"{machine} CPU" + (f" with {', '.join(native)}" if native else "")
    if native:
        return PrecisionChoice(Precision.BF16, "cpu", hardware,
                               f"native bf16 matrix products ({', '.join(native)})")
    missing = "the BF16 extension" if arm else "AVX512_BF16 or AMX-BF16"
    return PrecisionChoice(Precision.FP32, "cpu", hardware,
                           f"no {missing}: bf16 would be emulated, far slower than fp32")


def for_cuda(capability: tuple[int, int], name: str = "NVIDIA GPU") -> PrecisionChoice:
    """The rule for an NVIDIA GPU of compute capability `capability` (major, minor)."""
    hardware = f"{name} (compute capability {capability[0]}.{capability[1]})"
    if capability >= BF16_MIN_CAPABILITY:
        return PrecisionChoice(Precision.BF16, "cuda", hardware,
                               "compute capability 8.0 or newer: native bf16")
    if capability >= FP16_MIN_CAPABILITY:
        return PrecisionChoice(Precision.FP16, "cuda", hardware,
                               "compute capability below 8.0: no bf16, fp16 tensor cores")
    return PrecisionChoice(Precision.FP32, "cuda", hardware,
                           "compute capability below 7.0: no fp16 tensor cores")


def cpu_features(cpuinfo: str) -> set[str]:
    """Feature flags from the text of /proc/cpuinfo (x86 `flags`, ARM `Features`)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in {"flags", "features"}:
            return set(value.lower().split())
    return set()


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def detect_cuda(import_torch: bool = False) -> tuple[tuple[int, int], str] | None:
    """(compute capability, name) of the first NVIDIA GPU, or None without one. Uses torch when
    the caller has imported it already (or `import_torch`), else `nvidia-smi` (the gateway and
    the launcher do not pay for importing torch)."""
    torch = sys.modules.get("torch")
    if torch is None and import_torch:
        try:
            import torch
        except ImportError:
            torch = None
    if torch is not None:
        if not torch.cuda.is_available():
            return None
        return tuple(torch.cuda.get_device_capability(0)), torch.cuda.get_device_name(0)
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap,name",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=True).stdout
        cap, name = out.splitlines()[0].split(",", 1)
        major, minor = cap.strip().split(".")
        return (int(major), int(minor)), name.strip()
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def choose(device: str = "auto", override: PrecisionSetting = "auto",
           setting_name: str = "precision") -> PrecisionChoice:
    """The precision for `device` ("auto": the first NVIDIA GPU when there is one, else the
    CPU). `override` other than "auto" wins over the rule; `setting_name` (the environment
    variable that set it) is named in the reason. Raises RuntimeError when `device` is "cuda"
    and no NVIDIA GPU is visible."""
    gpu = detect_cuda(import_torch=device == "cuda") if device in {"auto", "cuda"} else None
    if gpu is not None:
        choice = for_cuda(*gpu)
    elif device == "cuda":
        raise RuntimeError("a CUDA device was asked for, but no NVIDIA GPU is visible "
                           "(neither torch nor nvidia-smi finds one)")
    else:
        choice = for_cpu(cpu_features(_read_cpuinfo()), platform.machine())
    if override == "auto" or override == choice.precision.value:
        return choice
    return PrecisionChoice(Precision(override), choice.device, choice.hardware,
                           f"set by {setting_name}={override} (the hardware rule says "
                           f"{choice.precision.value}: {choice.reason})", overridden=True)
