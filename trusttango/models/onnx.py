"""ONNX classifiers as differentiable ``nn.Module``s, checked against onnxruntime.

The graph is simplified with onnxscript's optimizer (constant folding; the ``Identity`` nodes
exporters put on shared weights removed), brought to opset 17, the newest that onnx2torch
reads, and converted with onnx2torch, so gradients flow and every attack and explanation
runs. The conversion is trusted only after :func:`parity` compares its logits with
onnxruntime's on the audited images: above :data:`TOLERANCE` the model is refused.

A graph that cannot be converted (:class:`NotConvertible`, e.g. an operator onnx2torch lacks)
runs as it is in onnxruntime: :class:`OnnxRuntimeModel` gives outputs but no gradients, and
the audit runs in black-box mode (score-based attacks, occlusion, membership inference).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from trusttango.errors import InputError, require


class NotConvertible(InputError):
    """The ONNX graph is valid but cannot be converted to PyTorch."""


OPSET = 17  # the newest opset onnx2torch 1.5 converts
TOLERANCE = 1e-4  # largest |logit difference| allowed, relative to max(1, largest |logit|)


def onnx_model(path: Path) -> nn.Module:
    """The ONNX model at ``path`` as an ``nn.Module``; an :class:`InputError` when the file is not
    a valid ONNX model or its graph cannot be converted (naming the operator when known)."""
    import onnx
    from google.protobuf.message import DecodeError

    require(path.is_file(), f"--onnx: {path} not found")
    try:
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph)
    except (DecodeError, onnx.checker.ValidationError, OSError, ValueError) as err:
        raise InputError(f"--onnx: {path} is not a valid ONNX model ({str(err).splitlines()[0][:200]})") from None
    return _convert(graph, path)


def onnx_files(path: Path) -> list[Path]:
    """``path`` and the external data files its weights are kept in (what a provenance hash must cover)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    graph = onnx.load(str(path), load_external_data=False).graph
    names = {ExternalDataInfo(t).location for t in graph.initializer if uses_external_data(t)}
    return [path, *(path.parent / name for name in sorted(names))]


def copy_onnx(source: Path, target: Path) -> None:
    """Write the ONNX model at ``source`` to ``target`` with the weights it keeps in external data
    files (torch's dynamo exporter writes ``NAME.onnx.data`` beside it) inside one file; a model
    over protobuf's 2 GB keeps them in ``TARGET.data`` beside ``target``."""
    import onnx

    model = onnx.load(str(source))  # external data read too
    try:
        onnx.save_model(model, str(target))
    except ValueError:  # over 2 GB: one protobuf cannot hold it
        onnx.save_model(model, str(target), save_as_external_data=True, location=f"{target.name}.data")


def _convert(graph: object, path: Path) -> nn.Module:
    import onnx
    import onnxscript.optimizer
    from onnx2torch import convert

    try:
        simplified = onnx.version_converter.convert_version(onnxscript.optimizer.optimize(graph), OPSET)
        return convert(simplified)
    except (NotImplementedError, RuntimeError, KeyError, ValueError) as err:
        reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise NotConvertible(f"the graph cannot be converted to PyTorch ({reason})") from None


NO_GRADIENTS = (
    "model: a black box (its ONNX graph runs in onnxruntime, without gradients) and this needs gradients; "
    "gradient-free: attack --attack square, robustness (Square alone), explain --method occlusion, evaluate, "
    "membership, fairness and the audit (black-box mode)"
)


class OnnxRuntimeModel(nn.Module):
    """The ONNX model at ``path`` run by onnxruntime (CPU): logits without gradients."""

    gradients = False

    def __init__(self, path: Path, batch_size: int = 256) -> None:
        import onnxruntime

        super().__init__()
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input_name, self.batch_size = self.session.get_inputs()[0].name, batch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of ``x``; an :class:`InputError` (one line, not a traceback) where the caller asks
        for gradients, naming what needs none."""
        require(not (torch.is_grad_enabled() and x.requires_grad), NO_GRADIENTS)
        given = x.detach().float().cpu().numpy()
        outputs = [self.session.run(None, {self.input_name: given[i : i + self.batch_size]})[0]
                   for i in range(0, len(given), self.batch_size)]  # fmt: skip
        return torch.from_numpy(np.concatenate(outputs)).to(x.device)


def parity(model: nn.Module, path: Path, x: torch.Tensor, preprocess=None) -> float:
    """Largest |logit difference| between ``model(x)`` and onnxruntime running ``path`` on
    ``preprocess(x)`` (what the ONNX graph is given), relative to max(1, largest |logit|);
    an :class:`InputError` above :data:`TOLERANCE`."""
    with torch.no_grad():
        ours = model(x).float().cpu()
        theirs = OnnxRuntimeModel(path)(preprocess(x) if preprocess else x)
    diff = float((ours - theirs).abs().max() / max(1.0, float(theirs.abs().max())))
    require(
        diff <= TOLERANCE,
        f"--onnx: {path}: the converted model differs from onnxruntime by {diff:.2g} (relative), "
        f"above the tolerance {TOLERANCE:g}; refused",
    )
    return diff
