"""Fit the face calibration, the fusion weights and the confidence calibration; print figures.

One command, deterministic (L-BFGS-B from fixed starts, seeded bootstrap)::

    HF_HUB_OFFLINE=1 python scripts/fit_recognition.py            # fit, print, write files
    HF_HUB_OFFLINE=1 python scripts/fit_recognition.py --dry-run  # print only

Steps (docs/models/face-calibration.md, docs/models/fusion.md):

1. votes of every witness on the shared sets (``affectlens.evals.recognition.collect``, cached);
2. face: a temperature on facex's clip-mean probabilities, pooled over the face sets; figures
   are leave-one-speaker-out (a person / an actor is never scored by a fit that saw them)
   -> ``tools/face_calibration.json``;
3. fusion: per-modality weights of the log-linear pool on the held-out calibrated votes,
   figures again leave-one-speaker-out -> ``agent/fusion.json``;

No class offsets in either (they were fitted until 2026-12-04): offsets learn the label mix of
the fitting rows (half the London faces smile), which clips in the wild do not share. Held out,
they bought nothing (face UAR identical on all three face sets with and without them) and they
turned the bundled sample's crying face (facex: sadness 0.51, happiness 0.20) into happiness.
4. confidence: Platt scaling of the fused top probability on the held-out fused outputs; ECE
   reported leave-one-speaker-out.
5. transcript: the weight of the words (``speech``) in the same pool, fitted on EMER's 98
   in-the-wild TV clips (their subtitles and gold; no shared set has faces and real dialogue
   together, so the words' weight is the one at which their vote alone is calibrated on real
   clips), with the words' reliability scaled by 1 - p(neutral) (``NEUTRAL_DISCOUNT``);
   figures leave-one-clip-out, and on MELD test when its votes are cached.

All figures come with 95% percentile-bootstrap intervals (1000 resamples, seed 0) and are
written to ``eval-results/recognition.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from affectlens.agent import fusion  # noqa: E402
from affectlens.evals import recognition as R  # noqa: E402
from affectlens.evals.report import plot_calibration, plot_confusion  # noqa: E402
from affectlens.tools.evidence import BASIC_EMOTIONS, EmotionVote  # noqa: E402
from affectlens.tools.face import CALIBRATION_FILE, FaceCalibration  # noqa: E402

FACE_SETS = ("london-faces", "pyfeat-faces", "cremad-face")
# EmoDB is not here: the shipped voice model (tools/voice_emotion.json) was fitted on all of it,
# so its EmoDB votes are in-sample and would overstate the voice. The voice weight is fitted on
# CREMA-D, a corpus the voice model never saw: the cross-corpus reliability a new clip meets.
FUSION_SETS = ("london-faces", "pyfeat-faces", "cremad-av", "cremad-audio")
# The words' weight: EMER (MER2023 TV clips, emotional by selection: no neutral gold) is the only
# shared gold on real clips; MELD test (never fitted on) is scored when its votes are cached.
TEXT_FIT_SET, TEXT_SCORE_SETS = "emer-text", ("emer-text", "meld-text")
# The words read as neutral step aside (agent/fusion.py: plain words are no evidence of a calm
# speaker); the words' weight is fitted with this discount on (v4).
NEUTRAL_DISCOUNT = ("speech",)
REPORT = ROOT / "eval-results" / "recognition.json"
FIT_VOTES = ROOT / "evals" / "datasets" / "witness-votes" / "face.jsonl"


def fit_face(rows: list[R.Item]) -> FaceCalibration:
    (w,), b = (lambda wb: (list(wb[0].values()), wb[1]))(
        fusion.fit_pool(
            [({"face": EmotionVote(probs=r.raw["face"])}, r.label) for r in rows],
            ["face"],
            offsets=False,
        )
    )
    return FaceCalibration(
        temperature=round(1 / max(w, 1e-3), 4),
        bias=b,
        fitted_on={
            "ids": sorted(r.id for r in rows),
            "speakers": sorted({r.speaker for r in rows}),
        },
        version="fit_recognition v2",
    )


def face_vote(cal: FaceCalibration, row: R.Item) -> EmotionVote:
    rel = row.votes["face"].reliability if "face" in row.votes else 1.0
    return EmotionVote(probs=cal.apply(row.raw["face"]), reliability=rel, model=cal.version)


def table(title: str, figures: dict[str, dict]) -> None:
    print(
        f"\n### {title}\n\n| set | n | UAR | accuracy | macro-F1 | ECE |\n|---|---|---|---|---|---|"
    )
    for name, f in figures.items():
        ece = R.fmt(f["ece"]) if "ece" in f else ""
        print(
            f"| {name} | {f['n']} | {R.fmt(f['uar'])} | {R.fmt(f['accuracy'])} | "
            f"{R.fmt(f['macro_f1'])} | {ece} |"
        )


def fit_text(rows: list[R.Item], say) -> tuple[float, dict[str, dict]]:
    """The transcript's pool weight (a temperature on its vote) fitted on ``rows``; its figures
    at w = 1 and at the weight, leave-one-clip-out on the fitting set (each clip is its own
    group), with the shipped weight on the other text sets."""

    def fit(train: list[R.Item]) -> float:
        w, _ = fusion.fit_pool(
            [({"speech": r.votes["speech"]}, r.label) for r in train],
            ["speech"],
            offsets=False,
            neutral_discount=NEUTRAL_DISCOUNT,
        )
        return w["speech"]

    def q_of(w: float, r: R.Item, discount: tuple[str, ...] = NEUTRAL_DISCOUNT) -> dict[str, float]:
        fused = fusion.pool({"speech": r.votes["speech"]}, {"speech": w}, {}, 1.0, discount)
        if fused is None:  # weight 0: the words say nothing
            return dict.fromkeys(BASIC_EMOTIONS, 1 / len(BASIC_EMOTIONS))
        return dict(zip(BASIC_EMOTIONS, map(float, fused[0])))

    shipped = fit(rows)
    figures: dict[str, dict] = {}
    for name in TEXT_SCORE_SETS:
        cached = R.CACHE / f"{name}.jsonl"
        if name != TEXT_FIT_SET and not cached.is_file():
            say(f"{name}: no cached votes ({cached}); not scored")
            continue
        rs = (
            rows
            if name == TEXT_FIT_SET
            else [r for r in R.collect(name, progress=say) if r.label and "speech" in r.votes]
        )
        for tag, qs in (
            ("w = 1", [q_of(1.0, r, ()) for r in rs]),  # its own calibration, no discount
            (
                "fitted",
                R.held_out(rs, fit, q_of)
                if name == TEXT_FIT_SET
                else [q_of(shipped, r) for r in rs],
            ),
        ):
            figures[f"{name}, {tag}"] = R.scores(
                [r.label for r in rs],
                [R.top(q) for q in qs],
                confidence=[max(q.values()) for q in qs],
            )
    return shipped, figures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print figures, write no model file")
    ap.add_argument("--refresh", action="store_true", help="recompute the cached votes")
    args = ap.parse_args(argv)
    say = lambda m: print(m, file=sys.stderr)  # noqa: E731
    sets = {
        n: R.collect(n, refresh=args.refresh, progress=say)
        for n in dict.fromkeys(FACE_SETS + FUSION_SETS)
    }
    report: dict = {"face": {}, "fusion": {}}

    # 2. face calibration ----------------------------------------------------------------------
    face_rows = [r for n in FACE_SETS for r in sets[n] if r.label and "face" in r.raw]
    shipped_face = fit_face(face_rows)
    held = dict(
        zip([r.id + r.dataset for r in face_rows], R.held_out(face_rows, fit_face, face_vote))
    )
    raw_fig, cal_fig = {}, {}
    for n in FACE_SETS:
        rows = [r for r in sets[n] if r.label and "face" in r.raw]
        gold = [r.label for r in rows]
        raw_fig[n] = R.scores(gold, [R.top(r.raw["face"]) for r in rows])
        votes = [held[r.id + r.dataset] for r in rows]
        cal_fig[n] = R.scores(gold, [R.top(v.probs) for v in votes])
        report["face"][n] = {
            "raw": raw_fig[n],
            "calibrated_held_out": cal_fig[n],
            "misses": [
                {"id": r.id, "gold": r.label, "pred": R.top(v.probs)}
                for r, v in zip(rows, votes)
                if R.top(v.probs) != r.label
            ],
        }
    table("Face: facex as it is (top class)", raw_fig)
    table("Face: calibrated, leave-one-speaker-out", cal_fig)
    print(
        f"\nshipped calibration: temperature {shipped_face.temperature}, bias {shipped_face.bias}"
    )

    # 3. fusion --------------------------------------------------------------------------------
    def votes_of(r: R.Item) -> dict[str, EmotionVote]:
        v = dict(r.votes)
        if "face" in r.raw and r.id + r.dataset in held:
            v["face"] = held[r.id + r.dataset]
        elif "face" in r.raw:  # a set the face calibration was not fitted on
            v["face"] = face_vote(shipped_face, r)
        return v

    rows = [r for n in FUSION_SETS for r in sets[n] if r.label and votes_of(r)]
    fused_votes = {r.id + r.dataset: votes_of(r) for r in rows}
    mods = sorted({m for v in fused_votes.values() for m in v})

    def fit_f(train: list[R.Item]) -> fusion.FusionParams:
        w, b = fusion.fit_pool(
            [(fused_votes[r.id + r.dataset], r.label) for r in train], mods, offsets=False
        )
        return fusion.FusionParams(weights=w, bias=b)

    def q_of(p: fusion.FusionParams, r: R.Item) -> dict[str, float]:
        q, _ = fusion.pool(fused_votes[r.id + r.dataset], p.weights, p.bias)
        return dict(zip(BASIC_EMOTIONS, map(float, q)))

    shipped = fit_f(rows)
    held_q = dict(zip([r.id + r.dataset for r in rows], R.held_out(rows, fit_f, q_of)))

    # 4. confidence ------------------------------------------------------------------------------
    tops = {k: max(q.values()) for k, q in held_q.items()}
    right = {r.id + r.dataset: R.top(held_q[r.id + r.dataset]) == r.label for r in rows}

    def fit_c(train):
        return fusion.fit_platt(
            [tops[r.id + r.dataset] for r in train], [right[r.id + r.dataset] for r in train]
        )

    conf = dict(
        zip(
            [r.id + r.dataset for r in rows],
            R.held_out(rows, fit_c, lambda ab, r: fusion.platt(tops[r.id + r.dataset], ab)),
        )
    )
    shipped.platt = fit_c(rows)
    fused_fig = {}
    for n in FUSION_SETS:
        rs = [r for r in rows if r.dataset == n]
        if not rs:
            continue
        keys = [r.id + r.dataset for r in rs]
        fused_fig[n] = R.scores(
            [r.label for r in rs],
            [R.top(held_q[k]) for k in keys],
            confidence=[conf[k] for k in keys],
        )
        fused_fig[n]["raw_top_ece"] = R.metrics.calibration(
            [tops[k] for k in keys], [right[k] for k in keys]
        )["ece"]
        report["fusion"][n] = fused_fig[n]
        REPORT.parent.mkdir(parents=True, exist_ok=True)  # reliability diagram + confusion
        plot_calibration(fused_fig[n]["calibration"], REPORT.parent / f"reliability-{n}.png")
        plot_confusion(fused_fig[n]["confusion"], REPORT.parent / f"confusion-{n}.png")
    table(f"Fusion of {', '.join(mods)} (leave-one-speaker-out), calibrated confidence", fused_fig)
    # 5. the words' weight ------------------------------------------------------------------------
    text_rows = [r for r in R.collect(TEXT_FIT_SET, progress=say) if r.label and r.votes]
    w_text, text_fig = fit_text(text_rows, say)
    report["speech"] = text_fig
    table("Transcript witness alone: as shipped before (w = 1) and at the fitted weight", text_fig)
    shipped.weights["speech"] = w_text
    shipped.neutral_discount = list(NEUTRAL_DISCOUNT)
    print(f"\ntranscript weight: {w_text} (fitted on {len(text_rows)} {TEXT_FIT_SET} clips)")
    rows += text_rows
    shipped.fitted_on = fusion.FittedOn(
        ids=sorted(r.id for r in rows), speakers=sorted({r.speaker for r in rows})
    )
    shipped.version = "fit_recognition v4"  # v3: the words' weight (EMER); v4: its discount
    print(
        f"\nshipped fusion: weights {shipped.weights}, bias {shipped.bias}, "
        f"Platt (a, b) {shipped.platt}"
    )
    report["shipped"] = {
        "face": shipped_face.model_dump(exclude={"fitted_on"}),
        "fusion": shipped.model_dump(exclude={"fitted_on"}),
    }
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(R.jsonable(report), indent=1))
    if not args.dry_run:
        CALIBRATION_FILE.write_text(shipped_face.model_dump_json(indent=1) + "\n")
        FIT_VOTES.parent.mkdir(parents=True, exist_ok=True)  # what the calibration saw
        FIT_VOTES.write_text(
            "".join(
                r.model_dump_json(include={"id", "dataset", "speaker", "gold", "raw"}) + "\n"
                for r in face_rows
            )
        )
        fusion.save_params(shipped)
        print(
            f"\nwrote {CALIBRATION_FILE.relative_to(ROOT)}, "
            f"{fusion.PARAMS_FILE.relative_to(ROOT)}, {REPORT.relative_to(ROOT)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
