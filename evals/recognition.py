"""Witness-level recognition: each modality's vote per item of the shared sets, cached, and
scored with the measures the field uses (UAR, per-class recall, accuracy, macro-F1, confusion).

Why a separate path from ``evals.runner``: the full pipeline asks the LLM for every clip (tens of
seconds on a CPU), far too slow for whole corpora; the witnesses (face, voice, transcript votes)
are cheap, so they are scored on every item and the fusion is fitted and scored on them.

The speaker-independent guard lives here too: anything fitted (face calibration, fusion weights,
confidence calibration) records the ids and speakers it was fitted on (``FittedOn``), and
``guard`` refuses to score a fitted file on them. Items of training speakers are scored by
``held_out``: the fit is redone without that speaker's rows (leave-one-speaker-out), so every
figure this module prints is on rows the fitted parameters never saw.

Votes are cached per set in ``eval-results/votes/<set>.jsonl`` (gitignored), keyed by item id;
``--refresh`` recomputes them.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field

from affectlens.agent.fusion import FittedOn
from affectlens.evals import metrics
from affectlens.evals.datasets import Dataset, Sample, load_dataset, load_emer, load_meld
from affectlens.evals.runner import _jsonable as jsonable  # noqa: F401 - NaN-safe JSON for reports
from affectlens.tools.evidence import BASIC_EMOTIONS, EmotionVote

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "evals" / "datasets"
SHARED = ROOT / ".." / "shared" / "data"
CACHE = ROOT / "eval-results" / "votes"
# The shared sets, by name: a manifest folder, or (MELD) the label CSV read in place.
SETS: dict[str, Path] = {
    "london-faces": DATASETS / "london-faces",
    "pyfeat-faces": DATASETS / "pyfeat-faces",
    "cremad-face": DATASETS / "cremad-face",
    "cremad-av": DATASETS / "cremad-av",
    "cremad-audio": DATASETS / "cremad-audio",
    "emodb": DATASETS / "emodb",
    # The same utterances as the pipeline reads them, voice and words (scripts/emodb_heldout.py).
    "emodb-audio": DATASETS / "emodb",
    "meld-text": SHARED / "meld" / "test_sent_emo.csv",
    # EMER's 98 in-the-wild MER2023 TV clips (Mandarin dialogue, English subtitles): the only
    # shared gold on real, non-acted clips; text only (academic licence: read in place).
    "emer-text": SHARED / "emer" / "emer_v1_gt_eng.csv",
}
# Sets scored from their subtitle alone (the utterance as the ASR would give it).
TEXT_SETS: dict[str, Callable[[Path], Dataset]] = {"meld-text": load_meld, "emer-text": load_emer}
# Which witnesses a set is scored with (the votes its gold labels are about).
WITNESSES: dict[str, tuple[str, ...]] = {
    "london-faces": ("face",),
    "pyfeat-faces": ("face",),
    "cremad-face": ("face",),
    # The acted corpora speak a dozen fixed, lexically neutral sentences: their words carry no
    # emotion by design, so fitting the transcript's weight on them would teach the fusion to
    # ignore words everywhere. The transcript is scored on MELD's real dialogue instead.
    "cremad-av": ("face", "voice"),
    "cremad-audio": ("voice",),
    "emodb": ("voice",),
    "emodb-audio": ("voice", "speech"),  # in the pool fit with held-out voice votes (v5)
    "meld-text": ("speech",),
    "emer-text": ("speech",),
}


class SpeakerLeak(ValueError):
    """A fitted file was asked to score a speaker or row it was fitted on."""


def guard(fitted: FittedOn, items: Iterable[Any], *, skip: bool = False) -> list[Any]:
    """Items (with ``id`` and ``speaker``) the fitted file may score. A seen one raises
    ``SpeakerLeak`` (``skip=False``) or is left out (``skip=True``)."""
    out = []
    for item in items:
        if fitted.seen(item.id, getattr(item, "speaker", None)):
            if not skip:
                raise SpeakerLeak(
                    f"{item.id} (speaker {item.speaker}) is in the fitted file's "
                    "training data: score it with held_out(), not the shipped fit"
                )
            continue
        out.append(item)
    return out


class Item(BaseModel):
    """One scored item: gold and the raw votes of each witness (uncalibrated face probabilities
    are kept, so the calibration can be refitted without re-running the models)."""

    id: str
    dataset: str
    speaker: str | None = None
    gold: list[str]
    votes: dict[str, EmotionVote] = Field(default_factory=dict, description="modality -> vote")
    raw: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="modality -> uncalibrated probabilities"
    )
    seconds: float = 0.0

    @property
    def label(self) -> str | None:
        """The basic gold (first label), None when it is not one of the 7 (EmoDB boredom)."""
        g = metrics.basic_of(self.gold[0]) if self.gold else None
        return g if g in BASIC_EMOTIONS and self.gold[0] != "boredom" else None


def load_set(name: str) -> Dataset:
    path = SETS[name]
    return TEXT_SETS[name](path) if name in TEXT_SETS else load_dataset(path)


def _speaker(name: str, sample: Sample) -> str | None:
    if sample.meta.get("speaker"):
        return str(sample.meta["speaker"])
    if name == "meld-text":
        return None  # MELD test is never fitted on (train/dev are)
    return f"{name}-{sample.id}"  # unknown speaker: the item is its own group


# witnesses -----------------------------------------------------------------------------------
def available_witnesses() -> set[str]:
    """The modalities whose evidence carries a ``vote`` in this checkout (the face always; the
    voice and transcript once their scorers are merged)."""
    from affectlens.tools.evidence import ToneEvidence

    out = {"face", "speech"}  # the transcript's vote: affectlens.agent.text_emotion
    if "vote" in ToneEvidence.model_fields:
        out.add("voice")
    return out


def _witness_votes(sample: Sample, name: str, settings) -> tuple[dict, dict]:
    """Run the cheap tools on one sample; every evidence's ``vote`` (when its tool gives one)."""
    from affectlens.tools.media import load

    votes: dict[str, EmotionVote] = {}
    raw: dict[str, dict[str, float]] = {}
    wanted = set(WITNESSES[name]) & available_witnesses()
    if name in TEXT_SETS and sample.subtitle:  # the utterance as the ASR would give it
        from affectlens.agent.text_emotion import text_emotion
        from affectlens.tools.evidence import Segment, SpeechEvidence

        said = sample.subtitle.replace("\x92", "'").replace("\x85", "...")
        te = text_emotion(
            SpeechEvidence(
                language="en",
                language_probability=1.0,
                segments=[Segment(start=0.0, end=1.0, text=said)],
            ),
            settings,
            max_segments=0,
        )
        return ({"speech": te.clip} if te else {}), raw
    if not wanted or sample.clip is None or not sample.clip.exists():
        return votes, raw
    media = load(sample.clip, settings)
    if "face" in wanted and media.frames:
        from affectlens.tools.face import analyze_face

        ev = analyze_face(media, settings)
        if ev.status == "ok" and ev.expression_mean:
            raw["face"] = dict(ev.expression_mean)
            if ev.vote is not None:  # refitting recalibrates raw["face"], keeps its reliability
                votes["face"] = ev.vote
    if "voice" in wanted and media.audio is not None and media.audio.size:
        from affectlens.tools.tone import analyze_tone

        tone = analyze_tone(media, settings)
        if (vote := getattr(tone, "vote", None)) is not None:
            votes["voice"] = vote
    if "speech" in wanted and media.audio is not None and media.audio.size:
        from affectlens.agent.text_emotion import text_emotion
        from affectlens.tools.asr import transcribe

        te = text_emotion(transcribe(media, settings), settings, max_segments=0)
        if te is not None:
            votes["speech"] = te.clip
    return votes, raw


