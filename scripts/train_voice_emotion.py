"""Fit and evaluate the voice emotion scorer (tools/voice_emotion.py) in one seeded command.

    python scripts/train_voice_emotion.py            # figures + writes tools/voice_emotion.json
    python scripts/train_voice_emotion.py --no-write # figures only

Data: ../shared/data/emodb (CC0, 535 utterances, 10 speakers) for fitting and the
leave-one-speaker-out (LOSO) figures; ../shared/data/cremad (12 clips, 2 speakers) as an
unseen corpus, scored against the crowd's voice-only votes. Features (eGeMAPSv02 functionals
of the Silero-VAD speech span, exactly as tools/tone.py measures a clip) are cached in the user
cache folder's voice_emotion/ (~/.cache/affectlens/voice_emotion/ on Linux, or under
$XDG_CACHE_HOME) so reruns take seconds.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from affectlens.settings import user_cache_dir  # noqa: E402
from affectlens.tools import voice_emotion as ve  # noqa: E402
from affectlens.tools.tone import speech_span  # noqa: E402

DATA = (REPO / ".." / "shared" / "data").resolve()
CACHE = user_cache_dir() / "voice_emotion"
SEED = 0
CHECK_SPEAKER = "03"
NAMES: list[str] = []  # feature order, set once the data is read
EMODB_MAP = {
    "angry": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happiness",
    "sad": "sadness",
    "neutral": "neutral",
    "boredom": "boredom",
}
CREMA_VOTE = {
    "A": "anger",
    "D": "disgust",
    "F": "fear",
    "H": "happiness",
    "N": "neutral",
    "S": "sadness",
}


def decode(path: Path) -> np.ndarray:
    raw = subprocess.run(
        [
            "ffmpeg",
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            "-ac",
            "1",
            "-ar",
            str(ve.SR),
            "-f",
            "f32le",
            "-",
        ],
        check=True,
        capture_output=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.float32).copy()


def features(path: Path) -> dict[str, float]:
    """Functionals of the speech span, cached by the file's content hash."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    cached = CACHE / f"{digest}.json"
    if cached.exists():
        return json.loads(cached.read_text())
    audio = decode(path)
    span = speech_span(audio)
    speech = audio[span[0] : span[1]] if span else audio
    feats = ve.functionals(speech)
    CACHE.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps(feats))
    return feats


def emodb() -> list[dict]:
    rows = list(csv.DictReader(open(DATA / "emodb" / "labels.csv")))
    for r in rows:
        r["emotion"] = EMODB_MAP[r["label"]]
        r["x"] = features(DATA / "emodb" / r["file"])
    return rows


def cremad() -> list[dict]:
    rows = list(csv.DictReader(open(DATA / "cremad" / "labels.csv")))
    for r in rows:
        r["x"] = features(DATA / "cremad" / r["file"])
    return rows


# fitting ---------------------------------------------------------------------------------------
def matrix(rows: list[dict], names: list[str]) -> np.ndarray:
    return np.array([[r["x"][n] for n in names] for r in rows], dtype=float)


def fit(
    X: np.ndarray, y: list[str], groups: np.ndarray, c: float, norm: str, names: list[str]
) -> dict:
    """One model as the JSON ve.VoiceEmotionModel reads (normalisation + LR coefficients)."""
    from sklearn.linear_model import LogisticRegression

    model = {"norm": norm, "features": names, **ve.norm_stats(X, groups, norm, names)}
    Z = ve.normalise(X, model)
    lr = LogisticRegression(C=c, max_iter=5000, random_state=SEED)
    lr.fit(Z, y)
    return {
        **model,
        "classes": list(lr.classes_),
        "coef": lr.coef_.tolist(),
        "intercept": lr.intercept_.tolist(),
        "C": c,
    }


def uar(y_true, y_pred, classes) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean([np.mean(y_pred[y_true == k] == k) for k in classes]))


def bootstrap(y_true, y_pred, classes, n: int = 1000) -> tuple[float, float]:
    rng = np.random.default_rng(SEED)
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    vals = []
    for _ in range(n):
        i = rng.integers(0, len(y_true), len(y_true))
        vals.append(uar(y_true[i], y_pred[i], [k for k in classes if k in set(y_true[i])]))
    return float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))


def predict(model: dict, X: np.ndarray) -> list[str]:
    return [model["classes"][i] for i in ve.logits(X, model).argmax(1)]


def choose_c(X, y, spk, gender, norm, grid) -> float:
    """Inner leave-one-speaker-out on the training speakers only (nested)."""
    best, best_c = -1.0, grid[0]
    for c in grid:
        pred = np.empty(len(y), dtype=object)
        for s in np.unique(spk):
            tr, te = spk != s, spk == s
            m = fit(X[tr], list(y[tr]), gender[tr], c, norm, NAMES)
            pred[te] = predict(m, X[te])
        score = uar(y, pred, sorted(set(y)))
        if score > best:
            best, best_c = score, c
    return best_c


