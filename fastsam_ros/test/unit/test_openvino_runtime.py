"""The OpenVINO runtime: equal to ONNX Runtime in f32, guarded in bf16 and int8, safe fallbacks."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from fastsam_ros.core import int8_calibration
from fastsam_ros.core.backends import openvino_runtime, precision
from fastsam_ros.core.backends.int8_quantisation import INT8_MODEL, INT8_VERDICT, quantize_int8, write_int8_verdict
from fastsam_ros.core.backends.model_errors import ModelLoadError
from fastsam_ros.core.backends.model_loading import load_model
from fastsam_ros.core.backends.onnx_runtime import cache_dir, exported_onnx
from fastsam_ros.core.backends.openvino_runtime import (
    COMPILED,
    METADATA,
    PROBE_SHAPE,
    OpenVinoNetwork,
    forward_ms,
    model_dir,
    onnx_metadata,
    threads_text,
)
from fastsam_ros.core.backends.precision import PRECISION_TIMINGS, cpu_capabilities, resolve_precision
from fastsam_ros.core.engine import SegmentationEngine
from fastsam_ros.core.int8_calibration import calibrate_int8, calibration_frames_in_guard, precision_quality
from fastsam_ros.tools import export
from fastsam_ros.tools.int8_frames import (
    CALIBRATION_VIDEO,
    CAMERA_SIZES,
    calibration_sources,
    guard_sources,
    picked_frames,
)
from fastsam_ros.tools.sample_frames import asset_image, camera_frames, mosaic
from fastsam_ros.tools.sample_videos import sample_video, video_frames

pytest.importorskip("openvino")
HAS_BF16 = "BF16" in cpu_capabilities()


@pytest.fixture(scope="module")
def weights(loaded_model) -> str:
    return loaded_model.source


@pytest.fixture(scope="module")
def f32_engine(weights):
    return SegmentationEngine(load_model(weights, "cpu", runtime="openvino", precision="f32"))


@pytest.fixture(scope="module")
def onnx_engine(weights):
    return SegmentationEngine(load_model(weights, "cpu", runtime="onnxruntime"))


@pytest.fixture(scope="module")
def guard_frames(bus, zidane) -> list[np.ndarray]:
    """Real photos whole and as 720p and 1080p camera frames."""
    return [bus, zidane, *camera_frames(1280, 720, 2), *camera_frames(1920, 1080, 2)]


@pytest.fixture
def private_cache(monkeypatch, tmp_path, weights):
    """An empty cache of compiled models that already holds this session's ONNX export."""
    exported = exported_onnx(weights)
    monkeypatch.setenv("FASTSAM_ROS_CACHE", str(tmp_path))
    shutil.copyfile(exported, tmp_path / exported.name)
    return tmp_path / exported.name


def test_f32_openvino_equals_onnxruntime(f32_engine, onnx_engine, guard_frames):
    assert (f32_engine.loaded.runtime, f32_engine.loaded.precision) == ("openvino", "f32")
    for frame in guard_frames:
        ours, reference = f32_engine.segment(frame), onnx_engine.segment(frame)
        assert len(reference) > 0
        assert [i.class_id for i in ours.instances] == [i.class_id for i in reference.instances]
        boxes = np.array([i.box for i in ours.instances])
        assert np.abs(boxes - np.array([i.box for i in reference.instances])).max() <= 1.0
        for mine, theirs in zip(ours.full_masks(), reference.full_masks(), strict=True):
            assert (mine & theirs).sum() / (mine | theirs).sum() >= 0.99


def test_input_shapes_are_compiled_once_each(f32_engine, bus, zidane):
    network = f32_engine.loaded.backend
    f32_engine.segment(zidane)
    f32_engine.segment(bus)
    shapes = network.compiled_shapes
    assert (1, 3, 384, 640) in shapes and (1, 3, 640, 480) in shapes, "minimal letterbox, one compile per shape"
    f32_engine.segment(zidane)
    assert network.compiled_shapes[-1] == (1, 3, 384, 640) and len(network.compiled_shapes) == len(shapes)


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bf16 instructions")
def test_bf16_meets_the_quality_guard(weights, guard_frames):
    report = precision_quality(weights, "bf16", guard_frames)
    assert report.reference_instances > 20
    assert report.passed, report.summary()


