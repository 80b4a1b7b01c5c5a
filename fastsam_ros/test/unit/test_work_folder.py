"""Export work folders: named after their process, removed with it or by the next export once it has ended."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from fastsam_ros.core.backends.work_folder import PREFIX, remove_abandoned, work_folder
from test_support.ended_process import ended_pid


def test_only_folders_of_ended_processes_are_removed(tmp_path):
    ended = tmp_path / f"{PREFIX}{ended_pid()}-abc"
    running = tmp_path / f"{PREFIX}{os.getpid()}-abc"
    parent_of_all = tmp_path / f"{PREFIX}1-abc"  # init runs, though not this user's process at times
    unrelated = [tmp_path / "yolo11n-seg-0123.onnx", tmp_path / f"{PREFIX}notapid-abc", tmp_path / "export-7-abc"]
    for folder in (ended, running, parent_of_all, *unrelated):
        folder.mkdir()
    (ended / "half.onnx").write_bytes(b"\0" * 1000)
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere"
    elsewhere.mkdir()
    (elsewhere / "kept").write_text("x")
    link = tmp_path / f"{PREFIX}{ended_pid()}-link"  # named like an abandoned folder, pointing out of the cache
    link.symlink_to(elsewhere)
    remove_abandoned(tmp_path)
    assert sorted(tmp_path.iterdir()) == sorted([running, parent_of_all, *unrelated, link])
    assert (elsewhere / "kept").is_file(), "nothing outside the cache is removed"


def test_a_work_folder_is_this_process_s_and_gone_after_the_block(tmp_path):
    cache = tmp_path / "deep" / "cache"
    with work_folder(cache) as work:
        assert work.parent == cache and work.name.startswith(f"{PREFIX}{os.getpid()}-")
        (work / "file").write_text("x")
        abandoned = cache / f"{PREFIX}{ended_pid()}-xyz"
        abandoned.mkdir()
    assert list(cache.iterdir()) == [abandoned], "the block removes its own folder only"
    with work_folder(cache):
        assert not abandoned.exists(), "the next export removes what an ended process left"


def test_another_user_s_folders_stay_and_nothing_is_raised():
    """kill(pid, 0) is refused for another user's process (EPERM): that process runs all the same.
    Another user's folder of an ended process cannot be removed: it stays, and the export goes on."""
    with tempfile.TemporaryDirectory() as cache:  # in /tmp, which the user taken on below can reach
        os.chmod(cache, 0o777)  # so that a wrong verdict on the running process would remove its (empty) folder
        running, ended = Path(cache) / f"{PREFIX}1-abc", Path(cache) / f"{PREFIX}{ended_pid()}-abc"
        running.mkdir()
        ended.mkdir()
        (ended / "half.onnx").write_bytes(b"\0" * 1000)
        as_root = os.geteuid() == 0
        become_nobody = "os.setuid(65534); " if as_root else ""  # to root, every process and file is its own
        code = (
            "import os, sys, pathlib; from fastsam_ros.core.backends.work_folder import remove_abandoned; "
            f"{become_nobody}remove_abandoned(pathlib.Path(sys.argv[1]))"
        )
        subprocess.run([sys.executable, "-c", code, cache], check=True)
        assert running.is_dir() and ended.is_dir() == as_root
