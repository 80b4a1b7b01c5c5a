"""Text prompts: the offline class-name backend with the real MiniLM embedder, and
the CLIP backend's mechanics with a small randomly initialised open_clip model (no CLIP
weights can be installed offline, so its rankings carry no meaning here)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from fastsam_ros.core.mask_set import Instance, MaskSet
from fastsam_ros.core.sentence_encoder import OnnxSentenceEncoder, TorchSentenceEncoder
from fastsam_ros.core.text_prompts import (
    LOADER_THREAD,
    MIN_CROP_AREA,
    ClassNameBackend,
    ClipBackend,
    TextBackends,
    TextEmbeddingCache,
    TextPromptError,
)

TINY_CLIP = str(Path(__file__).parents[1] / "data" / "tiny-clip.json")


@pytest.fixture(scope="module")
def class_backend(loaded_model):
    return ClassNameBackend(loaded_model.class_names)


@pytest.fixture(scope="module")
def clip_backend():
    torch.manual_seed(0)
    return ClipBackend(TINY_CLIP, "", torch.device("cpu"))


@pytest.mark.parametrize("text", ["bus", "a photo of a bus", "the bus"])
def test_bus_texts_select_the_bus(class_backend, bus_masks, bus, text):
    [match] = class_backend.rank(bus_masks, bus, [text], top_k=1)
    assert bus_masks[match.instance_index].class_name == "bus"
    assert 0.5 < match.score <= 1.0001


def test_people_returns_people_best_score_first(class_backend, bus_masks, bus):
    matches = class_backend.rank(bus_masks, bus, ["people"], top_k=3)
    assert [bus_masks[m.instance_index].class_name for m in matches] == ["person"] * 3
    scores = [bus_masks[m.instance_index].score for m in matches]
    assert scores == sorted(scores, reverse=True)


def test_several_texts_are_answered_in_order(class_backend, bus_masks, bus):
    matches = class_backend.rank(bus_masks, bus, ["stop sign", "bus"], top_k=1)
    assert [m.text_index for m in matches] == [0, 1]
    assert [bus_masks[m.instance_index].class_name for m in matches] == ["stop sign", "bus"]


def test_a_frame_of_one_instance_is_ranked_and_one_of_none_gives_no_match(class_backend, bus_masks, bus):
    import dataclasses

    [bus_index] = [i for i, instance in enumerate(bus_masks.instances) if instance.class_name == "bus"]
    alone = dataclasses.replace(bus_masks, instances=(bus_masks[bus_index],))
    [match] = class_backend.rank(alone, bus, ["bus"], top_k=1)
    assert (match.text_index, match.instance_index) == (0, 0)
    assert class_backend.rank(dataclasses.replace(bus_masks, instances=()), bus, ["bus"], top_k=1) == []


def test_the_class_backend_encodes_through_onnx_runtime_unless_told_otherwise(class_backend):
    """ONNX Runtime is installed here: the default, as the node's onnxruntime and openvino runtimes ask."""
    assert isinstance(class_backend._encoder, OnnxSentenceEncoder)


def test_class_backend_needs_classes(class_backend):
    with pytest.raises(TextPromptError) as error:
        ClassNameBackend({0: "object"}, encoder=object())
    assert str(error.value) == "the class_names backend needs a model with class names; this one is class-agnostic"
    two = ClassNameBackend({0: "bus", 1: "stop sign"}, encoder=class_backend._encoder)
    similarity = two.text_cache.vectors(["a red bus", "a stop sign"]) @ two._class_vectors.T
    assert similarity.argmax(axis=1).tolist() == [0, 1], "two classes are enough"


def test_auto_is_class_names_for_a_model_with_classes_and_clip_for_a_class_agnostic_one():
    logged: list[str] = []
    values = {"text_backend": "auto", "runtime": "onnxruntime", "clip_model": TINY_CLIP, "clip_pretrained": ""}
    with_classes = TextBackends({0: "bus", 1: "person"}, values, torch.device("cpu"), logged.append)
    agnostic = TextBackends({0: "object"}, values, torch.device("cpu"), logged.append)
    named = TextBackends({0: "bus", 1: "person"}, {**values, "text_backend": "clip"}, torch.device("cpu"))
    for backends in (with_classes, agnostic, named):
        backends.wait_loaded()
    assert (with_classes.default, agnostic.default, named.default) == ("class_names", "clip", "clip")
    assert isinstance(agnostic.get("clip"), ClipBackend) and with_classes._loader.name == LOADER_THREAD
    assert sorted(line.split(" (")[0] for line in logged) == ["text prompts ready"] * 2


