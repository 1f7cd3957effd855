"""Which decoder runs: the command-line decoder options (``--decoder``, ``--beam``, ``--lm``,
``--lexicon``, ``--alpha``, ``--beta``; see ``inkpack.cli.options.decoder``), shared by
``recognize``, ``evaluate`` and ``serve``, else the model's own (its JSON's ``decoder`` field,
``models.io``), else greedy.

Everywhere a decoder is taken (CLI, ``inkpack.load``, the service), ``None`` means "the model's
own" and ``"greedy"`` (or a greedy :class:`~inkpack.decode.beam.Decoder`) means greedy whatever
the model names. Light: imports the beam search only when one is asked for (``inkpack --help``
stays fast)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inkpack.errors import ConfigError, InkpackError, ModelFileError

if TYPE_CHECKING:
    from inkpack.decode.beam import Decoder


GREEDY = "greedy"


def decoder_from_args(a) -> Decoder | str | None:
    """The decoder the options of ``a`` ask for: ``None`` (no ``--decoder``: the model's own),
    ``"greedy"``, or a :class:`~inkpack.decode.beam.Decoder`; ``--lm`` without ``--decoder``
    means beam search with that LM."""
    kind = getattr(a, "decoder", None)
    lm = getattr(a, "lm", None)
    if kind is None and not lm:
        return None
    if kind is None:
        kind = "beam+lm"
    elif lm and kind != "beam+lm":
        raise ConfigError(f"--lm is only used by --decoder beam+lm (got --decoder {kind}): "
                          "drop --decoder, or drop --lm")
    if kind == GREEDY:
        return GREEDY
    from inkpack.decode.beam import Decoder

    if kind == "beam+lm" and not lm:
        raise ConfigError("--decoder beam+lm needs --lm LM.arpa (train one with `inkpack lm train`)")
    if getattr(a, "beam", 16) < 1:
        raise ConfigError(f"--beam must be at least 1, got {a.beam}")
    return Decoder(kind, beam=a.beam, lm=lm, lexicon=a.lexicon, alpha=a.alpha, beta=a.beta)


def chosen(decoder) -> Decoder | None:
    """``decoder`` as a recognizer keeps it: a :class:`~inkpack.decode.beam.Decoder`, or None for
    greedy (given as ``None``, ``"greedy"``, a greedy ``Decoder`` or an options mapping)."""
    if decoder is None or decoder == GREEDY:
        return None
    from inkpack.decode.beam import as_decoder

    d = as_decoder(decoder)
    return None if d.kind == GREEDY else d


def model_decoder(cfg: dict, where) -> Decoder | None:
    """The decoder a model's config names (``decoder``: the options of
    :class:`~inkpack.decode.beam.Decoder`, its ``lm`` already an absolute path: ``models.io``
    reads it so), or None (greedy). A bad field is a ``ModelFileError`` naming ``where``."""
    spec = cfg.get("decoder")
    if not spec:
        return None
    from inkpack.decode.beam import Decoder

    try:
        return chosen(Decoder.from_options(spec))
    except ModelFileError:
        raise
    except (InkpackError, TypeError) as e:  # TypeError: an option of the wrong type
        raise ModelFileError(f"{where}: field 'decoder': {e}") from None
