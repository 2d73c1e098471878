"""The precision rule over CPU flag sets and GPU compute capabilities, and its overrides."""

from __future__ import annotations

import subprocess
import sys

import pytest

from hardware import precision
from hardware.precision import Precision, choose, cpu_features, for_cpu, for_cuda

# Flag sets as /proc/cpuinfo prints them (shortened to what matters plus neighbours).
AVX2_ONLY = {"fpu", "sse4_2", "avx", "avx2", "fma", "f16c"}
AVX512F_NO_BF16 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"}
AVX512_BF16 = AVX512F_NO_BF16 | {"avx512_bf16"}
AMX = AVX512F_NO_BF16 | {"amx_bf16", "amx_tile", "amx_int8"}
ARM_BF16 = {"fp", "asimd", "sve", "bf16", "i8mm"}
ARM_NO_BF16 = {"fp", "asimd", "crc32", "atomics"}


@pytest.mark.parametrize(("flags", "machine", "expected"), [
    (AVX2_ONLY, "x86_64", Precision.FP32),
    (AVX512F_NO_BF16, "x86_64", Precision.FP32),
    (AVX512_BF16, "x86_64", Precision.BF16),
    (AMX, "x86_64", Precision.BF16),
    (AMX | {"avx512_bf16"}, "x86_64", Precision.BF16),
    (ARM_BF16, "aarch64", Precision.BF16),
    (ARM_NO_BF16, "aarch64", Precision.FP32),
    (ARM_BF16, "arm64", Precision.BF16),
    # An ARM flag name means nothing on x86, and an x86 one nothing on ARM.
    (AVX2_ONLY | {"bf16"}, "x86_64", Precision.FP32),
    (ARM_NO_BF16 | {"avx512_bf16"}, "aarch64", Precision.FP32),
    (set(), "x86_64", Precision.FP32),
])
def test_cpu_rule(flags: set[str], machine: str, expected: Precision) -> None:
    choice = for_cpu(flags, machine)
    assert choice.precision is expected and choice.device == "cpu" and not choice.overridden
    if expected is Precision.BF16:
        assert "native" in choice.reason
    else:
        assert "emulated" in choice.reason


@pytest.mark.parametrize(("capability", "expected"), [
    ((6, 1), Precision.FP32),   # Pascal: no tensor cores
    ((7, 0), Precision.FP16),   # V100 (p3)
    ((7, 5), Precision.FP16),   # T4 (g4dn)
    ((8, 0), Precision.BF16),   # A100 (p4d)
    ((8, 6), Precision.BF16),   # A10G (g5)
    ((8, 9), Precision.BF16),   # L4 (g6)
    ((9, 0), Precision.BF16),   # H100/H200 (p5)
])
def test_cuda_rule(capability: tuple[int, int], expected: Precision) -> None:
    choice = for_cuda(capability, "GPU")
    assert choice.precision is expected and choice.device == "cuda"
    assert f"{capability[0]}.{capability[1]}" in choice.hardware


def test_cpu_features_reads_x86_and_arm_cpuinfo() -> None:
    x86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 AVX512_BF16\n\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd bf16 sve\nCPU implementer\t: 0x41\n"
    assert cpu_features(x86) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_features(arm) == {"fp", "asimd", "bf16", "sve"}
    assert cpu_features("") == set()


@pytest.fixture
def avx2_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU-only AVX2 machine, whatever this one is."""
    monkeypatch.setattr(precision, "detect_cuda", lambda import_torch=False: None)
    monkeypatch.setattr(precision, "_read_cpuinfo", lambda: "flags : " + " ".join(AVX2_ONLY))
    monkeypatch.setattr(precision.platform, "machine", lambda: "x86_64")


def test_choose_follows_the_rule_without_override(avx2_machine: None) -> None:
    choice = choose()
    assert choice.precision is Precision.FP32 and not choice.overridden


def test_override_wins_and_says_so(avx2_machine: None) -> None:
    choice = choose("auto", "bfloat16", "ENGINE_PRECISION")
    assert choice.precision is Precision.BF16 and choice.overridden
    assert "ENGINE_PRECISION=bfloat16" in choice.reason and "float32" in choice.reason
    # Overriding with what the rule says anyway is no override.
    assert not choose("auto", "float32").overridden


def test_gpu_wins_over_cpu_unless_cpu_is_asked(monkeypatch: pytest.MonkeyPatch,
                                               avx2_machine: None) -> None:
    monkeypatch.setattr(precision, "detect_cuda",
                        lambda import_torch=False: ((7, 5), "Tesla T4"))
    assert choose().precision is Precision.FP16
    assert choose("cuda").hardware.startswith("Tesla T4")
    assert choose("cpu").precision is Precision.FP32


def test_asking_for_a_gpu_without_one_fails_clearly(avx2_machine: None) -> None:
    with pytest.raises(RuntimeError, match="no NVIDIA GPU is visible"):
        choose("cuda")


def test_settings_reject_unknown_precisions(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from inference.engine import EngineSettings
    from training.settings import TrainingSettings

    monkeypatch.setenv("ENGINE_PRECISION", "float32")
    monkeypatch.setenv("TRAINING_PRECISION", "float16")
    assert EngineSettings().precision == "float32"
    assert TrainingSettings().precision == "float16"
    monkeypatch.setenv("ENGINE_PRECISION", "int8")
    with pytest.raises(ValidationError, match="auto"):
        EngineSettings()


def test_engine_command_carries_the_choice(monkeypatch: pytest.MonkeyPatch, avx2_machine: None,
                                           base_model_dir) -> None:
    import json

    from inference.engine import EngineSettings, build_command
    from inference.engine_headers import PRECISION_ENV

    args, env = build_command(EngineSettings(), base_model_dir)
    assert args[args.index("--dtype") + 1] == "float32"
    assert json.loads(env[PRECISION_ENV])["precision"] == "float32"
    args, env = build_command(EngineSettings(precision="bfloat16"), base_model_dir)
    assert args[args.index("--dtype") + 1] == "bfloat16"
    assert json.loads(env[PRECISION_ENV])["overridden"] is True


def test_choosing_imports_no_torch() -> None:
    """The gateway and the engine launcher ask the rule; neither may pay for importing torch."""
    code = ("import sys; from hardware.precision import choose; print(choose().precision); "
            "assert 'torch' not in sys.modules, 'torch was imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in {"bfloat16", "float16", "float32"}

