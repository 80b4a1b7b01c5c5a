"""Which OpenVINO precision to run: the one asked for, or for 'auto' the fastest on this CPU.

'auto' times f32, bf16 where the CPU has it, and int8 only where its quality guard passed
here, once per CPU (stored in precision-timings.json beside the network): a CPU may
announce bf16 and still run it slower than f32 (the VMs this was measured on did).
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from pathlib import Path

from fastsam_ros.core.backends.int8_quantisation import int8_verdict
from fastsam_ros.core.backends.model_errors import ModelLoadError

PRECISIONS = ("auto", "f32", "bf16", "int8")
PRECISION_TIMINGS = "precision-timings.json"
"""Forward times of the precisions on this CPU, for 'auto'; timed again on another CPU."""


def cpu_capabilities() -> set[str]:
    """OpenVINO's optimisation capabilities of this CPU (FP32, BF16, INT8, ...)."""
    import openvino as ov

    return set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def resolve_precision(precision: str, folder: Path, forward_ms: Callable[[str], float]) -> tuple[str, str]:
    """The precision to compile and why; ``forward_ms`` times one precision's forward pass."""
    if precision not in PRECISIONS:
        raise ModelLoadError(f"precision '{precision}' is not one of {', '.join(PRECISIONS)}")
    capabilities = cpu_capabilities()
    if precision == "bf16" and "BF16" not in capabilities:
        raise ModelLoadError(
            f"precision 'bf16' needs a CPU with bf16 instructions; this one has {sorted(capabilities)}"
        )
    if precision != "auto":
        return precision, "requested"
    verdict = int8_verdict(folder)
    int8_passed = verdict is not None and verdict.get("passed") is True and "INT8" in capabilities
    int8 = "int8 not calibrated yet (fastsam_export --precision int8)" if verdict is None else "int8 failed the guard"
    if int8_passed:
        int8 = f"int8 passed the quality guard here ({verdict.get('summary', '')})"
    candidates = ["f32", *(["bf16"] if "BF16" in capabilities else []), *(["int8"] if int8_passed else [])]
    if len(candidates) == 1:
        return "f32", f"{int8}; the CPU has no bf16"
    timings = _precision_timings(folder, candidates, forward_ms)
    chosen = min(timings, key=timings.__getitem__)
    measured = ", ".join(f"{name} {ms:.1f} ms" for name, ms in sorted(timings.items(), key=lambda item: item[1]))
    return chosen, f"{int8}; fastest here per 640x640 forward: {measured}"


def _precision_timings(folder: Path, candidates: list[str], forward_ms: Callable[[str], float]) -> dict[str, float]:
    """Forward times of the candidate precisions on this CPU, from the stored timing when it is of
    the same CPU and candidates, else measured now and stored; a precision that fails is left out."""
    import openvino as ov

    cpu = str(ov.Core().get_property("CPU", "FULL_DEVICE_NAME"))
    path = folder / PRECISION_TIMINGS
    # Unreadable, or not what this function wrote: timed again.
    with contextlib.suppress(OSError, ValueError, TypeError, OverflowError, RecursionError):
        stored = json.loads(path.read_text())
        timed = stored.get("ms") if isinstance(stored, dict) else None
        if isinstance(timed, dict) and stored.get("cpu") == cpu and sorted(timed) == sorted(candidates):
            kept = {name: float(ms) for name, ms in timed.items()}
            if all(math.isfinite(ms) and ms > 0 for ms in kept.values()):
                return kept
    timings = {}
    for name in candidates:
        with contextlib.suppress(RuntimeError, ModelLoadError):
            timings[name] = forward_ms(name)
    if not timings:
        raise ModelLoadError(f"OpenVINO could not compile the network at any of {', '.join(candidates)}")
    if len(timings) == len(candidates):
        with contextlib.suppress(OSError):  # a read-only cache only costs the next start the timing
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"cpu": cpu, "ms": timings}) + "\n")
    return timings
