"""The node's typed settings: built from the parameter set, each parameter reaching the part that uses it."""

from __future__ import annotations

from typing import Any

import pytest

from fastsam_ros.core import parameters
from fastsam_ros.core.engine import EngineSettings
from fastsam_ros.core.health import HealthLimits
from fastsam_ros.core.obstacles import ObstacleSettings
from fastsam_ros.core.prompts import PromptLimits
from fastsam_ros.core.settings import node_settings

READ_BY_THE_TEXT_BACKENDS = {"text_backend", "clip_model", "clip_pretrained"}
"""Left out of the settings: the text backends take them from the parameter set."""


def _another_valid_value(spec: parameters.ParameterSpec) -> Any:
    if spec.choices:
        return next(choice for choice in spec.choices if choice != spec.default)
    if isinstance(spec.default, bool):
        return not spec.default
    if isinstance(spec.default, int | float):
        return type(spec.default)(spec.high if spec.default != spec.high else spec.low)
    special = {"device": "cpu", "cameras": ["front", "rear"], "obstacle_roi": [0.0, 0.0, 1.0, 0.0, 1.0, 1.0]}
    return special.get(spec.name, f"{spec.default}other")


def test_the_default_parameters_give_each_part_its_own_defaults():
    settings = node_settings(dict(parameters.DEFAULTS))
    assert settings.engine == EngineSettings()
    assert settings.obstacles == ObstacleSettings()
    assert settings.camera.prompt_limits == PromptLimits()
    assert settings.health == HealthLimits()
    assert settings.autostart and settings.cameras == ("",)
    assert not settings.compressed_input and not settings.reliable_images, "raw images, best effort"


def test_compressed_input_and_reliable_images_are_what_their_parameters_name():
    chosen = node_settings({**parameters.DEFAULTS, "input": "compressed", "image_qos": "reliable"})
    assert chosen.compressed_input and chosen.reliable_images


@pytest.mark.parametrize("spec", parameters.PARAMETERS, ids=lambda spec: spec.name)
def test_every_parameter_reaches_the_settings(spec):
    value = _another_valid_value(spec)
    assert parameters.validate({spec.name: value}) == []
    changed = node_settings({**parameters.DEFAULTS, spec.name: value})
    if spec.name in READ_BY_THE_TEXT_BACKENDS:
        assert changed == node_settings(dict(parameters.DEFAULTS))
    else:
        assert changed != node_settings(dict(parameters.DEFAULTS))
