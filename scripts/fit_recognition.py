"""Fit the face calibration, the fusion weights and the confidence calibration; print figures.

One command, deterministic (L-BFGS-B from fixed starts, seeded bootstrap)::

    HF_HUB_OFFLINE=1 python scripts/fit_recognition.py            # fit, print, write files
    HF_HUB_OFFLINE=1 python scripts/fit_recognition.py --dry-run  # print only

Steps (docs/models/face-calibration.md, docs/models/fusion.md):

1. votes of every witness on the shared sets (``affectlens.evals.recognition.collect``, cached);
2. face: a temperature on facex's clip-mean probabilities, pooled over the face sets; figures
   are leave-one-speaker-out (a person / an actor is never scored by a fit that saw them)
   -> ``tools/face_calibration.json``;
3. fusion: per-modality weights of the log-linear pool (face, voice, words) in one fit on every
   shared set with honest votes: the held-out calibrated face votes; the voice on CREMA-D (a
   corpus it never heard) and on EmoDB from the model refitted without the utterance's speaker
   (``emodb_heldout.loso_voice``); the words on EmoDB (whisper + the MELD head) and on EMER's
   in-the-wild TV subtitles. Each corpus weighs the same in the fit (``CORPUS``): EmoDB's 454
   utterances would otherwise set the voice's weight alone, in-corpus, where it is far more
   reliable than on a corpus it never heard (CREMA-D). The words' reliability is scaled by
   1 - p(neutral) (``NEUTRAL_DISCOUNT``). Figures leave-one-speaker-out (EMER: each clip its
   own group) -> ``agent/fusion.json``;
4. confidence: Platt scaling of the fused top probability on the held-out fused outputs, the
   corpora weighted as in 3; ECE reported leave-one-speaker-out.

No class offsets in either (they were fitted until 2026-12-04): offsets learn the label mix of
the fitting rows (half the London faces smile), which clips in the wild do not share. Held out,
they bought nothing (face UAR identical on all three face sets with and without them) and they
turned the bundled sample's crying face (facex: sadness 0.51, happiness 0.20) into happiness.

v5 (2026-12-05) fits the three weights together; v3/v4 fitted face and voice on the face sets
and CREMA-D only, and the words' weight on EMER alone, which left the voice at 0.15 and EmoDB's
held-out fused UAR at 0.454 (docs/evaluation.md).

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

sys.path.insert(0, str(ROOT / "scripts"))

from affectlens.agent import fusion  # noqa: E402
from affectlens.evals import recognition as R  # noqa: E402
from affectlens.evals.report import plot_calibration, plot_confusion  # noqa: E402
from affectlens.tools.evidence import BASIC_EMOTIONS, EmotionVote  # noqa: E402
from affectlens.tools.face import CALIBRATION_FILE, FaceCalibration  # noqa: E402

FACE_SETS = ("london-faces", "pyfeat-faces", "cremad-face")
# Every set with honest votes for the pool (docs/models/fusion.md). The voice on EmoDB is the
# model refitted without each utterance's speaker (the shipped one heard all ten); EMER (MER2023
# TV clips, the only shared gold on real dialogue) gives the words; MELD test is only scored.
FUSION_SETS = (
    "london-faces",
    "pyfeat-faces",
    "cremad-av",
    "cremad-audio",
    "emodb-audio",
    "emer-text",
)
# The corpus a set comes from: each corpus weighs the same in the fit and the Platt map.
CORPUS = {"cremad-av": "cremad", "cremad-audio": "cremad"}
TEXT_SCORE_SET = "meld-text"
# The words read as neutral step aside (agent/fusion.py: plain words are no evidence of a calm
# speaker); the weights are fitted with this discount on (since v4).
NEUTRAL_DISCOUNT = ("speech",)
LOSO_VOICE = "voice-emotion LR/eGeMAPS refitted without speaker"
VERSION = "fit_recognition v5"  # v3: the words' weight; v4: its discount; v5: one joint fit
REPORT = ROOT / "eval-results" / "recognition.json"
FIT_VOTES = ROOT / "evals" / "datasets" / "witness-votes" / "face.jsonl"
# The pool's fitting votes as the fit saw them, less EMER's (academic licence: not copied here;
# collect them with `python -m affectlens.evals.recognition emer-text`).
POOL_VOTES = FIT_VOTES.with_name("fusion.jsonl")
NOT_SHIPPED = ("emer-text",)


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


def corpus_weights(rows: list[R.Item]) -> list[float]:
    """Row weights giving each corpus (``CORPUS``) the same total in the fit."""
    count: dict[str, int] = {}
    for r in rows:
        c = CORPUS.get(r.dataset, r.dataset)
        count[c] = count.get(c, 0) + 1
    return [1.0 / count[CORPUS.get(r.dataset, r.dataset)] for r in rows]


def fit_weights(
    rows: list[R.Item], votes: dict[str, dict[str, EmotionVote]], mods: list[str]
) -> fusion.FusionParams:
    """The pool's weights on ``rows`` (``votes`` keyed by ``key``), corpora weighted equally."""
    w, b = fusion.fit_pool(
        [(votes[key(r)], r.label) for r in rows],
        mods,
        offsets=False,
        neutral_discount=NEUTRAL_DISCOUNT,
        sample_weight=corpus_weights(rows),
    )
    return fusion.FusionParams(weights=w, bias=b, neutral_discount=list(NEUTRAL_DISCOUNT))


def key(r: R.Item) -> str:
    return f"{r.dataset}/{r.id}"


