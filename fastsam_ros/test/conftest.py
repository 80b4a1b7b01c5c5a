"""Fixtures every kind of test shares: the real model and real photos.

Nothing happens at import: the private ROS graph, the Fast DDS profile and the export
cache are set up by a session fixture, so that `pytest test/...` works from any shell,
with or without .venv/bin/activate sourced.
"""

from __future__ import annotations

import os
import pickle
import random
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from test_support.checkout import PACKAGE_FOLDER
from test_support.shared_memory import remove_abandoned_segments

# Property tests draw the same examples on every run (a failure in CI reproduces here, and
# a mutation run judges every mutant on the same inputs); no deadline on a shared CPU.
settings.register_profile("fastsam_ros", derandomize=True, deadline=None, database=None)
settings.load_profile("fastsam_ros")

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="session", autouse=True)
def test_environment() -> Iterator[None]:
    """A private ROS domain on this host, the large-frame DDS profile, and an export cache of this run."""
    from fastsam_ros.tools.node_client import isolated_ros_env

    saved = dict(os.environ)
    os.environ.pop("ROS_AUTOMATIC_DISCOVERY_RANGE", None)
    os.environ.update(isolated_ros_env(_domain_of_this_worker()))
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(PACKAGE_FOLDER / "config" / "fastdds_large_frames.xml"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("YOLO_OFFLINE", "1")
    # ONNX exports of the weights go to a cache of this run, shared with the node processes.
    cache = tempfile.mkdtemp(prefix="fastsam_ros_cache_")
    os.environ["FASTSAM_ROS_CACHE"] = cache
    yield
    os.environ.clear()
    os.environ.update(saved)
    shutil.rmtree(cache, ignore_errors=True)
    # Tests kill node processes on purpose; their shared-memory segments would outlive the run.
    remove_abandoned_segments()


def _domain_of_this_worker() -> int:
    """Workers of one parallel run (pytest-xdist) get consecutive domains from 1 to 50, never the
    same one; a run without workers (one test file, each mutant of a mutation run) one from 51 to
    101, so that it never shares a domain with a parallel run of the whole suite. (Domains above
    101 would put DDS ports in Linux's range of ephemeral ports.)"""
    run, worker = os.environ.get("PYTEST_XDIST_TESTRUNUID"), os.environ.get("PYTEST_XDIST_WORKER")
    if not run or not worker:
        return random.randint(51, 101)
    return (int(run[:8], 16) + int(worker.removeprefix("gw"))) % 50 + 1


@pytest.fixture(scope="session")
def loaded_model():
    from fastsam_ros.core.backends.model_loading import load_model

    return load_model("yolo11n-seg.pt", "cpu")


@pytest.fixture(scope="session")
def engine(loaded_model):
    from fastsam_ros.core.engine import SegmentationEngine

    return SegmentationEngine(loaded_model)


@pytest.fixture(scope="session")
def node_engine():
    """An engine on the runtime a node picks by default on this CPU, to compare its outputs with."""
    from fastsam_ros.core.backends.model_loading import load_model
    from fastsam_ros.core.engine import SegmentationEngine

    return SegmentationEngine(load_model("yolo11n-seg.pt", "cpu", runtime="auto"))


@pytest.fixture(scope="session")
def bus() -> np.ndarray:
    from fastsam_ros.tools.sample_frames import asset_image

    return asset_image("bus.jpg")


@pytest.fixture(scope="session")
def zidane() -> np.ndarray:
    from fastsam_ros.tools.sample_frames import asset_image

    return asset_image("zidane.jpg")


@pytest.fixture(scope="session")
def bus_masks(request, bus):
    """The bus photo segmented by the real model.

    Under mutation testing (mutmut names the mutant in MUTANT_UNDER_TEST) it is computed by the
    unmutated code in mutmut's first pass, kept beside the mutants and read back for each mutant,
    instead of loading and running the model in every one of them (the classes it holds are the
    mutated module's, so mask_set's mutants still act on it; the engine's, NMS's and mask
    decoding's mutants are judged by the tests that run them).
    """
    cache = _mutation_run_cache("bus_masks")
    first_pass = os.environ.get("MUTANT_UNDER_TEST") == "stats"
    if cache is not None and cache.exists() and not first_pass:
        return pickle.loads(cache.read_bytes())
    masks = request.getfixturevalue("engine").segment(bus, stamp_ns=1, frame_id="camera")
    if cache is not None and first_pass:  # never from a run under a mutant
        cache.write_bytes(pickle.dumps(masks))
    return masks


def _mutation_run_cache(name: str) -> Path | None:
    """A file of this mutation run, named after the package source it was computed from."""
    if not os.environ.get("MUTANT_UNDER_TEST"):
        return None
    import hashlib

    import fastsam_ros

    package = Path(fastsam_ros.__file__).parent
    digest = hashlib.sha256(b"".join(path.read_bytes() for path in sorted(package.rglob("*.py"))))
    folder = package.parent / "mutation_cache"
    folder.mkdir(exist_ok=True)
    return folder / f"{name}-{digest.hexdigest()[:16]}.pickle"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under a mutant, the test files that took least time in mutmut's first pass run first.

    mutmut stops a mutant at its first failing test, and hands the tests over in no set order:
    a mutant that a 0.1 s test kills would otherwise often wait for a minute of network runs.
    Each file's tests stay together and in their order, as in any other run: its module fixtures
    are set up once, and what one test leaves for the next is as it always is.
    """
    mutant = os.environ.get("MUTANT_UNDER_TEST")
    stats = PACKAGE_FOLDER / "mutmut-stats.json"
    if not mutant or mutant == "stats" or not stats.is_file():
        return
    import json

    seconds = json.loads(stats.read_text()).get("duration_by_test", {})
    per_file: dict[Path, float] = {}
    for item in items:
        per_file[item.path] = per_file.get(item.path, 0.0) + seconds.get(item.nodeid, 60.0)
    items.sort(key=lambda item: (per_file[item.path], str(item.path)))  # stable: a file keeps its order