def test_int8_calibration_and_guard_frames_are_disjoint_and_of_several_kinds():
    """The guard's verdict is only worth something on frames the calibration did not see."""
    calibration, guard = calibration_sources(), guard_sources()
    videos = set(CALIBRATION_VIDEO)
    assert "photos" in calibration and len(videos & set(calibration)) >= 2, list(calibration)
    assert "photos" in guard and videos & set(guard), list(guard)
    assert sum(map(len, calibration.values())) > 100
    assert all(len(frames) >= 10 for frames in (*calibration.values(), *guard.values()))
    calibration_frames = [frame for frames in calibration.values() for frame in frames]
    for source, frames in guard.items():
        assert not calibration_frames_in_guard(calibration_frames, frames), source


def test_picked_frames_are_those_at_exactly_the_indices_asked():
    picked = picked_frames({"vtest.avi": range(5, 25, 10), "Megamind.avi": range(3, 4)})
    assert [len(frames) for frames in picked.values()] == [2, 1]
    for name, index, frame in (("vtest.avi", 5, 0), ("vtest.avi", 15, 1), ("Megamind.avi", 3, 0)):
        assert np.array_equal(picked[name][frame], video_frames(sample_video(name), 1, index)[0]), (name, index)


def test_int8_photo_frames_are_the_photos_a_mosaic_and_camera_windows_and_the_guard_their_mirrors():
    """The photo part of both sets as PERFORMANCE.md's int8 figures were measured on."""
    bus, zidane = asset_image("bus.jpg"), asset_image("zidane.jpg")
    windows = {size: camera_frames(*size, 6) for size in CAMERA_SIZES}
    calibration = [bus, zidane, mosaic(4, 3, 1280, 720), *(frame for size in CAMERA_SIZES for frame in windows[size])]
    guard = [bus, zidane, *(frame for size in CAMERA_SIZES[:2] for frame in windows[size])]
    assert CAMERA_SIZES == ((1280, 720), (1920, 1080), (640, 480))
    for taken, expected, mirror in (
        (calibration_sources()["photos"], calibration, False),
        (guard_sources()["photos"], guard, True),
    ):
        assert len(taken) == len(expected)
        for index, (frame, original) in enumerate(zip(taken, expected, strict=True)):
            assert np.array_equal(frame, original[:, ::-1] if mirror else original), index


@pytest.mark.parametrize("content", ["{not json", "[" * 100_000, "[]", '{"names": 5}', '{"names": {"0": "person"}}'])
def test_a_cached_export_metadata_that_is_not_what_was_written_is_read_again(private_cache, weights, content):
    folder = model_dir(private_cache, cache_dir())
    expected = load_model(weights, "cpu", runtime="openvino", precision="f32").class_names
    (folder / METADATA).write_text(content)
    assert load_model(weights, "cpu", runtime="openvino", precision="f32").class_names == expected
    assert json.loads((folder / METADATA).read_text())["names"] == str(expected), "written again"


def test_kept_metadata_is_read_instead_of_the_onnx_file(private_cache, tmp_path):
    """A warm start reads the few fields kept beside the compiled models, not the whole export."""
    (tmp_path / METADATA).write_text(json.dumps({"task": "segment", "kept": "yes"}))
    assert onnx_metadata(private_cache, tmp_path) == {"task": "segment", "kept": "yes"}


def test_the_inference_threads_are_said_as_set():
    assert threads_text((1, 2, 4)) == "inference threads follow the load: 4 while frames do not queue, 1 while they do"
    assert threads_text((0,)) == "OpenVINO chooses the inference threads"
    assert [threads_text((count,)) for count in (1, 2)] == ["1 inference thread", "2 inference threads"]


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_an_onnx_file_that_is_not_an_ultralytics_export_is_a_clear_error(tmp_path, weights, runtime):
    precision = {"precision": "f32"} if runtime == "openvino" else {}
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a protobuf message" * 10)
    unreadable = rf"^'{re.escape(str(corrupt))}' is not a readable ONNX file: |^ONNX Runtime could not load "
    with pytest.raises(ModelLoadError, match=unreadable):
        load_model(str(corrupt), "cpu", runtime=runtime, **precision)
    renamed = onnx.load(str(exported_onnx(weights)))
    for prop in renamed.metadata_props:
        if prop.key == "names":
            prop.value = "not a dictionary of names"
    odd = tmp_path / "odd.onnx"
    onnx.save(renamed, str(odd))
    not_ours = rf"^'{re.escape(str(odd))}' has metadata that is not an ultralytics export's: "
    with pytest.raises(ModelLoadError, match=not_ours):
        load_model(str(odd), "cpu", runtime=runtime, **precision)