def collect(
    name: str,
    settings=None,
    *,
    refresh: bool = False,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Item]:
    """Votes for every item of a set, from the cache when there (``refresh`` recomputes)."""
    from affectlens.settings import Settings

    settings = settings or Settings(face_backend="mediapipe")
    data = load_set(name).head(limit)
    cache = CACHE / f"{name}.jsonl"
    cached: dict[str, Item] = {}
    if cache.is_file() and not refresh:
        for line in cache.read_text().splitlines():
            if line.strip():
                it = Item.model_validate_json(line)
                cached[it.id] = it
    items, fresh = [], []
    for i, s in enumerate(data.samples, 1):
        if s.id in cached:  # the votes are cached; gold and speaker always come from the set
            items.append(
                cached[s.id].model_copy(update={"gold": s.labels, "speaker": _speaker(name, s)})
            )
            continue
        if progress:
            progress(f"[{name} {i}/{len(data.samples)}] {s.id}")
        t0 = time.perf_counter()
        try:
            votes, raw = _witness_votes(s, name, settings)
        except Exception as exc:  # noqa: BLE001 - an undecodable item is recorded without votes
            votes, raw = {}, {}
            if progress:
                progress(f"  {type(exc).__name__}: {exc}")
        it = Item(
            id=s.id,
            dataset=name,
            speaker=_speaker(name, s),
            gold=s.labels,
            votes=votes,
            raw=raw,
            seconds=round(time.perf_counter() - t0, 3),
        )
        items.append(it)
        fresh.append(it)
    if fresh:
        cache.parent.mkdir(parents=True, exist_ok=True)
        keep = {it.id: it for it in [*cached.values(), *fresh]}
        cache.write_text("".join(it.model_dump_json() + "\n" for it in keep.values()))
    return items


