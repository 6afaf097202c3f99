"""Fit and score the transcript emotion head on MELD (one command, seeded, prints its figures).

    nice -n 10 python scripts/train_text_emotion.py --model qwen2.5-1.5b --prompt te-v2 \
        --fit-rows 180 --test-rows 300 --fit-use 100 --test-use 300       # the shipped head
    python scripts/train_text_emotion.py --compare 60 --prompt te-v2  # 0.5B vs 1.5B, 60 test rows

Protocol: a seeded, class-proportional (stratified) sample of MELD train+dev is scored by the LLM
(seven label log-probs, ``agent.text_emotion``) and the head (temperature + per-class offsets) is
fitted on it by minimum negative log-likelihood; a disjoint seeded stratified sample of MELD test
(never seen by the fit) gives weighted F1, accuracy, macro-F1, per-class recall and 1000-sample
bootstrap 95 % intervals. Utterance only, no dialogue context. Per-row log-probs are cached under
the user cache folder's ``text_emotion/rows/`` (``~/.cache/affectlens/...`` on Linux, or under
``$XDG_CACHE_HOME``) so a rerun (or the tests) refits without the LLM.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from affectlens.agent.text_emotion import (  # noqa: E402
    BASIC_EMOTIONS,
    HEAD_FILE,
    PROMPT_VERSION,
    Head,
    log_softmax,
    prompt,
)
from affectlens.settings import user_cache_dir  # noqa: E402

MELD = ROOT.parent / "shared" / "data" / "meld"
CACHE = user_cache_dir() / "text_emotion" / "rows"
MELD_TO_BASIC = {
    "anger": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "joy": "happiness",
    "sadness": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}
SEED = 0
COMPARE_ROWS = 60  # the test rows --compare used to choose the model and the prompt


def load_split(split: str, meld: Path = MELD):
    import pandas as pd

    d = pd.read_csv(meld / f"{split}_sent_emo.csv")
    d["text"] = d["Utterance"].astype(str).str.replace("\x92", "'").str.replace("\x85", "...")
    d["label"] = d["Emotion"].map(MELD_TO_BASIC)
    return d[["text", "label"]].reset_index(drop=True)


def stratified(d, n: int, seed: int = SEED):
    """``n`` rows with the split's class proportions (at least 3 of each class), seeded."""
    rng = np.random.default_rng(seed)
    frac = d["label"].value_counts(normalize=True)
    parts = []
    for label, f in frac.items():
        idx = np.flatnonzero(d["label"].to_numpy() == label)
        k = min(len(idx), max(3, round(n * f)))
        parts.append(rng.choice(idx, size=k, replace=False))
    idx = rng.permutation(np.concatenate(parts))
    return d.iloc[idx].reset_index(drop=True)


def samples(fit_rows: int, test_rows: int, meld: Path = MELD):
    import pandas as pd

    fit = pd.concat([load_split("train", meld), load_split("dev", meld)], ignore_index=True)
    return stratified(fit, fit_rows), stratified(load_split("test", meld), test_rows)


def used(fit, test, fit_use: int | None, test_use: int | None):
    """The first rows of the (already shuffled) stratified samples: a smaller seeded random
    subset that reuses the rows a longer run has cached (the CPU was shared)."""
    return fit.iloc[:fit_use].reset_index(drop=True), test.iloc[:test_use].reset_index(drop=True)


def cache_file(model: str, text: str, version: str = PROMPT_VERSION) -> Path:
    h = hashlib.sha1(prompt(text, version).encode()).hexdigest()[:16]
    return CACHE / f"{model}-{version}" / f"{h}.npy"


def cached_logprobs(model: str, texts, version: str = PROMPT_VERSION) -> np.ndarray | None:
    """The cached (n, 7) log-probs, or None when any row is missing."""
    rows = []
    for t in texts:
        f = cache_file(model, t, version)
        if not f.exists():
            return None
        rows.append(np.load(f))
    return np.stack(rows)


def score(
    model: str, texts, threads: int = 0, version: str = PROMPT_VERSION
) -> tuple[np.ndarray, float]:
    """(n, 7) label log-probs (cached per row) and seconds per uncached row."""
    from affectlens.agent.text_emotion import get_scorer
    from affectlens.settings import Settings

    scorer = None
    out, spent, done = [], 0.0, 0
    for i, t in enumerate(texts):
        f = cache_file(model, t, version)
        if f.exists():
            out.append(np.load(f))
            continue
        if scorer is None:
            scorer = get_scorer(Settings(threads=threads), model)
        t0 = time.perf_counter()
        lp = scorer.logprobs(t, version)
        spent += time.perf_counter() - t0
        done += 1
        f.parent.mkdir(parents=True, exist_ok=True)
        np.save(f, lp)
        out.append(lp)
        if done % 25 == 0:
            print(f"  {model}: {i + 1}/{len(texts)} rows, {spent / done:.2f} s/row", flush=True)
    return np.stack(out), (spent / done if done else float("nan"))