def test_int8_without_nncf_says_what_to_install(monkeypatch, tmp_path, weights):
    monkeypatch.setitem(sys.modules, "nncf", None)  # the package cannot be found
    with pytest.raises(ModelLoadError) as refused:
        quantize_int8(exported_onnx(weights), tmp_path, [], log=lambda line: None)
    assert str(refused.value) == "precision 'int8' needs the package nncf to calibrate once: pip install it"
    assert not list(tmp_path.iterdir())


def test_int8_before_its_calibration_says_how_to_calibrate(private_cache, weights):
    with pytest.raises(ModelLoadError) as refused:
        load_model(weights, "cpu", runtime="openvino", precision="int8")
    assert str(refused.value) == (
        "precision 'int8' needs the network calibrated once for these weights (about a minute): "
        "run `fastsam_export --precision int8`"
    )


def test_int8_guard_refuses_calibration_frames(private_cache, weights, bus, zidane):
    mirrored = np.ascontiguousarray(bus[:, ::-1])
    assert calibration_frames_in_guard([bus, zidane], [mirrored, zidane.copy(), bus[:, ::-1]]) == [1]
    with pytest.raises(ValueError, match=r"guard frames \[1\]"):
        calibrate_int8(weights, [bus, zidane], [mirrored, zidane], log=lambda line: None)


def assert_int8_scheme(network: Path) -> None:
    """The int8 network quantises convolution and matrix product inputs only (not the SiLUs'
    multiplies, as NNCF's CNN scheme would), activations asymmetric (preset MIXED), and leaves the
    box decoding (DFL) in float."""
    import openvino as ov

    quantisers = [
        op for op in ov.Core().read_model(str(network)).get_ordered_ops() if op.get_type_name() == "FakeQuantize"
    ]
    fed = [target.get_node() for op in quantisers for target in op.output(0).get_target_inputs()]
    kinds = {node.get_type_name() for node in fed}
    assert {"Convolution", "MatMul"} <= kinds and "Multiply" not in kinds, kinds
    assert not [node.get_friendly_name() for node in fed if "/dfl/" in node.get_friendly_name()]
    activations = [op for op in quantisers if op.input_value(0).get_node().get_type_name() != "Constant"]
    ranges = [(op.input_value(1).get_node().get_data(), op.input_value(2).get_node().get_data()) for op in activations]
    assert any(not np.allclose(low, -high, rtol=0.02) for low, high in ranges), "asymmetric activations (MIXED)"


def int8_timed_fastest(folder: Path) -> None:
    """A stored int8 verdict that passed and a stored timing of this CPU with int8 fastest."""
    import openvino as ov

    write_int8_verdict(folder, True, "10/10 kept")
    timed = {"f32": 30.0, **({"bf16": 20.0} if HAS_BF16 else {}), "int8": 1.0}
    cpu = str(ov.Core().get_property("CPU", "FULL_DEVICE_NAME"))
    (folder / PRECISION_TIMINGS).write_text(json.dumps({"cpu": cpu, "ms": timed}))
    assert resolve_precision("auto", folder, Timer())[0] == "int8"


