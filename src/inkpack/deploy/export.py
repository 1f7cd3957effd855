"""ONNX export of inkpack models (legacy TorchScript exporter), optionally int8.

Why the legacy exporter (``dynamo=False``): its ``nn.LSTM`` becomes an ONNX ``LSTM`` op that
``onnxruntime.quantization.quantize_dynamic`` turns into ``DynamicQuantizeLSTM`` (notes/
compression.md), and it keeps batch and width dynamic with ``dynamic_axes``.

Why a wrapper: ``pack_padded_sequence`` does not export. ``MaskedBiLSTM`` runs each direction
of each layer as a unidirectional LSTM on the *padded* sequence; the backward direction reads
every sequence reversed *within its own length* (an index gather ``t -> len-1-t``, applied
again to put the outputs back), so padding never reaches a real frame. The exported graph is
therefore exact for batches of mixed widths, and padded frames are zeroed before the output
layer as ``pad_packed_sequence`` does.

What exports (``export_onnx``):
* image CNN-DBLSTM (``darknet-dblstm``, ``vgg-dblstm``): inputs ``images [B,1,H,W]`` float32
  and ``widths [B]`` int64; outputs ``log_probs [T,B,K]`` and ``lengths [B]``; batch and
  width dynamic.
* ink models (``lstm-char``, ``online-blstm`` from ``inkpack.models.online``): see
  ``inkpack.deploy.export_ink``.
* MDLSTM: not feasible with a dynamic width. Its wavefront is a Python loop of H + W - 1
  steps inside a custom autograd function, which the tracer unrolls for the example size
  only; ``export_onnx`` refuses it with that reason (its registry entry's ``no_export``).

Which exporter runs is the architecture's ``exporter`` capability in its registry entry
(:mod:`inkpack.models.registry`), found by the config's ``arch`` or the model's class.

The sidecar ``OUT.json`` (e.g. ``model.onnx`` → ``model.onnx.json``) holds the model's
config plus an ``onnx`` section; :func:`inkpack.models.io.read_sidecar` reads it.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from inkpack.deploy.export_base import OPSET, MaskedBiLSTM, torch_export
from inkpack.errors import InkpackError
from inkpack.models.io import place_decoder_files
from inkpack.models.io import sidecar_path  # noqa: F401  (the sidecar belongs to the model-file format)


class ExportCNNDBLSTM(nn.Module):
    """``(images, widths) -> (log_probs [T,B,K], lengths [B])`` of a CNN-DBLSTM, export-safe."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if not isinstance(getattr(model, "lstm", None), nn.LSTM):
            raise InkpackError(
                f"ONNX export: {type(getattr(model, 'lstm', None)).__name__} sequence layers are not "
                "supported (only nn.LSTM; export the model before low-rank LSTM compression)"
            )
        self.model = model
        self.lstm = MaskedBiLSTM(model.lstm)

    def forward(self, images: torch.Tensor, widths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        feats = m.features(images, widths)  # [T, B, F]; padding masked as in the model (exact batches)
        n_t = torch._shape_as_tensor(feats)[0]
        lengths = torch.minimum(m.output_lengths(widths).clamp(min=1), n_t)
        y = self.lstm(feats, lengths)
        return m.fc(y).log_softmax(-1), lengths


def _load(model_path_or_module, config: dict | None) -> tuple[nn.Module, dict | None]:
    """The float graph: a model compressed with int8 is loaded before PyTorch quantizes it (the
    exporter cannot trace quantized LSTMs); ``export_onnx`` quantizes it in ONNX instead."""
    if isinstance(model_path_or_module, nn.Module):
        return copy.deepcopy(model_path_or_module).eval(), config
    from inkpack.models.io import load_model

    path = None if model_path_or_module is None else str(model_path_or_module)  # None: the bundled model
    model, cfg, _ = load_model(path, int8=False)
    return model, (config or cfg)


def _exporter(model: nn.Module, config: dict | None):
    """(input kind, exporter function) of the model's architecture, or a one-line refusal."""
    from inkpack.models.registry import load_capability, spec_for

    spec = spec_for(model, config)
    if spec is None:
        raise InkpackError(f"ONNX export: no exporter for {type(model).__name__} (not a registered architecture)")
    if spec.exporter is None:
        raise InkpackError(spec.no_export or f"ONNX export: no exporter for architecture {spec.name!r}")
    return spec.input_kind, load_capability(spec.exporter)


def export_cnn_dblstm(model: nn.Module, path: Path) -> dict:
    """The CNN-DBLSTM exporter (registry capability of vgg-, darknet- and gated-dblstm)."""
    wrapper = ExportCNNDBLSTM(model).eval()
    h = model.height
    wf = model.width_factor
    widths = torch.tensor([12 * wf, 7 * wf + 3])  # mixed widths: trace the general path
    images = torch.rand(2, 1, h, int(widths.max()))
    images[1, :, :, int(widths[1]):] = 0
    torch_export(
        wrapper, (images, widths), path,
        input_names=["images", "widths"], output_names=["log_probs", "lengths"],
        dynamic_axes={"images": {0: "batch", 3: "width"}, "widths": {0: "batch"},
                      "log_probs": {0: "frames", 1: "batch"}, "lengths": {0: "batch"}},
    )
    return {"inputs": ["images", "widths"], "outputs": ["log_probs", "lengths"],
            "height": h, "width_factor": wf, "exact_mixed_widths": True}


def export_onnx(model_path_or_module, out: str | os.PathLike, int8: bool = False,
                config: dict | None = None, reduce_range: bool = True, decoder: bool = True) -> Path:
    """Write ``out`` (ONNX) and ``out + '.json'`` (config + export facts); return ``out``.

    ``model_path_or_module``: a model path/name for ``models.io.load_model``, or an ``nn.Module``
    (then pass ``config`` so the runtime knows the alphabet and preprocessing). The model's own
    decoder goes with it (its language model copied beside ``out``) unless ``decoder`` is False.
    """
    from inkpack.jsonio import check_output_file, dumps

    out = Path(out)
    if out.suffix != ".onnx":
        raise InkpackError(f"{out}: the output file must end in .onnx")
    check_output_file(out, "--out")  # before the (slow) load and trace
    check_output_file(sidecar_path(out), "--out")
    model, cfg = _load(model_path_or_module, config)
    int8 = int8 or bool(((cfg or {}).get("compression") or {}).get("int8"))  # int8 models stay int8
    out.parent.mkdir(parents=True, exist_ok=True)
    kind, exporter = _exporter(model, cfg)
    with tempfile.TemporaryDirectory(prefix="inkpack-onnx-") as tmp:
        fp32 = Path(tmp) / "model.onnx"
        facts = exporter(model, fp32)
        if int8:
            from inkpack.compress.quantize import onnx_quantize_int8

            onnx_quantize_int8(fp32, out, reduce_range=reduce_range)
        else:
            shutil.move(str(fp32), str(out))
    facts.update({"input_kind": kind, "int8": bool(int8), "opset": OPSET, "bytes": out.stat().st_size})
    side = dict(cfg or {})
    side["onnx"] = facts
    if not decoder:
        side.pop("decoder", None)
    side = place_decoder_files(side, out.parent)
    if "trained_on" in side or "compression" in side:
        from inkpack.models.io import portable_config

        side = portable_config(side)
    sidecar_path(out).write_text(dumps(side, indent=2) + "\n", encoding="utf-8")
    return out