def fit_head(
    logp: np.ndarray, y: np.ndarray, l2: float = 1e-2, offsets: bool = True
) -> tuple[float, np.ndarray]:
    """Temperature and per-class offsets by minimum NLL (small L2 on the offsets); with
    ``offsets=False`` only the temperature (the argmax stays the LLM's)."""
    from scipy.optimize import minimize

    k = logp.shape[1]

    def nll(theta):
        t, b = np.exp(theta[0]), (theta[1:] if offsets else np.zeros(k))
        z = log_softmax(logp / t + b)
        return -z[np.arange(len(y)), y].mean() + l2 * (b**2).sum()

    res = minimize(nll, np.zeros(k + 1 if offsets else 1), method="L-BFGS-B")
    b = res.x[1:] - res.x[1:].mean() if offsets else np.zeros(k)
    return float(np.exp(res.x[0])), b


def cv_weighted_f1(logp: np.ndarray, y: np.ndarray, offsets: bool, folds: int = 5) -> float:
    """Weighted F1 of the head fitted on the other folds (fit rows only: selects the head
    without looking at test)."""
    pred = np.empty(len(y), int)
    for k in range(folds):
        held = np.arange(len(y)) % folds == k
        t, b = fit_head(logp[~held], y[~held], offsets=offsets)
        pred[held] = (logp[held] / t + b).argmax(1)
    return metrics(y, pred, boot=1)["weighted_f1"]


def metrics(y: np.ndarray, pred: np.ndarray, boot: int = 1000, seed: int = SEED) -> dict:
    from sklearn.metrics import accuracy_score, f1_score, recall_score

    labels = list(range(len(BASIC_EMOTIONS)))

    def wf1(a, b):
        return f1_score(a, b, labels=labels, average="weighted", zero_division=0)

    rng = np.random.default_rng(seed)
    bs = [wf1(y[i], pred[i]) for i in (rng.integers(0, len(y), len(y)) for _ in range(boot))]
    rec = recall_score(y, pred, labels=labels, average=None, zero_division=0)
    return {
        "n": int(len(y)),
        "weighted_f1": round(float(wf1(y, pred)), 4),
        "weighted_f1_ci95": [
            round(float(np.percentile(bs, 2.5)), 4),
            round(float(np.percentile(bs, 97.5)), 4),
        ],
        "accuracy": round(float(accuracy_score(y, pred)), 4),
        "macro_f1": round(
            float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)), 4
        ),
        "uar": round(float(rec.mean()), 4),
        "recall": {e: round(float(r), 3) for e, r in zip(BASIC_EMOTIONS, rec)},
    }


def labels_of(d) -> np.ndarray:
    return np.array([BASIC_EMOTIONS.index(x) for x in d["label"]])


def confusion(y, pred) -> str:
    from sklearn.metrics import confusion_matrix

    m = confusion_matrix(y, pred, labels=list(range(len(BASIC_EMOTIONS))))
    short = [e[:4] for e in BASIC_EMOTIONS]
    lines = ["gold\\pred " + " ".join(f"{s:>5}" for s in short)]
    lines += [f"{s:>9} " + " ".join(f"{v:5d}" for v in row) for s, row in zip(short, m)]
    return "\n".join(lines)


