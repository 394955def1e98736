"""The contract between the graphs served remotely and their clients, defined once.

- ``PIXELS_INPUT``: the uint8 NHWC input of the serving image graph (:func:`uint8_image_graph`:
  the manifest's normalisation moved into the graph, so clients send a quarter of float32's bytes);
- the parameters a Triton model config carries so the client can check what it talks to.

Used by ``serving.triton_repo`` (writes repositories), ``encoders.triton`` (checks them) and
``models.tensorrt`` (builds engines from the same graph).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moderator.errors import ModelError
from moderator.models.manifest import IMAGE_INPUT, Manifest

PIXELS_INPUT = "pixels"
CHECKSUM_PARAMETER = "moderator_model_checksum"
NAME_PARAMETER = "moderator_model_name"
PRECISION_PARAMETER = "moderator_precision"


def require_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ModelError("writing a Triton repository needs the 'onnx' package: pip install 'moderator[export]'") from exc
    return onnx


def uint8_image_graph(manifest: Manifest, image_graph: Path):
    """The image encoder with uint8 NHWC input and the manifest's normalisation in the graph."""
    onnx = require_onnx()
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(image_graph))
    graph = model.graph
    old = next((i for i in graph.input if i.name == IMAGE_INPUT), None)
    if old is None:
        raise ModelError(f"{image_graph}: no input named {IMAGE_INPUT!r}")
    pre = manifest.preprocess
    size = pre.image_size
    std = np.asarray(pre.std, np.float32)
    scale = (1.0 / (255.0 * std)).astype(np.float32)  # the same constants as media.preprocess.normalize
    offset = (-np.asarray(pre.mean, np.float32) / std).astype(np.float32)
    graph.input.remove(old)
    graph.input.insert(0, helper.make_tensor_value_info(PIXELS_INPUT, TensorProto.UINT8, ["batch", size, size, 3]))
    graph.initializer.extend(
        [
            numpy_helper.from_array(scale, "moderator_pixel_scale"),
            numpy_helper.from_array(offset, "moderator_pixel_offset"),
        ]
    )
    nodes = [
        helper.make_node("Cast", [PIXELS_INPUT], ["moderator_pixels_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["moderator_pixels_f", "moderator_pixel_scale"], ["moderator_pixels_scaled"]),
        helper.make_node("Add", ["moderator_pixels_scaled", "moderator_pixel_offset"], ["moderator_pixels_nhwc"]),
        helper.make_node("Transpose", ["moderator_pixels_nhwc"], [IMAGE_INPUT], perm=[0, 3, 1, 2]),
    ]
    for node in reversed(nodes):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    return model