def test_int8_is_calibrated_once_and_guarded(private_cache, weights, guard_frames, tmp_path, monkeypatch, capsys):
    """int8 keeps most instances; whether it meets the guard is stored, and 'auto' follows that verdict.

    In a private cache: the one-frame guard below stores a verdict that would make every later
    node of the session run int8. Calibrated on frames the guard does not see: two windows of
    the photos and a frame of each of two videos."""
    videos = picked_frames(
        {
            name: range(CALIBRATION_VIDEO[name].start, CALIBRATION_VIDEO[name].start + 1)
            for name in ("vtest.avi", "Megamind.avi")
        }
    )
    calibration = [
        camera_frames(1280, 720, 3)[1],
        camera_frames(640, 480, 3)[2],
        *videos["vtest.avi"],
        *videos["Megamind.avi"],
    ]
    compared: list[tuple[str, str, str, int | None]] = []
    engine_class = int8_calibration.SegmentationEngine

    def engine(loaded, *args, **kwargs) -> SegmentationEngine:
        """The engine the calibration builds, noting the network it runs: runtime, precision, device, threads."""
        compared.append((loaded.runtime, loaded.precision, loaded.device.type, loaded.backend.inference_threads))
        return engine_class(loaded, *args, **kwargs)

    monkeypatch.setattr(int8_calibration, "SegmentationEngine", engine)
    said: list[str] = []
    report = calibrate_int8(weights, calibration, guard_frames, log=said.append)
    f32, int8 = ("openvino", "f32", "cpu"), ("openvino", "int8", "cpu")
    assert compared == [(*f32, 0), (*f32, 0), (*int8, 0)], "inputs recorded on f32, then f32 against int8"
    assert report.kept_share >= 0.7 and np.median(report.mask_ious) >= 0.95, report.summary()
    assert said[0] == "calibrating int8 on 4 real frames (once per weights)"
    assert said[-1] == f"int8 quality guard {'passed' if report.passed else 'FAILED'}: {report.summary()}"
    folder = model_dir(exported_onnx(weights), cache_dir())
    assert_int8_scheme(folder / INT8_MODEL)
    stored = json.loads((folder / INT8_VERDICT).read_text())
    assert stored == {"passed": report.passed, "summary": report.summary()}
    copy = tmp_path / "verdict"
    copy.mkdir()
    for name in (INT8_MODEL, INT8_VERDICT):
        shutil.copy(folder / name, copy / name)
    int8_fastest = {"int8": 1.0, "bf16": 2.0, "f32": 3.0}.__getitem__
    assert (resolve_precision("auto", copy, int8_fastest)[0] == "int8") == report.passed
    network = folder / INT8_MODEL
    before = network.stat().st_mtime_ns
    int8_timed_fastest(folder)  # from here on, precision 'auto' would be int8: the guard must not use it
    compared.clear()
    monkeypatch.setattr(export, "calibration_frames", lambda: calibration[:1])
    monkeypatch.setattr(export, "guard_frames", lambda: guard_frames[:1])
    code = export.main(["--model", weights, "--threads", "3"])
    assert network.stat().st_mtime_ns == before, "the int8 network is cached"
    passed = json.loads((folder / INT8_VERDICT).read_text())["passed"]
    assert code == (0 if passed else 1), "fastsam_export calibrates int8 unless told otherwise"
    assert compared == [(*f32, 3), (*int8, 3)], "no calibration inputs: the network is cached"
    assert f"int8 quality guard {'passed' if passed else 'FAILED'}: " in capsys.readouterr().out
    int8_timed_fastest(folder)
    compared.clear()
    quality = precision_quality(weights, "int8", guard_frames[:1], threads=2)
    assert compared == [(*f32, 2), (*int8, 2)] and quality.reference_instances > 0
    compared.clear()
    precision_quality(weights, "f32", [])
    assert compared == [(*f32, 0), (*f32, 0)], "the precision asked for; OpenVINO chooses the threads unless told"
    network.with_suffix(".bin").unlink()  # the int8 network's weights, lost: the int8 network is what loads
    with pytest.raises(ModelLoadError) as refused:
        load_model(weights, "cpu", runtime="openvino", precision="int8")
    assert str(refused.value).startswith(f"OpenVINO could not read '{network}' (")
    assert str(refused.value).endswith("); delete it to rebuild it")


class Timer:
    """Forward times by precision, counting the precisions it was asked to time."""

    def __init__(self, **ms: float) -> None:
        self.ms, self.timed = ms, []

    def __call__(self, asked: str) -> float:
        self.timed.append(asked)
        return self.ms[asked]