# cross-fitting -------------------------------------------------------------------------------
P = TypeVar("P")


def held_out(
    rows: Sequence[Item],
    fit: Callable[[list[Item]], P],
    predict: Callable[[P, Item], Any],
    *,
    shipped: P | None = None,
    fitted_on: FittedOn | None = None,
) -> list[Any]:
    """A prediction for every row from parameters that never saw the row's speaker.

    Rows of a training speaker (``fitted_on``; all rows when it is None) get ``fit`` redone on
    the other speakers' rows (leave-one-speaker-out; one refit per speaker); the other rows get
    ``shipped`` (refused by ``guard`` otherwise)."""
    by_speaker: dict[str | None, P] = {}
    out = []
    for row in rows:
        unseen = fitted_on is not None and not fitted_on.seen(row.id, row.speaker)
        if shipped is not None and unseen:
            out.append(predict(shipped, row))
            continue
        if row.speaker not in by_speaker:
            by_speaker[row.speaker] = fit([r for r in rows if r.speaker != row.speaker])
        out.append(predict(by_speaker[row.speaker], row))
    return out


# scores --------------------------------------------------------------------------------------
def top(probs: dict[str, float]) -> str | None:
    return max(probs, key=probs.__getitem__) if probs else None


def scores(
    gold: Sequence[str],
    pred: Sequence[str | None],
    *,
    resamples: int = 1000,
    seed: int = 0,
    confidence: Sequence[float] | None = None,
) -> dict[str, Any]:
    """UAR, accuracy and macro-F1 with seeded bootstrap 95% intervals, per-class recall, the
    confusion matrix over the 7 basic emotions, and ECE when confidences are given."""
    labels = [c for c in BASIC_EMOTIONS if c in set(gold)]
    g, p = list(gold), list(pred)

    def ci(stat):
        return metrics.bootstrap_ci(
            len(g),
            lambda idx: stat([g[i] for i in idx], [p[i] for i in idx]),
            resamples=resamples,
            seed=seed,
        )

    out: dict[str, Any] = {
        "n": len(g),
        "uar": ci(lambda a, b: metrics.uar(a, b, labels)),
        "accuracy": ci(metrics.accuracy),
        "macro_f1": ci(lambda a, b: metrics.macro_f1(a, b, labels)),
        "per_class_recall": metrics.per_class_recall(g, p, labels),
        "confusion": {
            "labels": list(BASIC_EMOTIONS),
            "matrix": metrics.confusion_matrix(g, p, BASIC_EMOTIONS),
        },
    }
    if confidence is not None:
        correct = [a == b for a, b in zip(g, p)]
        out["calibration"] = metrics.calibration(list(confidence), correct)
        out["ece"] = metrics.bootstrap_ci(
            len(g),
            lambda idx: metrics.calibration(
                [confidence[i] for i in idx], [correct[i] for i in idx]
            )["ece"],
            resamples=resamples,
            seed=seed,
        )
    return out


def fmt(fig: dict) -> str:
    v, lo, hi = fig.get("value"), fig.get("lo"), fig.get("hi")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]"


def main(argv: list[str] | None = None) -> int:
    """``python -m affectlens.evals.recognition [SET ...] [--refresh] [--limit N]``: the votes."""
    import argparse

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description="Collect witness votes on the shared sets.")
    # emodb-audio (whisper on 535 utterances) only when named: scripts/emodb_heldout.py does
    ap.add_argument(
        "sets", nargs="*", default=[s for s in SETS if s not in {*TEXT_SETS, "emodb-audio"}]
    )
    ap.add_argument("--refresh", action="store_true")
    ap.add_argument("--limit", type=int)
    args = ap.parse_args(argv)
    for name in args.sets:
        items = collect(
            name,
            refresh=args.refresh,
            limit=args.limit,
            progress=lambda m: print(m, file=sys.stderr),
        )
        with_votes = sum(bool(it.raw or it.votes) for it in items)
        print(json.dumps({"set": name, "items": len(items), "with_votes": with_votes}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
