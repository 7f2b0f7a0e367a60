"""An int8 ONNX export with dynamically quantized convolutions, run in float32: ``detector.dequantize``.

onnxruntime's dynamic quantization (``quantize_dynamic``, how ``yolov8n_int8.onnx`` was made) stores each
convolution's weights as int8 and quantizes its input at run time (``DynamicQuantizeLinear`` → ``ConvInteger`` →
``Cast`` → ``Mul`` by the two scales). On the CPUs measured here, onnxruntime's ``ConvInteger`` is slower than its
float convolution: YOLOv8n took 101 ms per 640 x 640 frame as int8 and 71 ms with the same weights in float32
(one thread, docs/benchmarks.md). This rewrite gives each such convolution its weights de-quantized
(``(w - zero_point) x scale``, the values the int8 model multiplies by) as a float ``Conv`` on the float input,
keeping the bias ``Add`` that follows; the quantize nodes left without a consumer are removed. The network is the
same; what changes is that its activations are no longer rounded to 8 bits, so scores move by a few hundredths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def dequantized(model: Any) -> Any | None:
    """``model`` (an ``onnx.ModelProto``, changed in place and returned) with every ``ConvInteger`` chain turned
    into a float ``Conv``; None when it has none (a float export, or one quantized another way). ValueError for a
    ``ConvInteger`` this rewrite does not know (the model is then left unchanged)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    if not any(node.op_type == "ConvInteger" for node in graph.node):
        return None
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    replaced: dict[int, Any] = {}
    new_weights = []
    for node in graph.node:
        if node.op_type != "ConvInteger":
            continue
        if len(node.input) != 4:
            raise ValueError(f"{node.name}: ConvInteger without both zero points")
        x_q, w_q, _x_zp, w_zp = node.input
        quantize = producer.get(x_q)
        after = consumers.get(node.output[0], [])
        if quantize is None or quantize.op_type != "DynamicQuantizeLinear" or len(after) != 1 \
                or after[0].op_type != "Cast":
            raise ValueError(f"{node.name}: not a DynamicQuantizeLinear -> ConvInteger -> Cast chain")
        cast = after[0]
        muls = consumers.get(cast.output[0], [])
        if len(muls) != 1 or muls[0].op_type != "Mul":
            raise ValueError(f"{node.name}: the converted output is not scaled by one Mul")
        mul = muls[0]
        scales = producer.get(next(i for i in mul.input if i != cast.output[0]))
        w_scale = None if scales is None else next((i for i in scales.input if i in inits), None)
        if w_scale is None or w_q not in inits or w_zp not in inits:
            raise ValueError(f"{node.name}: weight, zero point or scale is not a constant")
        w = numpy_helper.to_array(inits[w_q]).astype(np.float32)
        zp = numpy_helper.to_array(inits[w_zp]).astype(np.float32)
        scale = numpy_helper.to_array(inits[w_scale]).astype(np.float32)
        per_channel = (-1,) + (1,) * (w.ndim - 1)  # a per-tensor (0-d) zero point or scale broadcasts the same way
        weights = (w - zp.reshape(per_channel)) * scale.reshape(per_channel)
        name = f"{w_q}_dequantized"
        new_weights.append(numpy_helper.from_array(weights.astype(np.float32), name))
        conv = helper.make_node("Conv", [quantize.input[0], name], [mul.output[0]], name=f"{node.name}_float")
        conv.attribute.extend(node.attribute)
        replaced[id(node)], replaced[id(cast)], replaced[id(mul)] = conv, None, None
    nodes = [replaced.get(id(n), n) for n in graph.node]
    nodes = [n for n in nodes if n is not None]
    outputs = {o.name for o in graph.output}
    while True:  # drop what nothing reads any more (the quantize nodes, their scale products)
        read = set(outputs).union(*(n.input for n in nodes))
        kept = [n for n in nodes if any(o in read for o in n.output)]
        if len(kept) == len(nodes):
            break
        nodes = kept
    read = set().union(*(n.input for n in nodes))
    initializers = [i for i in graph.initializer if i.name in read] + new_weights
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return model


def dequantized_bytes(path: Path) -> bytes | None:
    """The serialized float model of the int8 export at ``path`` (see :func:`dequantized`); None when it has no
    dynamically quantized convolution. ValueError: one this rewrite does not know."""
    import onnx

    model = dequantized(onnx.load(str(path)))
    if model is None:
        return None
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())
