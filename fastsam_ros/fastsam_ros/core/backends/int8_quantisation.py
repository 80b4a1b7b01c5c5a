"""Post-training int8 quantisation of the OpenVINO network, and the quality verdict stored beside it.

The int8 network is built once per weights (NNCF, calibrated on real network inputs) and
kept in the network's folder with the quality guard's verdict: precision 'auto' takes
int8 only where that verdict passed on this machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.backends.work_folder import work_folder

INT8_MODEL = "int8-conv-inputs.xml"
"""Named after the quantisation scheme, so that a network cached by an earlier scheme is calibrated again."""
INT8_VERDICT = "int8-quality.json"
"""The quality guard's result for the calibrated int8 model, written beside it."""


def int8_verdict(folder: Path) -> dict | None:
    """The stored quality guard result of the int8 network in ``folder``, if it was checked."""
    path = folder / INT8_VERDICT
    if not (path.is_file() and (folder / INT8_MODEL).is_file()):
        return None
    try:
        verdict = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return verdict if isinstance(verdict, dict) else None


def write_int8_verdict(folder: Path, passed: bool, summary: str) -> None:
    (folder / INT8_VERDICT).write_text(json.dumps({"passed": bool(passed), "summary": summary}) + "\n")


def quantize_int8(onnx_path: Path, folder: Path, inputs: Iterable[np.ndarray], log: Callable[[str], None]) -> Path:
    """Post-training int8 quantisation with NNCF, calibrated on real network inputs; cached."""
    target = folder / INT8_MODEL
    if target.is_file():
        return target
    if importlib.util.find_spec("nncf") is None:
        raise ModelLoadError("precision 'int8' needs the package nncf to calibrate once: pip install it")
    import nncf
    import openvino as ov

    samples = list(inputs)
    log(f"calibrating int8 on {len(samples)} real frames (once per weights)")
    model = ov.Core().read_model(str(onnx_path))
    # The head's box decoding (distribution focal loss and anchor arithmetic) loses box
    # accuracy when quantised and costs little, so it stays in float. NNCF's transformer
    # scheme quantises only the inputs of convolutions and matrix products; its CNN scheme
    # also quantises both inputs of every SiLU's multiply (172 more quantisers here), which
    # kept fewer instances and ran slower (docs/PERFORMANCE.md, "INT8: what loses instances").
    quantized = nncf.quantize(
        model,
        nncf.Dataset(samples),
        preset=nncf.QuantizationPreset.MIXED,
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
        ignored_scope=nncf.IgnoredScope(
            patterns=[r".*/dfl/.*", r".*/model\.\d+/(Sub|Add|Mul|Div)(_\d+)?$"], validate=False
        ),
    )
    try:
        with work_folder(folder) as work:
            staged = work / INT8_MODEL
            ov.save_model(quantized, str(staged), compress_to_fp16=False)
            os.replace(staged.with_suffix(".bin"), target.with_suffix(".bin"))
            os.replace(staged, target)
    except OSError as error:
        raise ModelLoadError(f"could not write the int8 network to {folder}: {error}") from error
    return target