def compare(n: int, threads: int, version: str = PROMPT_VERSION) -> None:
    """0.5B vs 1.5B on the first ``n`` rows of the seeded test sample: zero-shot weighted F1
    (argmax of the raw label probabilities), NLL, and seconds per row."""
    _, test = samples(300, 300)
    test = test.iloc[:n]
    y = labels_of(test)
    for model in ("qwen2.5-0.5b", "qwen2.5-1.5b"):
        lp, sec = score(model, list(test["text"]), threads, version)
        m = metrics(y, lp.argmax(1), boot=300)
        nll = -lp[np.arange(len(y)), y].mean()
        cv = cv_weighted_f1(lp, y, True)  # head fitted on the other folds of these rows
        print(
            f"{model}: raw weighted F1 {m['weighted_f1']} {m['weighted_f1_ci95']} "
            f"acc {m['accuracy']} NLL {nll:.3f}; 5-fold head weighted F1 {cv}; "
            f"{sec:.2f} s/row (uncached rows)"
        )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="qwen2.5-1.5b")
    ap.add_argument("--fit-rows", type=int, default=180)
    ap.add_argument("--test-rows", type=int, default=300)
    ap.add_argument("--fit-use", type=int, default=None, help="Use the first N fit-sample rows.")
    ap.add_argument("--test-use", type=int, default=None, help="Use the first N test-sample rows.")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--compare", type=int, default=0, help="Only compare 0.5B vs 1.5B on N rows.")
    ap.add_argument("--prompt", default=PROMPT_VERSION, help="Prompt version (te-v1, te-v2).")
    ap.add_argument("--out", type=Path, default=HEAD_FILE)
    a = ap.parse_args(argv)
    if a.compare:
        compare(a.compare, a.threads, a.prompt)
        return 0
    fit, test = used(*samples(a.fit_rows, a.test_rows), a.fit_use, a.test_use)
    print(f"MELD sample: fit {len(fit)} rows (train+dev), test {len(test)} rows; seed {SEED}")
    lp_fit, s1 = score(a.model, list(fit["text"]), a.threads, a.prompt)
    lp_test, s2 = score(a.model, list(test["text"]), a.threads, a.prompt)
    y_fit, y_test = labels_of(fit), labels_of(test)
    cv = {o: cv_weighted_f1(lp_fit, y_fit, o) for o in (False, True)}
    with_offsets = cv[True] > cv[False]
    print(
        f"5-fold CV weighted F1 on the fit rows: temperature only {cv[False]}, "
        f"temperature + offsets {cv[True]} -> {'offsets' if with_offsets else 'temperature only'}"
    )
    t, b = fit_head(lp_fit, y_fit, offsets=with_offsets)
    head = Head(
        model=a.model,
        prompt_version=a.prompt,
        temperature=round(t, 4),
        offsets=[round(float(x), 4) for x in b],
    )
    raw = metrics(y_test, lp_test.argmax(1))
    cal = metrics(y_test, head.apply(lp_test).argmax(1))
    # The prompt version and the model were chosen on the first COMPARE_ROWS test rows
    # (--compare): the rest were seen by no choice at all.
    unseen = metrics(y_test[COMPARE_ROWS:], head.apply(lp_test[COMPARE_ROWS:]).argmax(1))
    fit_m = metrics(y_fit, head.apply(lp_fit).argmax(1), boot=1)
    head.fit = {
        "data": "MELD (Poria et al. 2019, GPL-3.0 repository), utterance only",
        "fit_rows": a.fit_rows,
        "test_rows": a.test_rows,
        "seed": SEED,
        "fit_use": len(fit),
        "test_use": len(test),
        "sampling": "class-proportional stratified (fit_rows from train+dev, test_rows from "
        "test), seeded and shuffled; the first fit_use / test_use rows are used",
        "objective": "min NLL of softmax(logp/T + b), L2 1e-2 on b",
        "offsets_fitted": bool(with_offsets),
        "cv_weighted_f1_fit_rows": {"temperature_only": cv[False], "with_offsets": cv[True]},
        "test_raw_argmax": raw,
        "test_head": cal,
        f"test_head_rows_{COMPARE_ROWS}_on (not used to choose model or prompt)": unseen,
        "fit_weighted_f1": fit_m["weighted_f1"],
        "seconds_per_row": round(float(np.nanmean([s1, s2])), 3)
        if not np.isnan(np.nanmean([s1, s2]))
        else None,
    }
    a.out.write_text(head.model_dump_json(indent=1) + "\n")
    print(
        f"head: T={t:.3f} offsets " + " ".join(f"{e}={v:+.2f}" for e, v in zip(BASIC_EMOTIONS, b))
    )
    for name, m in (("raw argmax", raw), ("with head", cal)):
        print(
            f"MELD test ({m['n']} rows) {name}: weighted F1 {m['weighted_f1']} "
            f"95% CI {m['weighted_f1_ci95']}, acc {m['accuracy']}, macro-F1 {m['macro_f1']}, "
            f"UAR {m['uar']}"
        )
        print("  recall " + " ".join(f"{e}={r}" for e, r in m["recall"].items()))
    print(
        f"MELD test rows {COMPARE_ROWS}-{len(test)} (not used for any choice) with head: "
        f"weighted F1 {unseen['weighted_f1']} 95% CI {unseen['weighted_f1_ci95']}"
    )
    print(confusion(y_test, head.apply(lp_test).argmax(1)))
    pred = head.apply(lp_test).argmax(1)
    wrong = np.flatnonzero(pred != y_test)
    print(f"misses ({len(wrong)} of {len(y_test)}), first 10 in sample order:")
    for i in wrong[:10]:
        print(
            f"  gold {BASIC_EMOTIONS[y_test[i]]:9} pred {BASIC_EMOTIONS[pred[i]]:9} "
            f"{test['text'][i][:80]!r}"
        )
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
