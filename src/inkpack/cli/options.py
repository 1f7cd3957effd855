"""The option groups several commands share, each defined once: ``--model``, ``--json``, the
runtime (``--batch-size``, ``--threads``, ``--device``), ``--images``, ``--progress``, the page
options (``--seg-model``, ``--check-180``) and the decoder (``--decoder``, ``--beam``, ``--lm``,
``--lexicon``, ``--alpha``, ``--beta``). A command passes its own default or help wording where
it differs; the flag's name, type and meaning live here only. No torch (``--help`` imports it).
"""

from __future__ import annotations

from inkpack.cli import types as T

MODEL_HELP = "model: name, path or .onnx (default: the bundled offline model)"
DEVICE_HELP = "auto | cpu | cuda[:N]; auto = CUDA when available"
THREADS_HELP = "torch / ONNX Runtime threads"
IMAGES_HELP = ("PAGE-XML data: folder of the page images (default: where the XML says, "
               "relative to its folder, its parent or the workspace)")
SEG_MODEL_HELP = "segmentation model (default: the bundled models/hooker-segment)"


def model(p, help: str = MODEL_HELP) -> None:
    p.add_argument("--model", help=help)


def json_out(p) -> None:
    """``--json OUT``: the results as a JSON file."""
    p.add_argument("--json", metavar="OUT", help="write the results as JSON here")


def batch_size(p, default=16, help: str = "lines per forward pass", type=T.positive_int) -> None:
    p.add_argument("--batch-size", type=type, default=default, help=help)


def threads(p, default=1, help: str = THREADS_HELP, type=T.positive_int) -> None:
    p.add_argument("--threads", type=type, default=default, help=help)


def device(p, default="auto", help: str = DEVICE_HELP) -> None:
    p.add_argument("--device", type=T.device, default=default, help=help)


def runtime(p, batch: int = 16, batch_help: str = "lines per forward pass") -> None:
    """``--batch-size``, ``--threads``, ``--device`` of the commands that run a recognizer."""
    batch_size(p, batch, batch_help)
    threads(p)
    device(p)


def images_dir(p, help: str = IMAGES_HELP) -> None:
    p.add_argument("--images", dest="images_dir", metavar="DIR", help=help)


def progress(p) -> None:
    p.add_argument("--progress", choices=["auto", "on", "off"], default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")


def seg_model(p, help: str = SEG_MODEL_HELP) -> None:
    p.add_argument("--seg-model", help=help)


def check_180(p, help: str) -> None:
    p.add_argument("--check-180", action="store_true", help=help)


def decoder(p) -> None:
    """``--decoder greedy|beam|beam+lm`` and its options (recognize, evaluate, evaluate-pages, serve).
    The decoder's default (None) is resolved by ``inkpack.decode.options.decoder_from_args``:
    beam+lm with ``--lm``, else greedy."""
    p.add_argument("--decoder", choices=["greedy", "beam", "beam+lm"], default=None,
                   help="greedy | beam | beam+lm (default: greedy, or beam+lm when --lm is given)")
    p.add_argument("--beam", type=T.positive_int, default=16, help="beam width (default: 16)")
    p.add_argument("--lm", help="character ARPA LM (with --decoder beam+lm; default: none)")
    p.add_argument("--lexicon", help="word list, one word per line (default: none)")
    p.add_argument("--alpha", type=T.finite_float, default=0.5, help="LM weight (default: 0.5)")
    p.add_argument("--beta", type=T.finite_float, default=0.0, help="word insertion bonus (default: 0.0)")
