"""The Python API: ``inkpack.load(path)`` → a recognizer with a thread-safe ``.recognize(x)``.

``load()`` picks the backend from the path: nothing → the bundled offline model
(``models.io.resolve``); ``*.onnx`` → ONNX Runtime; otherwise the model's config, whose
architecture's ``input_kind`` says whether it reads images or ink.

``recognize`` takes one input or a list (a list runs batched) and returns ``Recognition``
objects: the text, one confidence per character (the highest probability of that
character over the CTC frames it was read at) and one position per character. For images a
position is the ``[x0, x1)`` pixel range of the *input* image covered by those frames (frame
``f`` covers pixels ``[f * width_factor, (f + 1) * width_factor)`` of the resized line). Ink
models (characters, lines) come back as the same :class:`Recognizer` (:mod:`inkpack.infer`): a
character model's ``candidates`` are its top classes; an ink line's positions are the
``[x_min, x_max]`` of the input points read at each character.
"""

from __future__ import annotations

import os

from inkpack.data.images import DEFAULT_MAX_PIXELS
from inkpack.decode.recognition import Recognition
from inkpack.infer.decode import char_positions
from inkpack.infer.inputs import file_kind, is_ink_input, sniff_kind
from inkpack.infer.preprocess import PreparedImage, to_gray
from inkpack.infer.recognizer import Recognizer

__all__ = ["PreparedImage", "Recognition", "Recognizer", "char_positions", "file_kind", "is_ink_input", "load",
           "sniff_kind", "to_gray"]


def load(path: str | os.PathLike | None = None, *, threads: int | None = None,
         max_pixels: int = DEFAULT_MAX_PIXELS, batch_size: int | None = None, decoder=None,
         max_width: int | None = None) -> Recognizer:
    """A recognizer for ``path`` (None → the bundled offline model; ``.onnx`` → ONNX Runtime).

    ``decoder`` (image and ink line models): None → the model's own (its JSON's ``decoder``, e.g.
    the bundled offline model's beam search with its character LM; else greedy), ``"greedy"``, a
    :class:`inkpack.decode.beam.Decoder` or its options as a dict (``{"kind": "beam+lm", "lm": "lm.arpa"}``).
    Confidences and positions come from the best CTC path that reads the text (the greedy path
    when the beam's text is greedy's).
    ``batch_size``: inputs per forward pass of a list (default 16 image lines, 32 ink samples).
    ``max_width`` (image models): the widest line accepted after scaling to the model's height
    (default ``INKPACK_MAX_LINE_WIDTH`` or 16,000 px); wider inputs raise ``InputTooLargeError``.
    """
    if decoder is not None:
        from inkpack.decode.beam import as_decoder

        decoder = as_decoder(decoder)
    from inkpack.infer.recognizer import open_recognizer

    return open_recognizer(path, threads=threads, decoder=decoder, max_pixels=max_pixels, batch_size=batch_size,
                           max_width=max_width)
