"""EmoDB's held-out speakers, audio only: each witness's vote and the pool's fitting votes.

    python scripts/emodb_heldout.py        # ~60 min the first time on 2 cores, seconds after

With ``decision = "fusion"`` (the default) a clip is stored under the fused witnesses' top
emotion, so the issue's "EmoDB audio-only UAR on held-out speakers" is the fused label's UAR
when every witness is held out. Per utterance:

- **voice**: the shipped scorer's recipe (``scripts/train_voice_emotion.py``: eGeMAPS of the
  speech span, the shipped normalisation, C chosen by an inner leave-one-speaker-out) refitted
  without the utterance's speaker (the shipped model heard all ten); the reliability is the
  one the voice tool gave the clip (``loso_voice``, also the votes the pool is fitted on);
- **words**: whisper's transcript read by the text-emotion witness (fitted on MELD, never on
  EmoDB), collected and cached by ``evals.recognition`` as set ``emodb-audio``.

Prints UAR, accuracy and macro-F1 with bootstrap 95 % intervals, per-class recall and the ECE
of each witness's own top probability. The fused label's figure is ``scripts/fit_recognition.py``'s
``emodb-audio`` row: since v5 the pool is fitted on these votes too, so it is scored with the
pool refitted without each speaker. Writes nothing in the repo (the votes go to the gitignored
``eval-results/votes/``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "scripts")]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import train_voice_emotion as tve  # noqa: E402

from affectlens.evals import recognition as rec  # noqa: E402
from affectlens.tools import voice_emotion as ve  # noqa: E402


def loso_voice(grid: list[float]) -> dict[str, dict[str, float]]:
    """utterance id -> the voice model's probabilities, from a fit without that speaker."""
    every = tve.emodb()  # boredom too: the pipeline reads those utterances as well
    rows = [r for r in every if r["emotion"] != "boredom"]  # fitted as the shipped model
    names = sorted(rows[0]["x"])
    tve.NAMES[:] = names
    models = tve.loso_models(
        tve.matrix(rows, names),
        np.array([r["emotion"] for r in rows], dtype=object),
        np.array([r["speaker"] for r in rows]),
        np.array([r["gender"] for r in rows]),
        ve.load_model()["norm"],
        grid,
    )
    out: dict[str, dict[str, float]] = {}
    for s, model in models.items():
        model["trained_on"] = f"EmoDB without speaker {s}"
        print(f"  voice without speaker {s}: C={model['C']}", file=sys.stderr)
        for r in every:
            if r["speaker"] == s:
                out[Path(r["file"]).stem] = ve.score(r["x"], model=model).vote.probs
    return out


def report(title: str, fig: dict) -> None:
    recall = ", ".join(f"{k} {v:.2f}" for k, v in fig["per_class_recall"].items())
    print(
        f"{title:34s} n={fig['n']}  UAR {rec.fmt(fig['uar'])}  accuracy "
        f"{rec.fmt(fig['accuracy'])}  macro-F1 {rec.fmt(fig['macro_f1'])}  "
        f"ECE {rec.fmt(fig['ece'])}"
    )
    print(f"{'':34s} recall: {recall}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, help="the first N utterances (a smoke run)")
    ap.add_argument("--grid", default="0.1,0.3,1", help="C values for the inner LOSO")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    items = rec.collect(
        "emodb-audio", limit=args.limit, progress=lambda m: print(m, file=sys.stderr)
    )
    voice = loso_voice([float(g) for g in args.grid.split(",")])

    gold: list[str] = []
    preds: dict[str, list[str | None]] = {"voice": [], "words": []}
    confs: dict[str, list[float]] = {k: [] for k in preds}
    for it in items:
        if it.label is None:  # boredom
            continue
        gold.append(it.label)
        for name, probs in (
            ("voice", voice.get(it.id) if "voice" in it.votes else None),
            ("words", it.votes["speech"].probs if "speech" in it.votes else None),
        ):
            preds[name].append(rec.top(probs) if probs else None)
            confs[name].append(max(probs.values()) if probs else 0.0)
    figs = {k: rec.scores(gold, preds[k], confidence=confs[k]) for k in preds}
    print(f"EmoDB, {len(gold)} utterances (boredom left out), every witness held out:")
    report("voice alone (LOSO refit)", figs["voice"])
    report("words alone (MELD head)", figs["words"])
    neutral = sum(p == "neutral" for p in preds["words"])
    print(f"the words read 'neutral' on {neutral} of {len(gold)}")
    print(
        "the fused label: scripts/fit_recognition.py, row emodb-audio (pool refitted per speaker)"
    )
    if args.json:
        args.json.write_text(json.dumps(rec.jsonable(figs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