def test_auto_takes_the_fastest_precision_here_timed_once_and_never_an_int8_that_failed_the_guard(tmp_path):
    bf16_faster = Timer(f32=30.0, bf16=20.0, int8=10.0)
    chosen, why = resolve_precision("auto", tmp_path, bf16_faster)
    assert chosen == ("bf16" if HAS_BF16 else "f32"), "not calibrated: no int8"
    assert bf16_faster.timed == (["f32", "bf16"] if HAS_BF16 else [])
    if HAS_BF16:
        assert why.endswith("fastest here per 640x640 forward: bf16 20.0 ms, f32 30.0 ms")
        f32_faster = Timer(f32=20.0, bf16=30.0)
        assert resolve_precision("auto", tmp_path, f32_faster)[0] == "bf16" and f32_faster.timed == [], "stored"
        stored = json.loads((tmp_path / PRECISION_TIMINGS).read_text())
        (tmp_path / PRECISION_TIMINGS).write_text(json.dumps({**stored, "cpu": "another CPU"}))
        chosen, why = resolve_precision("auto", tmp_path, f32_faster)
        assert chosen == "f32", "timed again on another CPU"
        assert why.endswith("fastest here per 640x640 forward: f32 20.0 ms, bf16 30.0 ms"), "fastest first"
        assert f32_faster.timed == ["f32", "bf16"]
    (tmp_path / INT8_MODEL).write_text("<net/>")
    write_int8_verdict(tmp_path, False, "3/10 kept")
    chosen, why = resolve_precision("auto", tmp_path, Timer(f32=30.0, bf16=20.0, int8=1.0))
    assert chosen != "int8" and "failed" in why
    write_int8_verdict(tmp_path, True, "10/10 kept")
    chosen, why = resolve_precision("auto", tmp_path, Timer(f32=30.0, bf16=20.0, int8=1.0))
    assert chosen == "int8" and why.startswith("int8 passed the quality guard here (10/10 kept); "), why
    (tmp_path / INT8_VERDICT).write_text('{"passed": true}')  # a verdict written by hand
    why = resolve_precision("auto", tmp_path, Timer(f32=30.0, bf16=20.0, int8=1.0))[1]
    assert why.startswith("int8 passed the quality guard here (); "), why
    assert resolve_precision("f32", tmp_path, Timer()) == ("f32", "requested")
    (tmp_path / INT8_MODEL).unlink()  # deleted to calibrate again: the verdict was of that network
    chosen, why = resolve_precision("auto", tmp_path, Timer(f32=30.0, bf16=20.0, int8=1.0))
    assert chosen != "int8" and why.startswith("int8 not calibrated yet (fastsam_export --precision int8); "), why
    with pytest.raises(ModelLoadError) as refused:
        resolve_precision("fp8", tmp_path, bf16_faster)
    assert str(refused.value) == "precision 'fp8' is not one of auto, f32, bf16, int8"


def test_a_cpu_without_bf16_refuses_bf16_and_auto_times_nothing(tmp_path, monkeypatch):
    """A CPU without bf16 instructions, given as the capabilities OpenVINO reports for one: the
    suite's CPUs have bf16, so this list stands in for such a CPU."""
    monkeypatch.setattr(precision, "cpu_capabilities", lambda: {"FP32", "INT8", "BIN"})
    with pytest.raises(ModelLoadError) as refused:
        resolve_precision("bf16", tmp_path, Timer())
    assert str(refused.value) == (
        "precision 'bf16' needs a CPU with bf16 instructions; this one has ['BIN', 'FP32', 'INT8']"
    )
    assert resolve_precision("f32", tmp_path, Timer()) == ("f32", "requested")
    timer = Timer(f32=30.0, bf16=20.0)
    assert resolve_precision("auto", tmp_path, timer) == (
        "f32",
        "int8 not calibrated yet (fastsam_export --precision int8); the CPU has no bf16",
    )
    assert timer.timed == [], "one candidate: nothing to time"


def test_stored_timings_are_of_this_cpu_and_a_store_that_cannot_be_read_is_timed_again(tmp_path):
    import openvino as ov

    (tmp_path / INT8_MODEL).write_text("<net/>")
    write_int8_verdict(tmp_path, True, "10/10 kept")
    candidates = ["f32", "bf16", "int8"] if HAS_BF16 else ["f32", "int8"]
    timer = Timer(f32=30.0, bf16=20.0, int8=10.0)
    assert resolve_precision("auto", tmp_path, timer)[0] == "int8" and timer.timed == candidates
    stored = json.loads((tmp_path / PRECISION_TIMINGS).read_text())
    cpu = str(ov.Core().get_property("CPU", "FULL_DEVICE_NAME"))
    assert stored == {"cpu": cpu, "ms": {name: timer.ms[name] for name in candidates}}
    nested = "[" * 100_000 + "]" * 100_000
    odd_times = ({name: value for name in candidates} for value in (10**400, float("nan"), -1.0, 0, None))
    for broken in (
        "{not json",
        "[1, 2]",
        "null",
        nested,
        json.dumps({"cpu": cpu}),
        json.dumps({"cpu": cpu, "ms": candidates}),
        *(json.dumps({"cpu": cpu, "ms": times}) for times in odd_times),
    ):
        (tmp_path / PRECISION_TIMINGS).write_text(broken)
        again = Timer(f32=30.0, bf16=20.0, int8=10.0)
        assert resolve_precision("auto", tmp_path, again)[0] == "int8" and again.timed == candidates, broken
    for broken, said in (
        *((content, "int8 not calibrated yet") for content in ("[true]", "null", "{not json", nested)),
        *((content, "int8 failed the guard") for content in ('{"passed": "true"}', '{"passed": 1}')),
    ):
        (tmp_path / INT8_VERDICT).write_text(broken)
        chosen, why = resolve_precision("auto", tmp_path, Timer(f32=30.0, bf16=20.0, int8=10.0))
        assert chosen != "int8" and why.startswith(said), broken


