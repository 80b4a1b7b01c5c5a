"""FastSAM's text prompt: ranking a frame's instances against texts.

Two backends share one interface. ClipBackend is FastSAM's method: embed each
instance's masked crop and the text with CLIP and rank by cosine similarity; crop
embeddings are computed once per mask set, so repeated queries on one frame only
encode text. ClassNameBackend works offline for models with class names: it embeds
texts and class names with a sentence embedder and ranks instances by how well their
class matches, then by detection score. Both keep the vectors of recent texts.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from fastsam_ros.core.mask_set import MaskSet
from fastsam_ros.core.sentence_encoder import SentenceEncoder, SentenceEncoderError, load_sentence_encoder

TEXT_BACKENDS = ("clip", "class_names")
LOADER_THREAD = "text_backend_load"
"""Name of the thread loading the default backend: a process that ends while it runs must end
without finalizing the interpreter (fastsam_ros.ros.process)."""

MIN_CROP_AREA = 100
"""FastSAM skips masks of 100 pixels or fewer for CLIP: their crops carry no signal."""


class TextPromptError(ValueError):
    """A text prompt that cannot be answered; the message says why."""


@dataclass(frozen=True)
class TextMatch:
    text_index: int
    instance_index: int
    score: float


class TextBackend(Protocol):
    name: str

    def rank(self, masks: MaskSet, image: np.ndarray, texts: list[str], top_k: int) -> list[TextMatch]: ...


def check_texts(texts: list[str], top_k: int) -> None:
    if not texts:
        raise TextPromptError("no texts given")
    for text in texts:
        if not text.strip():
            raise TextPromptError("texts must not be empty")
    if top_k < 1:
        raise TextPromptError(f"top_k must be at least 1, got {top_k}")


class TextEmbeddingCache:
    """Normalised text vectors by text, least recently used out first.

    Planners send the same prompts cycle after cycle ("person", "door"); the text
    encoder is most of a text prompt's cost, so a repeated text costs a lookup.
    """

    def __init__(self, encode: Callable[[list[str]], np.ndarray], size: int = 256) -> None:
        self._encode = encode
        self._size = size
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.encoded = 0
        """Texts run through the encoder so far (misses)."""

    def vectors(self, texts: list[str]) -> np.ndarray:
        """(len(texts), dim) float32, one row per text in order."""
        with self._lock:
            missing = [text for text in dict.fromkeys(texts) if text not in self._vectors]
            if missing:
                for text, vector in zip(missing, self._encode(missing), strict=True):
                    self._vectors[text] = np.asarray(vector, dtype=np.float32)
                self.encoded += len(missing)
            for text in texts:
                self._vectors.move_to_end(text)
            rows = np.stack([self._vectors[text] for text in texts])
            while len(self._vectors) > self._size:
                self._vectors.popitem(last=False)
            return rows


class ClassNameBackend:
    """Offline text prompts through class names and the bundled MiniLM sentence encoder."""

    name = "class_names"

    def __init__(
        self, class_names: dict[int, str], encoder: SentenceEncoder | None = None, prefer_onnx: bool = True
    ) -> None:
        if len(class_names) < 2:
            raise TextPromptError("the class_names backend needs a model with class names; this one is class-agnostic")
        try:
            self._encoder = encoder or load_sentence_encoder(prefer_onnx)
        except SentenceEncoderError as error:
            raise TextPromptError(str(error)) from error
        self._class_ids = sorted(class_names)
        self._class_vectors = self._encode([class_names[i] for i in self._class_ids])
        self.text_cache = TextEmbeddingCache(self._encode)

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._encoder.encode(texts)

    def rank(self, masks: MaskSet, image: np.ndarray, texts: list[str], top_k: int) -> list[TextMatch]:
        check_texts(texts, top_k)
        if len(masks) == 0:
            return []
        similarity = self.text_cache.vectors(texts) @ self._class_vectors.T
        column = {class_id: i for i, class_id in enumerate(self._class_ids)}
        matches = []
        for text_index, row in enumerate(similarity):
            scored = [
                (float(row[column[inst.class_id]]), inst.score, index)
                for index, inst in enumerate(masks.instances)
                if inst.class_id in column
            ]
            scored.sort(reverse=True)
            matches += [TextMatch(text_index, index, sim) for sim, _, index in scored[:top_k]]
        return matches


class ClipBackend:
    """FastSAM's CLIP ranking of masked crops, through open_clip."""

    name = "clip"

    def __init__(self, model_name: str, pretrained: str, device: torch.device) -> None:
        import open_clip

        if model_name.endswith(".json"):
            config = Path(model_name)
            if not config.is_file():
                raise TextPromptError(f"CLIP config '{model_name}' not found")
            open_clip.add_model_config(config)
            model_name = config.stem
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained or None, device=device
            )
        except Exception as error:  # open_clip raises several kinds for unknown names or failed downloads
            reason = f"could not load CLIP '{model_name}' ({pretrained or 'random init'}): {error}"
            raise TextPromptError(reason) from error
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.device = device
        self._lock = threading.Lock()
        self._cache_key: MaskSet | None = None
        self._cache: tuple[list[int], torch.Tensor] | None = None
        self.crop_encodings = 0
        self.text_cache = TextEmbeddingCache(self._encode_texts)

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        with self._lock, torch.inference_mode():
            vectors = self.model.encode_text(self.tokenizer(texts).to(self.device))
        return torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()

    def crop_embeddings(self, masks: MaskSet, image: np.ndarray) -> tuple[list[int], torch.Tensor]:
        """Normalised embeddings of the masked crops, computed once per mask set."""
        from PIL import Image as PilImage

        with self._lock:
            if self._cache_key is masks and self._cache is not None:
                return self._cache
            kept, batch = [], []
            for index, instance in enumerate(masks.instances):
                if instance.area <= MIN_CROP_AREA:
                    continue
                ox, oy = instance.mask_offset
                rows, cols = instance.mask.shape
                crop = image[oy : oy + rows, ox : ox + cols] * instance.mask[:, :, None]
                batch.append(self.preprocess(PilImage.fromarray(np.ascontiguousarray(crop[:, :, ::-1]))))
                kept.append(index)
            if batch:
                with torch.inference_mode():
                    vectors = self.model.encode_image(torch.stack(batch).to(self.device))
                vectors = torch.nn.functional.normalize(vectors.float(), dim=-1)
            else:
                vectors = torch.zeros((0, 1))
            self.crop_encodings += 1
            self._cache_key, self._cache = masks, (kept, vectors)
            return self._cache

    def rank(self, masks: MaskSet, image: np.ndarray, texts: list[str], top_k: int) -> list[TextMatch]:
        check_texts(texts, top_k)
        kept, crops = self.crop_embeddings(masks, image)
        if not kept:
            return []
        text_vectors = torch.from_numpy(self.text_cache.vectors(texts)).to(crops.device)
        similarity = (text_vectors @ crops.T).cpu().numpy()
        matches = []
        for text_index, row in enumerate(similarity):
            order = np.argsort(-row, kind="stable")[:top_k]
            matches += [TextMatch(text_index, kept[i], float(row[i])) for i in order]
        return matches


