"""A small ONNX graph builder that names things the way PyTorch's exporter does.

Node outputs are called "/<module>/<Op>_output_0" (the module path first), weights keep their
PyTorch parameter names where DeepFilterNet's export keeps them: `dfnet4.convert` finds weights
by exactly these conventions, so a bundle written here loads back like the official one.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

# what the official DeepFilterNet3 export uses and libDF's tract runtime reads
OPSET = 12
IR_VERSION = 7


class GraphBuilder:
    def __init__(self, name: str):
        from onnx import helper, numpy_helper

        self._helper, self._numpy_helper = helper, numpy_helper
        self.name = name
        self.nodes, self.initializers, self.inputs, self.outputs = [], [], [], []
        self._counts: Counter = Counter()
        self._names: set[str] = set()

    def input(self, name: str, shape: list) -> str:
        self.inputs.append(self._helper.make_tensor_value_info(name, 1, shape))  # 1 = FLOAT
        return name

    def output(self, name: str, shape: list) -> None:
        self.outputs.append(self._helper.make_tensor_value_info(name, 1, shape))

    def weight(self, name: str, array: np.ndarray) -> str:
        if name in self._names:
            raise ValueError(f"ONNX export: initializer {name!r} defined twice")
        self._names.add(name)
        self.initializers.append(self._numpy_helper.from_array(np.array(array, order="C"), name))  # keeps 0-d
        return name

    def ints(self, module: str, values) -> str:
        """An int64 constant (shapes, pads), named after its module."""
        k = self._counts[(module, "Constant")]
        self._counts[(module, "Constant")] += 1
        return self.weight(f"{module}.const_{k}", np.asarray(values, np.int64))

    def node(self, op: str, inputs: list[str], module: str, output: str | None = None, n_out: int = 1,
             **attrs) -> str | list[str]:
        """Add `op`; returns its output name(s). `output` names the (first) output explicitly."""
        k = self._counts[(module, op)]
        self._counts[(module, op)] += 1
        stem = f"/{module.replace('.', '/')}/{op}{'' if k == 0 else f'_{k}'}"
        outs = [output or f"{stem}_output_0"] + [f"{stem}_output_{i}" for i in range(1, n_out)]
        self.nodes.append(self._helper.make_node(op, inputs, outs, name=stem, **attrs))
        return outs[0] if n_out == 1 else outs

    def reshape_bt(self, x: str, tail: list[int], module: str) -> str:
        """Reshape (batch, time, ...) -> (batch, time, *tail), batch and time read from x's shape as
        PyTorch's export does. (Reshape's 0 = "keep this dim" would be shorter, but the tract in
        libDF's runtime mis-resolves it when batch is 1, and a literal batch 1 would rule out
        the multi-channel runtime.)"""
        shape = self.node("Shape", [x], module)
        dims = [self.node("Unsqueeze", [self.node("Gather", [shape, self.scalar(module, i)], module, axis=0)], module,
                          axes=[0]) for i in (0, 1)]
        spec = self.node("Concat", dims + [self.ints(module, tail)], module, axis=0)
        return self.node("Reshape", [x, spec], module)

    def scalar(self, module: str, value: int) -> str:
        k = self._counts[(module, "Scalar")]
        self._counts[(module, "Scalar")] += 1
        return self.weight(f"{module}.index_{k}", np.asarray(value, np.int64))

    def model(self, doc: str = ""):
        h = self._helper
        graph = h.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        model = h.make_model(graph, producer_name="dfnet4", opset_imports=[h.make_opsetid("", OPSET)], doc_string=doc)
        model.ir_version = IR_VERSION
        import onnx

        onnx.checker.check_model(model)
        return model