def test_a_precision_that_fails_to_compile_is_not_taken_and_its_timing_not_stored(tmp_path):
    def broken_int8(asked: str) -> float:
        if asked == "int8":
            raise ModelLoadError("could not read")
        return {"f32": 30.0, "bf16": 20.0}[asked]

    (tmp_path / INT8_MODEL).write_text("<net/>")
    write_int8_verdict(tmp_path, True, "10/10 kept")
    assert resolve_precision("auto", tmp_path, broken_int8)[0] == ("bf16" if HAS_BF16 else "f32")
    assert not (tmp_path / PRECISION_TIMINGS).exists()

    def broken(asked: str) -> float:
        raise RuntimeError("cannot compile")

    candidates = "f32, bf16, int8" if HAS_BF16 else "f32, int8"
    with pytest.raises(ModelLoadError) as refused:
        resolve_precision("auto", tmp_path, broken)
    assert str(refused.value) == f"OpenVINO could not compile the network at any of {candidates}"


def test_timings_are_stored_in_a_cache_folder_made_now_and_a_cache_that_cannot_be_written_is_no_error(tmp_path):
    made_now = tmp_path / "cache" / "network"  # its parent is missing too
    (tmp_path / "file").write_text("")
    unwritable = tmp_path / "file" / "network"  # below a file: no folder can be made there
    for folder in (made_now, unwritable):
        assert resolve_precision("auto", folder, Timer(f32=30.0, bf16=20.0))[0] == ("bf16" if HAS_BF16 else "f32")
    assert (made_now / PRECISION_TIMINGS).is_file() == HAS_BF16, "stored where there was a choice to time"
    assert not unwritable.exists()


def test_auto_prefers_openvino_and_says_why(weights):
    loaded = load_model(weights, "cpu", runtime="auto")
    assert loaded.runtime == "openvino" and not loaded.fallback
    assert "chose openvino" in loaded.choice and f"precision {loaded.precision}" in loaded.choice
    if HAS_BF16:
        timed = json.loads((model_dir(exported_onnx(weights), cache_dir()) / PRECISION_TIMINGS).read_text())["ms"]
        assert loaded.precision == min(timed, key=timed.get), "the faster precision as timed on this CPU"
        assert "fastest here per 640x640 forward" in loaded.choice


def test_without_openvino_auto_falls_back_to_onnxruntime(monkeypatch, weights):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino now fails, as when not installed
    loaded = load_model(weights, "cpu", runtime="auto")
    assert loaded.runtime == "onnxruntime"
    assert dict(loaded.choice_record.passed_over)["openvino"] == (
        "openvino is not installed; runtime 'openvino' needs the package openvino: pip install it"
    )
    with pytest.raises(ModelLoadError, match="needs the package openvino"):
        load_model(weights, "cpu", runtime="openvino")


def test_a_failed_compile_falls_back_to_onnxruntime(monkeypatch, private_cache, weights):
    def failing(self, shape):
        raise RuntimeError("Exception from src/plugins/intel_cpu: unsupported layer")

    monkeypatch.setattr(OpenVinoNetwork, "compiled", failing)
    loaded = load_model(weights, "cpu", runtime="auto")
    assert loaded.runtime == "onnxruntime"
    named = load_model(weights, "cpu", runtime="auto", precision="f32")  # not timed: compiled once, at load
    assert named.fallback == (
        f"openvino unavailable (OpenVINO could not compile '{private_cache}' for the CPU: "
        "Exception from src/plugins/intel_cpu: unsupported layer); using onnxruntime"
    )
    assert "openvino unavailable" in loaded.fallback and "could not compile" in loaded.fallback
    with pytest.raises(ModelLoadError, match="could not compile"):
        load_model(weights, "cpu", runtime="openvino")


