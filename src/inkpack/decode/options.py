"""The decoder chosen by the command-line decoder options (``--decoder``, ``--beam``, ``--lm``,
``--lexicon``, ``--alpha``, ``--beta``; see ``inkpack.cli.options.decoder``),
shared by ``recognize``, ``evaluate`` and ``serve``. Light: imports the beam search only when
one is asked for (``inkpack --help`` stays fast)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inkpack.errors import ConfigError

if TYPE_CHECKING:
    from inkpack.decode.beam import Decoder


def decoder_from_args(a) -> Decoder | None:
    """The decoder the options of ``a`` ask for (``None``: greedy); ``--lm`` without ``--decoder``
    means beam search with that LM."""
    kind = getattr(a, "decoder", None)
    lm = getattr(a, "lm", None)
    if kind is None:
        kind = "beam+lm" if lm else "greedy"
    elif lm and kind != "beam+lm":
        raise ConfigError(f"--lm is only used by --decoder beam+lm (got --decoder {kind}): "
                          "drop --decoder, or drop --lm")
    if kind == "greedy":
        return None
    from inkpack.decode.beam import Decoder

    if kind == "beam+lm" and not lm:
        raise ConfigError("--decoder beam+lm needs --lm LM.arpa (train one with `inkpack lm train`)")
    if getattr(a, "beam", 16) < 1:
        raise ConfigError(f"--beam must be at least 1, got {a.beam}")
    return Decoder(kind, beam=a.beam, lm=lm, lexicon=a.lexicon, alpha=a.alpha, beta=a.beta)