class TextBackends:
    """Text backends by name, loaded once; the default one is loaded in the background."""

    def __init__(
        self,
        class_names: dict[int, str],
        values: dict[str, Any],
        device: torch.device,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._class_names = class_names
        self._values = values
        self._device = device
        self._lock = threading.Lock()
        self._loaded: dict[str, TextBackend | TextPromptError] = {}
        self._log = log or (lambda message: None)
        self.default = values["text_backend"]
        if self.default == "auto":
            self.default = "class_names" if len(class_names) > 1 else "clip"
        self._loader = threading.Thread(target=self._load_default, name=LOADER_THREAD)
        self._loader.start()

    def _load_default(self) -> None:
        """Frames segmented meanwhile share the CPU with this load, so say when it is over."""
        started = time.perf_counter()
        try:
            self.get(self.default)
        except TextPromptError as error:
            self._log(f"text prompts unavailable with the {self.default} backend: {error}")
            return
        self._log(f"text prompts ready ({self.default} backend, loaded in {time.perf_counter() - started:.1f} s)")

    def wait_loaded(self, timeout: float | None = None) -> None:
        """Wait for the background load of the default backend (a caller that needs it at once)."""
        self._loader.join(timeout)

    def get(self, name: str) -> TextBackend:
        if name not in TEXT_BACKENDS:
            raise TextPromptError(f"unknown text backend '{name}' (known: {', '.join(TEXT_BACKENDS)})")
        with self._lock:
            if name not in self._loaded:
                try:
                    self._loaded[name] = self._load(name)
                except TextPromptError as error:
                    self._loaded[name] = error
            backend = self._loaded[name]
        if isinstance(backend, TextPromptError):
            raise backend
        return backend

    def _load(self, name: str) -> TextBackend:
        if name == "class_names":
            return ClassNameBackend(self._class_names, prefer_onnx=self._values["runtime"] != "torch")
        return ClipBackend(self._values["clip_model"], self._values["clip_pretrained"], self._device)
