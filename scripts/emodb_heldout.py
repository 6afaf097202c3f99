"""The pipeline's label on EmoDB's held-out speakers, audio only, without the LLM.

    python scripts/emodb_heldout.py        # ~15-25 min the first time on 2 cores, seconds after

With ``decision = "fusion"`` (the default) a clip is stored under the fused witnesses' top
emotion, so the issue's "EmoDB audio-only UAR on held-out speakers" is the fused label's UAR
when every witness is held out. Per utterance:

- **voice**: the shipped scorer's recipe (``scripts/train_voice_emotion.py``: eGeMAPS of the
  speech span, the shipped normalisation, C chosen by an inner leave-one-speaker-out) refitted
  without the utterance's speaker (the shipped model heard all ten); the reliability is the
  one the voice tool gave the clip;
- **words**: whisper's transcript read by the text-emotion witness (fitted on MELD, never on
  EmoDB), collected and cached by ``evals.recognition`` as set ``emodb-audio``;
- **fused**: the shipped pool (``agent/fusion.json``; ``guard`` checks it saw no EmoDB row)
  and its calibrated confidence.

Prints UAR, accuracy and macro-F1 with bootstrap 95 % intervals, per-class recall and the ECE
of the stored confidence for each of the three; boredom is left out of the 7-class scores.
A fourth line fuses without the words' neutral discount (``agent/fusion.py``), as the pool
did before fit_recognition v4: there the words' "neutral" outvotes the voice.
Writes nothing in the repo (the votes go to the gitignored ``eval-results/votes/``).
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

from affectlens.agent import fusion  # noqa: E402
from affectlens.evals import recognition as rec  # noqa: E402
from affectlens.tools import voice_emotion as ve  # noqa: E402
from affectlens.tools.evidence import EmotionVote  # noqa: E402


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

    params = fusion.load_params()
    undiscounted = params.model_copy(update={"neutral_discount": []})  # as fused before v4
    items = rec.collect(
        "emodb-audio", limit=args.limit, progress=lambda m: print(m, file=sys.stderr)
    )
    rec.guard(params.fitted_on, items)  # raises SpeakerLeak if the pool saw an EmoDB row
    voice = loso_voice([float(g) for g in args.grid.split(",")])

    gold: list[str] = []
    preds: dict[str, list[str | None]] = {
        k: [] for k in ("voice", "words", "fused", "undiscounted")
    }
    confs: dict[str, list[float]] = {k: [] for k in preds}
    neutral_words = 0
    for it in items:
        if it.label is None:  # boredom
            continue
        votes: dict[str, EmotionVote] = {}
        if "voice" in it.votes:  # the clip's reliability, the held-out model's probabilities
            votes["voice"] = it.votes["voice"].model_copy(update={"probs": voice[it.id]})
        if "speech" in it.votes:
            votes["speech"] = it.votes["speech"]
        gold.append(it.label)
        for key, only in (("voice", "voice"), ("words", "speech"), ("fused", None)):
            use = votes if only is None else {m: v for m, v in votes.items() if m == only}
            read = fusion.fuse(use, params) if use else None
            preds[key].append(read.top if read else None)
            confs[key].append(read.confidence if read else 0.0)
        neutral_words += preds["words"][-1] == "neutral"
        read = fusion.fuse(votes, undiscounted) if votes else None
        preds["undiscounted"].append(read.top if read else None)
        confs["undiscounted"].append(read.confidence if read else 0.0)
    figs = {k: rec.scores(gold, preds[k], confidence=confs[k]) for k in preds}
    print(f"EmoDB, {len(gold)} utterances (boredom left out), every witness held out:")
    for key, title in (
        ("voice", "voice alone (LOSO refit)"),
        ("words", "words alone (MELD head)"),
        ("fused", "fused = the stored label"),
        ("undiscounted", "fused, words not discounted (v3)"),
    ):
        report(title, figs[key])
    print(f"the words read 'neutral' on {neutral_words} of {len(gold)}")
    if args.json:
        args.json.write_text(json.dumps(rec.jsonable(figs), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