def test_a_default_backend_that_cannot_load_is_logged_once_with_its_reason():
    logged: list[str] = []
    values = {"text_backend": "clip", "runtime": "onnxruntime", "clip_model": "no-such-architecture"}
    backends = TextBackends({0: "object"}, {**values, "clip_pretrained": ""}, torch.device("cpu"), logged.append)
    backends.wait_loaded()
    [line] = logged
    reason = (
        "text prompts unavailable with the clip backend: could not load CLIP 'no-such-architecture' (random init): "
    )
    assert line.startswith(reason)
    with pytest.raises(TextPromptError, match="no-such-architecture"):
        backends.get("clip")


def test_a_new_clip_backend_has_encoded_no_crops():
    assert ClipBackend(TINY_CLIP, "", torch.device("cpu")).crop_encodings == 0


@pytest.mark.parametrize(
    ("texts", "top_k", "reason"),
    [
        ([], 1, "^no texts given$"),
        (["bus", "  "], 1, "^texts must not be empty$"),
        (["bus"], 0, "^top_k must be at least 1, got 0$"),
    ],
)
def test_bad_text_prompts(class_backend, bus_masks, bus, texts, top_k, reason):
    with pytest.raises(TextPromptError, match=reason):
        class_backend.rank(bus_masks, bus, texts, top_k)


def test_clip_ranks_all_large_crops_and_caches_them(clip_backend, bus_masks, bus):
    before = clip_backend.crop_encodings
    matches = clip_backend.rank(bus_masks, bus, ["a bus"], top_k=len(bus_masks))
    kept, vectors = clip_backend.crop_embeddings(bus_masks, bus)
    assert clip_backend.crop_encodings == before + 1, "the second call must reuse the crop embeddings"
    assert sorted(m.instance_index for m in matches) == sorted(kept)
    assert kept == [i for i, inst in enumerate(bus_masks.instances) if inst.area > 100]
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(len(kept)), atol=1e-5)
    scores = [m.score for m in matches]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 for s in scores)


def test_clip_scores_equal_cosine_similarity(clip_backend, bus_masks, bus):
    [match] = clip_backend.rank(bus_masks, bus, ["a person"], top_k=1)
    kept, vectors = clip_backend.crop_embeddings(bus_masks, bus)
    with torch.inference_mode():
        text = clip_backend.model.encode_text(clip_backend.tokenizer(["a person"]))
    similarity = (torch.nn.functional.normalize(text, dim=-1) @ vectors.T)[0]
    assert match.instance_index == kept[int(similarity.argmax())]
    assert np.isclose(match.score, float(similarity.max()), atol=1e-5)


def test_clip_new_mask_set_is_encoded_again(clip_backend, bus_masks, bus):
    clip_backend.rank(bus_masks, bus, ["x"], 1)
    before = clip_backend.crop_encodings
    copy = MaskSet(bus_masks.height, bus_masks.width, bus_masks.instances)
    clip_backend.rank(copy, bus, ["x"], 1)
    assert clip_backend.crop_encodings == before + 1


