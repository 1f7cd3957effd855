"""Decoding benchmark: speed (ms/line, one thread) and accuracy of greedy/beam/beam+LM(+lexicon).

Until trained models exist the decoders run on *synthetic* CTC outputs made from hooker val
transcriptions (peaked frames, random durations, ~10% of characters given a strong confuser), so
the CER/WER there only show that the search and the LM work, not what a real model will get.
With ``--model-logits NPZ`` the same table is computed on a real model's outputs.

NPZ layout (write it with :func:`save_model_logits`): ``log_probs`` float32 ``[sum T_i, K]``
(log-softmax or raw logits), ``offsets`` int64 ``[L+1]`` (line i = rows offsets[i]:offsets[i+1]),
``texts`` str ``[L]`` (references), ``symbols`` str (alphabet symbols joined), ``with_unk`` bool.

It also trains character LMs on hooker train.tsv and reports their per-char perplexity on val.tsv.

    python benchmarks/decoding.py [--quick] [--json OUT] [--model models/hooker-darknet | --model-logits NPZ] [--tune]
    python benchmarks/decoding.py --data iamondb [--model models/iamondb-online-blstm] [--json OUT]

``--data iamondb``: the online line model on IAM-OnDB val.npz, the LM and lexicon from the
train.npz transcriptions (kept in memory only: nothing derived from IAM-OnDB is written but figures).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from rapidfuzz.distance import Levenshtein  # noqa: E402

from common import write_json  # noqa: E402

from inkpack.data.alphabet import Alphabet  # noqa: E402
from inkpack.decode.beam import Decoder  # noqa: E402
from inkpack.decode.lexicon import Lexicon  # noqa: E402
from inkpack.decode.lm import CharNgramLM  # noqa: E402
from inkpack.decode.lm_cli import read_texts  # noqa: E402

HOOKER = Path(__file__).resolve().parents[2] / "shared" / "data" / "hooker"
IAMONDB = HOOKER.parent / "iamondb"
if not HOOKER.is_dir():
    HOOKER = Path("/work/shared/data/hooker")


def dump_model_logits(model: str, tsv: Path, limit: int | None) -> str:
    """Run an image model over a manifest and keep its log-probs in a temporary NPZ."""
    import torch

    from inkpack.data.lines import load_lineset
    from inkpack.infer.recognizer import open_recognizer

    torch.set_num_threads(1)
    rec = open_recognizer(model, threads=None)
    lines = load_lineset(str(tsv), rec.height, progress=False, limit=limit)
    outputs = []
    for im in lines.images:
        lp, n = rec.logits([torch.from_numpy(im.astype("float32") / 255.0)[None]])
        outputs.append(lp[: int(n[0]), 0].numpy())
    path = Path(tempfile.mkdtemp()) / "logits.npz"
    save_model_logits(path, outputs, lines.texts, rec.alphabet)
    return str(path)


def ink_model_outputs(model: str, npz: Path, limit: int | None) -> tuple[list[np.ndarray], list[str], Alphabet]:
    """Run an online line model over an IAM-OnDB npz: per-line log-probs, references, alphabet."""
    import torch

    from inkpack.data.formats.iamondb import read_iamondb_npz
    from inkpack.data.ink_preprocess import preprocess
    from inkpack.infer.ink_preprocess import preprocess_config
    from inkpack.models.io import load_model

    torch.set_num_threads(1)
    net, cfg, alphabet = load_model(model)
    pcfg = preprocess_config(cfg)
    inks = list(read_iamondb_npz(npz, strict=False))[:limit]
    outputs, refs = [], []
    with torch.inference_mode():
        for ink in inks:
            f = preprocess(ink, pcfg, None)
            if len(f) == 0:
                continue
            x = torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32))[None]
            logits, n = net(x, torch.tensor([x.shape[1]]))
            outputs.append(logits[: int(n[0]), 0].log_softmax(-1).numpy())
            refs.append(ink.label or "")
    return outputs, refs, alphabet


def save_model_logits(path: str | Path, outputs: list[np.ndarray], texts: list[str],
                      alphabet: Alphabet) -> None:
    """Store per-line ``[T_i, K]`` model outputs + references for ``--model-logits``."""
    offsets = np.cumsum([0] + [len(o) for o in outputs]).astype(np.int64)
    np.savez_compressed(path, log_probs=np.concatenate(outputs).astype(np.float32),
                        offsets=offsets, texts=np.array(texts), symbols="".join(alphabet.symbols),
                        with_unk=alphabet.with_unk)


def load_model_logits(path: str) -> tuple[list[np.ndarray], list[str], Alphabet]:
    z = np.load(path)
    with_unk = bool(z["with_unk"]) if "with_unk" in z.files else False
    alphabet = Alphabet(list(str(z["symbols"])), with_unk=with_unk)
    lp, off = z["log_probs"], z["offsets"]
    outputs = [lp[off[i]: off[i + 1]] for i in range(len(off) - 1)]
    return outputs, [str(t) for t in z["texts"]], alphabet


def synthetic_logits(text: str, alphabet: Alphabet, rng: np.random.Generator,
                     confusion: float = 0.1) -> np.ndarray:
    """A plausible CTC output for ``text``: 1-3 frames a char, 0-3 blanks between, noisy logits."""
    labels = alphabet.encode(text, policy="skip")
    k = alphabet.num_classes
    frames: list[tuple[int, int]] = []  # (label, confuser or -1)
    prev = -1
    for lab in labels:
        for _ in range(int(rng.integers(0, 4)) + (1 if lab == prev else 0)):
            frames.append((0, -1))
        conf = int(rng.integers(1, k)) if rng.random() < confusion else -1
        frames += [(lab, conf)] * int(rng.integers(1, 4))
        prev = lab
    frames += [(0, -1)] * int(rng.integers(1, 4))
    x = rng.normal(0.0, 1.0, size=(len(frames), k))
    for t, (lab, conf) in enumerate(frames):
        if conf > 0 and conf != lab:
            x[t, lab] += 8.0
            x[t, conf] += 8.0 + rng.normal(0.0, 1.0)
        else:
            x[t, lab] += 12.0
    x -= np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) + x.max(1, keepdims=True)
    return x.astype(np.float32)


def error_rates(hyps: list[str], refs: list[str]) -> dict[str, float]:
    ce = sum(Levenshtein.distance(h, r) for h, r in zip(hyps, refs, strict=True))
    we = sum(Levenshtein.distance(h.split(), r.split()) for h, r in zip(hyps, refs, strict=True))
    n_words = sum(len(r.split()) for r in refs)
    return {"cer": ce / max(1, sum(map(len, refs))), "wer": we / max(1, n_words)}


def run_decoder(dec: Decoder, outputs: list[np.ndarray], alphabet: Alphabet,
                refs: list[str]) -> dict:
    """CPU time (process_time, immune to other jobs on a shared machine) and wall time per line."""
    times, walls, hyps = [], [], []
    for lp in outputs:
        t0, w0 = time.process_time(), time.perf_counter()
        hyps.append(dec.decode(lp, alphabet))
        times.append((time.process_time() - t0) * 1e3)
        walls.append((time.perf_counter() - w0) * 1e3)
    times.sort()
    return {"ms_per_line": statistics.fmean(times), "ms_p90": times[int(0.9 * (len(times) - 1))],
            "wall_ms_per_line": statistics.fmean(walls), **error_rates(hyps, refs)}


def lm_section(train: list[str], val: list[str], orders: list[int], wb_order: int) -> list[dict]:
    rows = []
    for smoothing in ("kneser-ney", "witten-bell"):
        for order in orders if smoothing == "kneser-ney" else [wb_order]:
            t0 = time.perf_counter()
            lm = CharNgramLM.train(train, order=order, smoothing=smoothing)
            t_train = time.perf_counter() - t0
            with tempfile.TemporaryDirectory() as d:
                p = Path(d) / "lm.arpa"
                lm.save(p)
                size = p.stat().st_size
                t0 = time.perf_counter()
                back = CharNgramLM.load(p)
                t_load = time.perf_counter() - t0
            ppl = lm.perplexity(val)
            ppl_back = back.perplexity(val)["perplexity"]
            rows.append({"smoothing": smoothing, "order": order, "train_s": t_train,
                         "ngrams": sum(lm.num_ngrams()), "arpa_bytes": size, "load_s": t_load,
                         "val_ppl": ppl["perplexity"], "val_bits_per_char": ppl["bits_per_char"],
                         "val_ppl_after_arpa_roundtrip": ppl_back,
                         "val_oov_chars": ppl["oov_chars"],
                         "val_tokens": ppl["tokens"]})
    return rows


def decoder_set(lm: CharNgramLM, lexicon: Lexicon, beam: int, alpha: float, beta: float,
                exact: bool) -> dict[str, Decoder]:
    d = {"greedy": Decoder("greedy"),
         f"beam{beam}": Decoder("beam", beam=beam),
         f"beam{beam}+lm": Decoder("beam+lm", beam=beam, lm=lm, alpha=alpha, beta=beta),
         f"beam{beam}+lm+lexicon": Decoder("beam+lm", beam=beam, lm=lm, lexicon=lexicon,
                                           alpha=alpha, beta=beta)}
    if exact:
        off = {"cutoff_logp": None, "top_k": 10**6, "blank_skip": None, "beam_prune_logp": None}
        d[f"beam{beam}+lm, no pruning"] = Decoder("beam+lm", beam=beam, lm=lm, alpha=alpha,
                                                  beta=beta, **off)
    return d


def print_table(title: str, rows: list[dict], cols: list[str]) -> None:
    print(f"\n{title}")
    widths = [max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in cols]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(w) for c, w in zip(cols, widths, strict=True)))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer lines and LM orders")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--model-logits", help="NPZ of real model outputs + references (see docstring)")
    ap.add_argument("--order", type=int, default=6, help="LM order used for decoding")
    ap.add_argument("--beam", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--beta", type=float, default=0.0)
    ap.add_argument("--tune", action="store_true", help="grid over alpha/beta on the given logits")
    ap.add_argument("--model", help="run this model (e.g. models/hooker-darknet) on hooker val.tsv "
                    "and decode its outputs (instead of --model-logits)")
    ap.add_argument("--data", choices=["hooker", "iamondb"], default="hooker",
                    help="iamondb: the online line model on IAM-OnDB val (LM from its train texts)")
    args = ap.parse_args(argv)
    if args.data == "iamondb":
        return main_iamondb(args)
    if args.model:
        args.model_logits = dump_model_logits(args.model, HOOKER / "val.tsv", 100 if args.quick else None)
    warnings.simplefilter("ignore")  # LM/lexicon coverage warnings are expected on synthetic data

    train = read_texts(str(HOOKER / "train.tsv"))
    val = read_texts(str(HOOKER / "val.tsv"))
    orders = [4, args.order] if args.quick else sorted({3, 4, 5, 6, 7, args.order})
    result: dict = {"quick": args.quick, "threads": 1,
                    "lm": lm_section(train, val, orders, args.order)}
    print_table("Character LM: trained on hooker train.tsv, perplexity per char (+</s>) on val.tsv",
                result["lm"], ["smoothing", "order", "ngrams", "arpa_bytes", "train_s", "load_s",
                               "val_ppl", "val_bits_per_char", "val_ppl_after_arpa_roundtrip"])

    lm = CharNgramLM.train(train, order=args.order)
    lexicon = Lexicon.from_texts(train)
    decs = decoder_set(lm, lexicon, args.beam, args.alpha, args.beta, exact=True)
    rng = np.random.default_rng(20240611)
    alphabet = Alphabet.from_texts(train + val)
    long_lines = [t for t in val if len(t) >= 25]  # T of about 100-200 frames, the speed target
    lines = long_lines[:40] if args.quick else long_lines
    synth = [synthetic_logits(t, alphabet, rng) for t in lines]
    t_frames = [len(s) for s in synth]
    result["synthetic"] = {"lines": len(lines), "classes": alphabet.num_classes,
                           "frames_mean": statistics.fmean(t_frames),
                           "frames_range": [min(t_frames), max(t_frames)], "decoders": []}
    for name, dec in decs.items():
        if "no pruning" in name and args.quick:
            continue
        r = {"decoder": name, **run_decoder(dec, synth, alphabet, lines)}
        result["synthetic"]["decoders"].append(r)
    g = result["synthetic"]["decoders"][0]["ms_per_line"]
    for r in result["synthetic"]["decoders"]:
        r["time_vs_greedy"] = r["ms_per_line"] / g
    print_table(f"Synthetic CTC outputs ({len(lines)} val lines, K={alphabet.num_classes}, "
                f"T mean {statistics.fmean(t_frames):.0f} [{min(t_frames)}-{max(t_frames)}]), "
                f"one thread, LM order {args.order}, alpha {args.alpha}, beta {args.beta}",
                result["synthetic"]["decoders"],
                ["decoder", "ms_per_line", "ms_p90", "wall_ms_per_line", "time_vs_greedy", "cer",
                 "wer"])

    if args.model_logits:
        outputs, refs, m_alpha = load_model_logits(args.model_logits)
        real = []
        for name, dec in decoder_set(lm, lexicon, args.beam, args.alpha, args.beta, False).items():
            real.append({"decoder": name, **run_decoder(dec, outputs, m_alpha, refs)})
        if args.tune:
            for a in (0.2, 0.35, 0.5, 0.75, 1.0):
                for b in (-0.5, 0.0, 0.5, 1.0, 2.0):
                    dec = Decoder("beam+lm", beam=args.beam, lm=lm, alpha=a, beta=b)
                    real.append({"decoder": f"beam{args.beam}+lm a={a} b={b}",
                                 **run_decoder(dec, outputs, m_alpha, refs)})
        result["model_logits"] = {"file": args.model_logits, "lines": len(refs), "decoders": real}
        print_table(f"Model outputs {args.model_logits} ({len(refs)} lines)", real,
                    ["decoder", "ms_per_line", "ms_p90", "wall_ms_per_line", "cer", "wer"])

    write_json(args.json, result)
    return 0


def main_iamondb(args: argparse.Namespace) -> int:
    from inkpack.data.formats.iamondb import read_iamondb_npz

    warnings.simplefilter("ignore")
    train = [i.label for i in read_iamondb_npz(IAMONDB / "train.npz", strict=False) if i.label]
    limit = 150 if args.quick else None
    outputs, refs, alphabet = ink_model_outputs(args.model or "iamondb-online-blstm",
                                                IAMONDB / "val.npz", limit)
    orders = [args.order] if args.quick else sorted({4, 5, 6, 7, args.order})
    result: dict = {"quick": args.quick, "threads": 1, "data": "iamondb",
                    "lm": lm_section(train, refs, orders, args.order)}
    print_table("Character LM: trained on IAM-OnDB train transcriptions, perplexity per char on val",
                result["lm"], ["smoothing", "order", "ngrams", "val_ppl", "val_bits_per_char"])
    lm = CharNgramLM.train(train, order=args.order)
    rows = []
    for name, dec in decoder_set(lm, Lexicon.from_texts(train), args.beam, args.alpha, args.beta,
                                 False).items():
        rows.append({"decoder": name, **run_decoder(dec, outputs, alphabet, refs)})
    if args.tune:
        for a in (0.3, 0.5, 0.75, 1.0):
            for b in (0.0, 1.0, 2.0):
                dec = Decoder("beam+lm", beam=args.beam, lm=lm, alpha=a, beta=b)
                rows.append({"decoder": f"beam{args.beam}+lm a={a} b={b}", **run_decoder(dec, outputs, alphabet, refs)})
    g = rows[0]["wer"]
    for r in rows:
        r["wer_rel_change"] = (r["wer"] - g) / g if g else 0.0
    result["model_logits"] = {"model": args.model or "iamondb-online-blstm", "lines": len(refs),
                              "order": args.order, "alpha": args.alpha, "beta": args.beta, "decoders": rows}
    print_table(f"IAM-OnDB val ({len(refs)} lines), online model outputs, one thread", rows,
                ["decoder", "ms_per_line", "ms_p90", "cer", "wer", "wer_rel_change"])
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
