"""Rewrites of an OpenVINO model before it is compiled, around limits of OpenVINO's own.

The runtime reads every network through these at each precision. NNCF's int8 calibration
compiles the network as well (to collect statistics), so it needs the same rewrite.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def gathers_instead_of_slices(model: Any) -> Any:
    """The OpenVINO model with each constant one-axis Slice that feeds a GatherElements made a Gather of the
    same elements (OPENVINO_SLICE_BEFORE_GATHER_ELEMENTS in fastsam_ros/core/compat.py).

    YOLO26's NMS-free head gathers its top-k boxes out of a slice of its outputs; OpenVINO's CPU
    compiler drops a slice from 0 before a GatherElements and then refuses the shapes left.
    """
    from openvino import opset8, passes

    if not any(node.get_type_name() == "GatherElements" for node in model.get_ordered_ops()):
        return model  # nothing to rewrite (YOLO11, YOLOv8, FastSAM)
    folding = passes.Manager()
    folding.register_pass(passes.ConstantFolding())  # the exporter computes some slice steps
    folding.run_passes(model)
    for node in model.get_ordered_ops():
        sliced = node.input_value(0).get_node() if node.get_type_name() == "GatherElements" else None
        if sliced is None or sliced.get_type_name() != "Slice":
            continue
        bounds = [sliced.input_value(index).get_node() for index in range(1, sliced.get_input_size())]
        if any(bound.get_type_name() != "Constant" for bound in bounds):
            continue
        start, stop, step, *axes = (list(bound.get_vector()) for bound in bounds)
        source = sliced.input_value(0)
        shape = source.get_partial_shape()
        axis = (axes[0] if axes else [0])[0] % shape.rank.get_length()
        if len(start) != 1 or shape[axis].is_dynamic:
            continue
        kept = np.arange(*slice(start[0], stop[0], step[0]).indices(shape[axis].get_length()), dtype=np.int64)
        whole = opset8.gather(source, opset8.constant(kept), opset8.constant(np.int64(axis)))
        node.input(0).replace_source_output(whole.output(0))
    model.validate_nodes_and_infer_types()
    return model
