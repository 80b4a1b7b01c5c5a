"""ultralytics' FastSAM prompt, the reference the node's point and box prompts are checked against."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fastsam_ros.core.mask_set import MaskSet


def fastsam_prompt_oracle(masks: MaskSet, image: np.ndarray) -> Callable[..., list[int]]:
    """FastSAMPredictor.prompt over a Results holding exactly these masks: the sorted indices it selects.

    Its selection is told apart by whole rows (box, score, class): a network with an NMS-free head
    (YOLO26) may give one box twice, with two classes.
    """
    from ultralytics.engine.results import Results
    from ultralytics.models.fastsam import FastSAMPredictor

    predictor = FastSAMPredictor(overrides={"device": "cpu", "verbose": False})
    predictor.device = torch.device("cpu")
    rows = torch.tensor([[*i.box, i.score, i.class_id] for i in masks.instances], dtype=torch.float32)
    planes = torch.from_numpy(masks.full_masks()).to(torch.uint8)
    result = Results(image, path="frame.jpg", names=masks.class_names, boxes=rows, masks=planes)

    def select(**prompt) -> list[int]:
        chosen = predictor.prompt(result, **prompt)[0]
        if len(chosen) == 0:
            return []
        return sorted(int(torch.nonzero((rows == row).all(1))[0]) for row in chosen.boxes.data)

    return select