def test_compiled_models_are_rebuilt_for_new_weights_and_a_second_load_is_served_from_the_cache(private_cache, bus):
    """A changed network gets its own compiled models; the old ones are loaded from OpenVINO's cache, not compiled."""
    first = load_model(str(private_cache), "cpu", runtime="openvino", precision="f32")
    assert not first.backend.compiled((1, 3, 640, 640)).get_property("LOADED_FROM_CACHE"), "an empty cache"
    cached = {path: path.stat().st_mtime_ns for path in (first.backend.folder / COMPILED).iterdir()}
    assert cached, "the compile is kept in the network's cache folder"
    changed = onnx.load(str(private_cache))
    tensor = next(t for t in changed.graph.initializer if numpy_helper.to_array(t).ndim == 4)
    tensor.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(tensor) * 0.5, tensor.name))
    other = private_cache.with_name("changed.onnx")
    onnx.save(changed, str(other))
    second = load_model(str(other), "cpu", runtime="openvino", precision="f32")
    assert second.backend.folder != first.backend.folder and list((second.backend.folder / COMPILED).iterdir())
    assert not second.backend.compiled((1, 3, 640, 640)).get_property("LOADED_FROM_CACHE")
    again = load_model(str(private_cache), "cpu", runtime="openvino", precision="f32")
    assert again.backend.compiled((1, 3, 640, 640)).get_property("LOADED_FROM_CACHE")
    assert {path: path.stat().st_mtime_ns for path in (first.backend.folder / COMPILED).iterdir()} == cached
    ours, theirs = SegmentationEngine(first).segment(bus), SegmentationEngine(second).segment(bus)
    assert [i.box for i in ours.instances] != [i.box for i in theirs.instances], "the new weights are in use"


def test_the_thread_count_follows_the_load_on_one_compile_per_shape(private_cache, bus):
    """Most threads while frames do not queue, fewest while they do; the other count loads the same compile."""
    loaded = load_model(str(private_cache), "cpu", runtime="openvino", precision="f32", threads=(2, 1))
    network, engine = loaded.backend, SegmentationEngine(loaded)
    assert "2 while frames do not queue, 1 while they do" in loaded.choice
    wide = engine.segment(bus)
    shape = network.compiled_shapes[-1]
    wide_model = network.compiled(shape)
    assert wide_model.get_property("INFERENCE_NUM_THREADS") == 2 and engine.inference_threads == 2
    engine.follow_load(True)
    narrow = engine.segment(bus)
    narrow_model = network.compiled(shape)
    assert narrow_model.get_property("INFERENCE_NUM_THREADS") == 1 and engine.inference_threads == 1
    assert narrow_model.get_property("LOADED_FROM_CACHE"), "the thread count is no part of the cache key"
    assert [i.box for i in narrow.instances] == [i.box for i in wide.instances]
    engine.follow_load(False)
    assert network.compiled(shape) is wide_model


def test_the_thread_counts_are_the_fewest_while_frames_queue_and_the_most_otherwise(private_cache):
    network = OpenVinoNetwork(private_cache, "f32", (4, 1, 2, 2), cache_dir())
    assert network.thread_counts == (1, 2, 4) and network.inference_threads == 4
    network.follow_load(True)
    assert network.inference_threads == 1
    network.follow_load(False)
    assert network.inference_threads == 4


@pytest.fixture
def networks_made(monkeypatch) -> list[str]:
    """The precision of each OpenVINO network made from now on, in order."""
    made: list[str] = []

    class Noting(OpenVinoNetwork):
        def __init__(self, onnx_path, precision, *args) -> None:
            made.append(precision)
            super().__init__(onnx_path, precision, *args)

    monkeypatch.setattr(openvino_runtime, "OpenVinoNetwork", Noting)
    return made


def test_a_forward_pass_is_timed_in_milliseconds_at_the_precision_asked(private_cache, networks_made):
    """What precision 'auto' compares (a yolo11n forward at 640 x 640 takes tens of ms here)."""
    assert 1.0 < forward_ms(private_cache, "f32", (0,), cache_dir(), runs=2) < 5000.0
    assert networks_made == ["f32"]