def test_clip_texts_encoded_together_are_each_of_unit_length(clip_backend):
    vectors = clip_backend.text_cache.vectors(["a tram in the rain", "two dogs", "a red door"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_clip_unknown_model_and_offline_weights_fail_clearly():
    with pytest.raises(TextPromptError, match=r"^could not load CLIP 'no-such-architecture' \(random init\): "):
        ClipBackend("no-such-architecture", "", torch.device("cpu"))
    with pytest.raises(TextPromptError, match=r"^could not load CLIP 'tiny-clip' \(no-such-weights\): "):
        ClipBackend(TINY_CLIP, "no-such-weights", torch.device("cpu"))
    with pytest.raises(TextPromptError, match="not found"):
        ClipBackend("/nowhere/config.json", "", torch.device("cpu"))


def test_repeated_texts_are_encoded_once(class_backend, bus_masks, bus):
    first = class_backend.rank(bus_masks, bus, ["a red double-decker"], top_k=2)
    encoded = class_backend.text_cache.encoded
    again = class_backend.rank(bus_masks, bus, ["a red double-decker", "a red double-decker"], top_k=2)
    assert class_backend.text_cache.encoded == encoded, "no second encoding"
    assert [(m.text_index, m.instance_index) for m in again] == [(t, m.instance_index) for t in (0, 1) for m in first]
    assert np.allclose([m.score for m in again], [m.score for m in first] * 2, atol=1e-6)


def test_text_cache_drops_the_least_recently_used():
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.array([[len(text), 1.0] for text in texts], np.float32)

    cache = TextEmbeddingCache(encode, size=2)
    assert cache.vectors(["a", "bb", "a"]).tolist() == [[1, 1], [2, 1], [1, 1]]
    cache.vectors(["a"])
    cache.vectors(["ccc"])
    cache.vectors(["a", "ccc"])
    assert calls == [["a", "bb"], ["ccc"]], "'bb' was evicted, 'a' and 'ccc' stayed"
    cache.vectors(["bb"])
    assert calls[-1] == ["bb"]


def test_clip_text_vectors_are_cached(clip_backend, bus_masks, bus):
    clip_backend.rank(bus_masks, bus, ["a bus"], top_k=1)
    encoded = clip_backend.text_cache.encoded
    clip_backend.rank(bus_masks, bus, ["a bus"], top_k=1)
    assert clip_backend.text_cache.encoded == encoded


def test_clip_sees_each_masked_crop_in_rgb(clip_backend, bus_masks, bus):
    """open_clip's transforms expect RGB PIL images; the frame is BGR."""
    seen = []
    preprocess = clip_backend.preprocess

    def capture(image):
        seen.append(np.asarray(image).copy())
        return preprocess(image)

    clip_backend.preprocess = capture
    try:
        clip_backend.crop_embeddings(MaskSet(bus_masks.height, bus_masks.width, bus_masks.instances), bus)
    finally:
        clip_backend.preprocess = preprocess
    large = [instance for instance in bus_masks.instances if instance.area > 100]
    assert len(seen) == len(large)
    for crop, instance in zip(seen, large, strict=True):
        ox, oy = instance.mask_offset
        rows, cols = instance.mask.shape
        rgb = bus[oy : oy + rows, ox : ox + cols, ::-1] * instance.mask[:, :, None]
        assert crop.shape == (rows, cols, 3)
        assert np.array_equal(crop, rgb), "red and blue must not be swapped; outside the mask is black"


def test_text_backends_hand_each_backend_the_runtime_and_clip_settings_and_say_when_ready():
    """The sentence encoder follows the node's runtime (PyTorch for `torch`, ONNX Runtime otherwise)."""
    logged: list[str] = []
    values = {"text_backend": "class_names", "clip_model": TINY_CLIP, "clip_pretrained": "no-such-weights"}
    on_torch = TextBackends({0: "bus", 1: "person"}, {**values, "runtime": "torch"}, torch.device("cpu"), logged.append)
    on_openvino = TextBackends({0: "bus", 1: "person"}, {**values, "runtime": "openvino"}, torch.device("cpu"))
    on_torch.wait_loaded()
    on_openvino.wait_loaded()
    assert isinstance(on_torch.get("class_names")._encoder, TorchSentenceEncoder)
    assert isinstance(on_openvino.get("class_names")._encoder, OnnxSentenceEncoder)
    with pytest.raises(TextPromptError, match=r"^could not load CLIP 'tiny-clip' \(no-such-weights\): "):
        on_torch.get("clip")
    with pytest.raises(TextPromptError) as unknown:
        on_torch.get("words")
    assert str(unknown.value) == "unknown text backend 'words' (known: clip, class_names)"
    [ready] = logged
    seconds = re.fullmatch(r"text prompts ready \(class_names backend, loaded in (\d+\.\d) s\)", ready)
    assert seconds and float(seconds[1]) < 300.0


def test_the_text_cache_counts_what_it_encodes_keeps_float32_and_holds_256_texts():
    def encode(texts: list[str]) -> np.ndarray:
        return np.array([[len(text), 0.5] for text in texts], np.float64)

    cache = TextEmbeddingCache(encode)
    assert cache.vectors(["a", "bb"]).dtype == np.float32 and cache.encoded == 2
    cache.vectors(["bb", "ccc"])
    assert cache.encoded == 3 and cache.vectors(["ccc"]).dtype == np.float32
    fresh = TextEmbeddingCache(encode)
    fresh.vectors([f"text {i}" for i in range(256)])
    fresh.vectors(["text 0"])
    fresh.vectors(["one more"])
    assert fresh.encoded == 257, "256 held, the 257th new"
    fresh.vectors(["text 1"])
    assert fresh.encoded == 258, "the least recently used made room"


def test_clip_encodes_the_crops_over_the_minimum_area_wherever_they_lie_and_answers_every_text(clip_backend, bus):
    side = 12
    exactly = np.zeros((side, side), bool)
    exactly.flat[:MIN_CROP_AREA] = True
    over = exactly.copy()
    over.flat[MIN_CROP_AREA] = True
    instances = tuple(
        Instance((float(x), 0.0, float(x + side), float(side)), 0.9, 0, "thing", (x, 0), mask)
        for x, mask in ((0, exactly), (20, over), (40, exactly), (60, over))
    )
    masks = MaskSet(side, 80, instances)
    image = np.ascontiguousarray(bus[:side, :80])
    kept, vectors = clip_backend.crop_embeddings(masks, image)
    assert kept == [1, 3] and vectors.shape[0] == 2
    matches = clip_backend.rank(masks, image, ["a bus", "a wheel"], top_k=2)
    answered = {text: sorted(m.instance_index for m in matches if m.text_index == text) for text in (0, 1)}
    assert [m.text_index for m in matches] == [0, 0, 1, 1] and answered == {0: [1, 3], 1: [1, 3]}
    none, empty = clip_backend.crop_embeddings(MaskSet(side, 80, instances[:1]), image)
    assert none == [] and empty.shape[0] == 0