def loso_models(X, y, spk, gender, norm, grid, nested=True) -> dict[str, dict]:
    """Speaker -> the model fitted without that speaker (C by an inner LOSO when nested)."""
    models = {}
    for s in np.unique(spk):
        tr = spk != s
        c = choose_c(X[tr], y[tr], spk[tr], gender[tr], norm, grid) if nested else grid[0]
        models[s] = fit(X[tr], list(y[tr]), gender[tr], c, norm, NAMES)
    return models


def loso(X, y, spk, gender, norm, grid, nested=True):
    pred = np.empty(len(y), dtype=object)
    models = loso_models(X, y, spk, gender, norm, grid, nested)
    for s, model in models.items():
        pred[spk == s] = predict(model, X[spk == s])
    return pred, {s: model["C"] for s, model in models.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--extract-only", action="store_true")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--out", type=Path, default=ve.MODEL_PATH)
    ap.add_argument("--boredom", choices=["neutral", "drop"], default="drop")
    ap.add_argument("--norm", choices=list(ve.NORMS), default=ve.DEFAULT_NORM)
    ap.add_argument(
        "--speaker-norm-diagnostic",
        action="store_true",
        help="also print LOSO UAR with per-speaker z-scores (needs many clips of a "
        "speaker at inference, so not what ships)",
    )
    ap.add_argument("--grid", default="0.1,0.3,1")
    ap.add_argument("--not-nested", action="store_true", help="first C only, no inner CV")
    args = ap.parse_args()
    e, c = emodb(), cremad()
    if args.extract_only:
        return
    if args.boredom == "drop":
        e = [r for r in e if r["emotion"] != "boredom"]
    else:
        for r in e:
            r["emotion"] = "neutral" if r["emotion"] == "boredom" else r["emotion"]
    names = sorted(e[0]["x"])
    NAMES[:] = names
    X, y = matrix(e, names), np.array([r["emotion"] for r in e], dtype=object)
    spk = np.array([r["speaker"] for r in e])
    gender = np.array([r["gender"] for r in e])
    grid = [float(g) for g in args.grid.split(",")]
    classes = sorted(set(y))
    pred, cs = loso(X, y, spk, gender, args.norm, grid, nested=not args.not_nested)
    lo, hi = bootstrap(y, pred, classes)
    print(
        f"EmoDB LOSO ({len(e)} utterances, boredom={args.boredom}, norm={args.norm}, "
        f"C per fold {sorted(set(cs.values()))}): UAR {uar(y, pred, classes):.3f} "
        f"[95% CI {lo:.3f}-{hi:.3f}], accuracy {np.mean(pred == y):.3f}"
    )
    for k in classes:
        print(f"  recall {k:10s} {np.mean(pred[y == k] == k):.3f}  (n={np.sum(y == k)})")
    c_all = choose_c(X, y, spk, gender, args.norm, grid) if not args.not_nested else grid[0]
    final = fit(X, list(y), gender, c_all, args.norm, NAMES)
    final["features"] = names
    Xc = matrix(c, names)
    pc = predict(final, Xc)
    votes = [CREMA_VOTE[r["votes_voice_only"].split()[0].split(":")[0]] for r in c]
    hits = sum(p == v for p, v in zip(pc, votes))
    print(
        f"CREMA-D cross-corpus (train all EmoDB, C={c_all}): {hits}/{len(c)} agree with the "
        "voice-only crowd vote"
    )
    for r, p, v in zip(c, pc, votes):
        print(f"  {r['file']:22s} vote {v:10s} model {p:10s} {'ok' if p == v else 'miss'}")
    if args.speaker_norm_diagnostic:
        Xs = X.copy()
        for s in np.unique(spk):
            Xs[spk == s] = (X[spk == s] - X[spk == s].mean(0)) / (X[spk == s].std(0) + 1e-9)
        ps, _ = loso(Xs, y, spk, gender, "global", [c_all], nested=False)
        print(
            f"diagnostic, per-speaker z-scores (transductive, not shipped): LOSO UAR "
            f"{uar(y, ps, classes):.3f}"
        )
    final["figures"] = {
        "emodb_loso_uar": round(uar(y, pred, classes), 4),
        "emodb_loso_uar_ci95": [round(lo, 4), round(hi, 4)],
        "cremad_voice_votes": f"{hits}/{len(c)}",
    }
    final["trained_on"] = (
        f"EmoDB all 10 speakers, {len(e)} utterances, boredom "
        f"{'left out' if args.boredom == 'drop' else 'as neutral'}"
    )
    held = spk != CHECK_SPEAKER  # a model that never heard CHECK_SPEAKER, for the tests
    final["check_without_speaker"] = {
        "speaker": CHECK_SPEAKER,
        "trained_on": f"EmoDB without speaker {CHECK_SPEAKER}",
        **fit(X[held], list(y[held]), gender[held], c_all, args.norm, NAMES),
    }
    if not args.no_write:
        ve.save(final, args.out)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