def test_auto_times_each_precision_it_may_take_and_compiles_the_one_it_took(private_cache, weights, networks_made):
    import openvino as ov

    loaded = load_model(weights, "cpu", runtime="openvino", precision="auto")
    timed = ["bf16", "f32"] if HAS_BF16 else []  # int8 is not calibrated in this cache
    assert sorted(networks_made[:-1]) == timed and networks_made[-1] == loaded.precision
    hint = loaded.backend.compiled(PROBE_SHAPE).get_property("INFERENCE_PRECISION_HINT")
    assert hint == {"bf16": ov.Type.bf16, "f32": ov.Type.f32}[loaded.precision]
    for asked, expected in [("f32", ov.Type.f32), *([("bf16", ov.Type.bf16)] if HAS_BF16 else [])]:
        compiled = load_model(weights, "cpu", runtime="openvino", precision=asked).backend.compiled(PROBE_SHAPE)
        assert compiled.get_property("INFERENCE_PRECISION_HINT") == expected
        # One stream of requests, its threads free to move to cores the node's callbacks leave idle.
        assert (int(compiled.get_property("NUM_STREAMS")), compiled.get_property("ENABLE_CPU_PINNING")) == (1, False)


def test_compiled_models_are_where_the_docs_say_and_a_cache_that_cannot_hold_them_costs_only_time(
    private_cache, weights, bus, f32_engine
):
    """docs/RUNTIMES.md: <cache>/openvino/<export>-<key>/compiled/, the key 16 hex digits."""
    folder = load_model(weights, "cpu", runtime="openvino", precision="f32").backend.folder
    assert folder.parent == private_cache.parent / "openvino" and (folder / COMPILED).is_dir()
    assert (folder / METADATA).is_file(), "kept at the first load, in folders made for it"
    assert re.fullmatch(rf"{re.escape(private_cache.stem)}-[0-9a-f]{{16}}", folder.name)
    shutil.rmtree(folder.parent)
    folder.parent.write_text("a file where the folder would be")
    blocked = load_model(weights, "cpu", runtime="openvino", precision="f32")
    expected = [i.box for i in f32_engine.segment(bus).instances]
    assert [i.box for i in SegmentationEngine(blocked).segment(bus).instances] == expected


def test_a_corrupt_compiled_model_is_compiled_again(private_cache, weights, bus, f32_engine):
    first = load_model(weights, "cpu", runtime="openvino", precision="f32")
    entries = list((first.backend.folder / COMPILED).iterdir())
    assert entries
    for entry in entries:
        entry.write_bytes(b"not a compiled model" * 50)
    again = load_model(weights, "cpu", runtime="openvino", precision="f32")
    assert not again.backend.compiled((1, 3, 640, 640)).get_property("LOADED_FROM_CACHE")
    expected = [i.box for i in f32_engine.segment(bus).instances]
    assert [i.box for i in SegmentationEngine(again).segment(bus).instances] == expected
    healed = load_model(weights, "cpu", runtime="openvino", precision="f32")
    assert healed.backend.compiled((1, 3, 640, 640)).get_property("LOADED_FROM_CACHE"), "the entry was rewritten"


def test_a_released_network_refuses_to_run(private_cache, bus):
    engine = SegmentationEngine(load_model(str(private_cache), "cpu", runtime="openvino", precision="f32"))
    engine.segment(bus)
    engine.release()
    assert engine.loaded.backend.compiled_shapes == [], "the compiled models are let go"
    with pytest.raises(RuntimeError, match=r"^the network was released$"):
        engine.segment(bus)


def test_an_installed_openvino_without_its_exporter_says_so(monkeypatch, weights):
    for name in ("onnx", "onnxslim"):
        monkeypatch.setitem(sys.modules, name, None)  # the exporter's packages cannot be found
    loaded = load_model(weights, "cpu", runtime="auto")
    assert loaded.runtime == "torch"
    assert dict(loaded.choice_record.passed_over)["openvino"] == (
        "openvino is installed but its exporter needs onnx, onnxslim: pip install them"
    )
    assert "openvino is installed but its exporter needs onnx, onnxslim" in loaded.choice
    assert "onnxruntime is installed but its exporter needs onnx, onnxslim" in loaded.choice
    with pytest.raises(ModelLoadError, match="openvino is installed but its exporter needs onnx, onnxslim"):
        load_model(weights, "cpu", runtime="openvino")
