"""Test helper: small ONNX graphs built by hand, node by node, for the graph rules' tests.

A hand-built graph breaks exactly what a test means it to break, which an exported one cannot promise.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["VIDEO_SHAPE", "hand_model", "qdq_model"]

VIDEO_SHAPE = ["batch", 3, 16, 32, 32]


def hand_model(nodes, inputs=None, outputs=None, initializers=(), opset=17, ir_version=10) -> onnx.ModelProto:
    """A hand-built graph; default input/output follow the rules (video [batch,3,16,32,32] -> embedding)."""
    inputs = inputs or [helper.make_tensor_value_info("video", TensorProto.FLOAT, VIDEO_SHAPE)]
    outputs = outputs or [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 3])]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    # onnx 1.23 defaults to IR 14, which onnxruntime 1.31 refuses: set it explicitly
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir_version)


def qdq_model(*, zero_point=0, zp_type=TensorProto.INT8, weight_dq=True, scale_from_node=False,
              extra_nodes=()) -> onnx.ModelProto:
    """video -> Q -> DQ -> Conv (weights: DQ of an int8 initializer) -> ReduceMean -> embedding, by hand."""
    inits = [
        numpy_helper.from_array(np.array(1 / 127, np.float32), "x_scale"),
        helper.make_tensor("x_zp", zp_type, [], [zero_point]),
        numpy_helper.from_array(np.ones((4, 3, 1, 1, 1), np.int8), "w_q"),
        numpy_helper.from_array(np.full(4, 0.01, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(4, np.int8), "w_zp"),
        numpy_helper.from_array(np.ones((4, 3, 1, 1, 1), np.float32), "w_float"),
        numpy_helper.from_array(np.array([2, 3, 4], np.int64), "axes"),
    ]
    nodes = [helper.make_node("QuantizeLinear", ["video", "x_scale", "x_zp"], ["x_q"], name="q_video"),
             helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zp"], ["x_dq"], name="dq_video"),
             helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w_dq"], name="dq_weight", axis=0),
             helper.make_node("Conv", ["x_dq", "w_dq" if weight_dq else "w_float"], ["conv"], name="conv"),
             helper.make_node("ReduceMean", ["conv", "axes"], ["embedding"], keepdims=0, name="pool"),
             *extra_nodes]
    if scale_from_node:  # the activation scale computed in the graph instead of stored
        inits[0].name = "x_scale_raw"
        nodes.insert(0, helper.make_node("Identity", ["x_scale_raw"], ["x_scale"], name="scale_copy"))
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("video", TensorProto.FLOAT, VIDEO_SHAPE)],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 4])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)], ir_version=10)