def emodb_votes(rows: list[R.Item], say) -> dict[str, dict[str, EmotionVote]]:
    """EmoDB's votes with the voice of the model refitted without each utterance's speaker (the
    clip's own reliability kept)."""
    from emodb_heldout import loso_voice

    say("EmoDB: the voice model refitted without each speaker")
    held = loso_voice([0.1, 0.3, 1.0])
    out = {}
    for r in rows:
        v = dict(r.votes)
        if "voice" in v:
            v["voice"] = v["voice"].model_copy(
                update={"probs": held[r.id], "model": f"{LOSO_VOICE} {r.speaker}"}
            )
        out[key(r)] = v
    return out


def leave_corpus_out(rows: list[R.Item], fit_f, q_of) -> None:
    """Each corpus scored by the pool fitted without all of it: how the weights carry to a
    corpus they never saw (top-probability ECE; no Platt map)."""
    figures = {}
    for corpus in dict.fromkeys(CORPUS.get(r.dataset, r.dataset) for r in rows):
        params = fit_f([r for r in rows if CORPUS.get(r.dataset, r.dataset) != corpus])
        for n in dict.fromkeys(
            r.dataset for r in rows if CORPUS.get(r.dataset, r.dataset) == corpus
        ):
            rs = [r for r in rows if r.dataset == n]
            qs = [q_of(params, r) for r in rs]
            name = f"{n} (w {', '.join(f'{m} {w:.2f}' for m, w in params.weights.items())})"
            figures[name] = R.scores(
                [r.label for r in rs],
                [R.top(q) for q in qs],
                confidence=[max(q.values()) for q in qs],
            )
    table("Leave-one-corpus-out (the pool fitted without the whole corpus)", figures)


def load_pool_votes(path: Path = POOL_VOTES) -> tuple[list[R.Item], dict]:
    """The shipped fitting rows and their votes (``POOL_VOTES``)."""
    rows = [R.Item.model_validate_json(line) for line in path.read_text().splitlines()]
    return rows, {key(r): dict(r.votes) for r in rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="print figures, write no model file")
    ap.add_argument("--refresh", action="store_true", help="recompute the cached votes")
    ap.add_argument(
        "--leave-corpus-out",
        action="store_true",
        help="also print each corpus scored by a pool fitted without that whole corpus",
    )
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

    rows = [r for n in FUSION_SETS for r in sets[n] if r.label and r.votes]
    fused_votes = {key(r): votes_of(r) for r in rows}
    fused_votes.update(emodb_votes([r for r in rows if r.dataset == "emodb-audio"], say))
    mods = sorted({m for v in fused_votes.values() for m in v})

    def fit_f(train: list[R.Item]) -> fusion.FusionParams:
        return fit_weights(train, fused_votes, mods)

    def q_of(p: fusion.FusionParams, r: R.Item) -> dict[str, float]:
        q, _ = fusion.pool(fused_votes[key(r)], p.weights, p.bias, 1.0, p.neutral_discount)
        return dict(zip(BASIC_EMOTIONS, map(float, q)))

    say(f"fusion: {len(rows)} rows, one refit per held-out speaker")
    shipped = fit_f(rows)
    held_q = dict(zip(map(key, rows), R.held_out(rows, fit_f, q_of)))

    # 4. confidence ------------------------------------------------------------------------------
    tops = {k: max(q.values()) for k, q in held_q.items()}
    right = {key(r): R.top(held_q[key(r)]) == r.label for r in rows}

    def fit_c(train):
        return fusion.fit_platt(
            [tops[key(r)] for r in train], [right[key(r)] for r in train], corpus_weights(train)
        )

    conf = dict(
        zip(
            map(key, rows),
            R.held_out(rows, fit_c, lambda ab, r: fusion.platt(tops[key(r)], ab)),
        )
    )
    shipped.platt = fit_c(rows)
    fused_fig = {}
    for n in FUSION_SETS:
        rs = [r for r in rows if r.dataset == n]
        if not rs:
            continue
        keys = [key(r) for r in rs]
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
    # MELD test (never fitted on): the words alone at the shipped weight, when its votes are cached
    meld = R.CACHE / f"{TEXT_SCORE_SET}.jsonl"
    if meld.is_file():
        rs = [r for r in R.collect(TEXT_SCORE_SET) if r.label and "speech" in r.votes]
        qs = [q_of(shipped, r) for r in rs]
        fused_fig[TEXT_SCORE_SET] = report["fusion"][TEXT_SCORE_SET] = R.scores(
            [r.label for r in rs],
            [R.top(q) for q in qs],
            confidence=[fusion.platt(max(q.values()), shipped.platt) for q in qs],
        )
    table(f"Fusion of {', '.join(mods)} (leave-one-speaker-out), calibrated confidence", fused_fig)
    if args.leave_corpus_out:
        leave_corpus_out(rows, fit_f, q_of)
    shipped.fitted_on = fusion.FittedOn(
        ids=sorted(r.id for r in rows), speakers=sorted({r.speaker for r in rows})
    )
    shipped.version = VERSION
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
        POOL_VOTES.write_text(
            "".join(
                r.model_copy(update={"votes": fused_votes[key(r)], "raw": {}}).model_dump_json(
                    include={"id", "dataset", "speaker", "gold", "votes"}
                )
                + "\n"
                for r in rows
                if r.dataset not in NOT_SHIPPED
            )
        )
        fusion.save_params(shipped)
        print(
            f"\nwrote {CALIBRATION_FILE.relative_to(ROOT)}, {POOL_VOTES.relative_to(ROOT)}, "
            f"{fusion.PARAMS_FILE.relative_to(ROOT)}, {REPORT.relative_to(ROOT)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
