"""Evaluation metrics, each a pure function written from its published definition.

Nothing here loads a model: the LLM judge lives in ``evals/judge.py`` and embeddings are passed
in as vectors. Every function takes plain Python values so tests can check it against numbers
worked out by hand.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from affectlens.agent import citations
from affectlens.agent.citations import LOOSE_CITATION, LOOSE_CUE_ID, PLAIN_SENTENCE, split_sentences
from affectlens.taxonomy import (
    BASIC,
    C_EXPR_DB_NAMES,
    CIRCUMPLEX,
    c_expr_class,
    labels_in,
    parse_label,
    wheel_petals,
)

# ---------------------------------------------------------------------------------------------
# recognition


def accuracy(gold: Sequence[str | None], pred: Sequence[str | None]) -> float:
    """Share of exact matches: ``acc = (1/n) * sum_i [pred_i == gold_i]``."""
    _same_length(gold, pred)
    if not gold:
        return math.nan
    return sum(g == p for g, p in zip(gold, pred)) / len(gold)


def confusion_matrix(
    gold: Sequence[str | None], pred: Sequence[str | None], labels: Sequence[str]
) -> list[list[int]]:
    """Counts ``C[i][j]`` of gold ``labels[i]`` predicted as ``labels[j]``.

    Predictions outside ``labels`` (or None) fall in an extra last column "other", so every
    gold sample is counted once.
    """
    _same_length(gold, pred)
    index = {lab: i for i, lab in enumerate(labels)}
    cm = [[0] * (len(labels) + 1) for _ in labels]
    for g, p in zip(gold, pred):
        if g not in index:
            continue
        cm[index[g]][index.get(p, len(labels)) if p is not None else len(labels)] += 1
    return cm


def per_class_f1(
    gold: Sequence[str | None], pred: Sequence[str | None], labels: Sequence[str]
) -> dict[str, float]:
    """F1 of each class: ``F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c)`` (0 when the class never
    occurs in gold or prediction, as scikit-learn's ``zero_division=0``)."""
    _same_length(gold, pred)
    out = {}
    for c in labels:
        tp = sum(g == c and p == c for g, p in zip(gold, pred))
        fp = sum(g != c and p == c for g, p in zip(gold, pred))
        fn = sum(g == c and p != c for g, p in zip(gold, pred))
        denom = 2 * tp + fp + fn
        out[c] = 2 * tp / denom if denom else 0.0
    return out


def macro_f1(
    gold: Sequence[str | None], pred: Sequence[str | None], labels: Sequence[str] | None = None
) -> float:
    """Unweighted mean of per-class F1 (Sokolova & Lapalme 2009):
    ``macro-F1 = (1/|L|) * sum_{c in L} F1_c``.

    ``labels`` defaults to the classes present in gold. For the 7-class compound score (ABAW
    C-EXPR-DB) pass the 7 class names; a prediction outside them is simply wrong (an FN of its
    gold class, an FP of no class).
    """
    if labels is None:
        labels = _classes_in(gold)
    if not gold or not labels:
        return math.nan
    return float(np.mean(list(per_class_f1(gold, pred, labels).values())))


def per_class_recall(
    gold: Sequence[str | None], pred: Sequence[str | None], labels: Sequence[str] | None = None
) -> dict[str, float]:
    """Recall of each class: ``R_c = TP_c / (TP_c + FN_c)`` over the gold samples of class c;
    NaN for a class with no gold sample (it cannot be recalled or missed). ``labels`` defaults
    to the classes present in gold."""
    _same_length(gold, pred)
    if labels is None:
        labels = _classes_in(gold)
    out = {}
    for c in labels:
        n = sum(g == c for g in gold)
        out[c] = sum(g == c and p == c for g, p in zip(gold, pred)) / n if n else math.nan
    return out


def uar(
    gold: Sequence[str | None], pred: Sequence[str | None], labels: Sequence[str] | None = None
) -> float:
    """Unweighted average recall, the speech-emotion field's headline (Schuller et al., the
    INTERSPEECH 2009 Emotion Challenge): ``UAR = (1/|L|) sum_{c in L} R_c`` over the classes
    with at least one gold sample, so a majority-class guesser scores 1/|L|, not the class
    share. Equal to scikit-learn's ``balanced_accuracy_score``."""
    recalls = [r for r in per_class_recall(gold, pred, labels).values() if not math.isnan(r)]
    return float(np.mean(recalls)) if recalls else math.nan


def basic_of(label: str | None) -> str | None:
    """The dominant basic emotion of any label ("happily surprised" -> surprise)."""
    if not label:
        return None
    parsed = parse_label(label)
    return parsed.dominant if parsed else None


def compound_of(label: str | None) -> str | None:
    """The C-EXPR-DB class of a label, or None when it is not one of the 7."""
    if not label:
        return None
    parsed = parse_label(label)
    return c_expr_class(parsed) if parsed else None


def compound_parts(gold: Sequence[str], pred: Sequence[str | None]) -> dict[str, float]:
    """A compound label scored on its two basic parts.

    ``dominant_accuracy``: ``(1/n) sum [d_pred == d_gold]``; ``secondary_accuracy``: the same on
    the secondary part (None counts as a value, so "surprised" vs "happily surprised" is wrong);
    ``parts_f1``: mean over samples of the set F1 of ``{dominant, secondary}`` (the order-free
    overlap of the two parts).
    """
    _same_length(gold, pred)
    if not gold:
        return {"dominant_accuracy": math.nan, "secondary_accuracy": math.nan, "parts_f1": math.nan}
    dom, sec, f1s = [], [], []
    for g, p in zip(gold, pred):
        gp, pp = parse_label(g), parse_label(p) if p else None
        if gp is None:
            continue
        dom.append(pp is not None and pp.dominant == gp.dominant)
        sec.append(pp is not None and pp.secondary == gp.secondary)
        gs = {gp.dominant, gp.secondary} - {None}
        ps = ({pp.dominant, pp.secondary} - {None}) if pp else set()
        f1s.append(set_prf(gs, ps)[2])
    return {
        "dominant_accuracy": float(np.mean(dom)) if dom else math.nan,
        "secondary_accuracy": float(np.mean(sec)) if sec else math.nan,
        "parts_f1": float(np.mean(f1s)) if f1s else math.nan,
    }


def recognition(gold_labels: Sequence[str], pred_labels: Sequence[str | None]) -> dict[str, Any]:
    """Accuracy and macro-F1 on the basic (dominant) emotion; 7-class compound macro-F1 on the
    samples whose gold is a C-EXPR-DB class; the parts score on compound golds."""
    gb = [basic_of(g) for g in gold_labels]
    keep = [i for i, g in enumerate(gb) if g is not None]
    gold_b = [gb[i] for i in keep]
    pred_b = [basic_of(pred_labels[i]) for i in keep]
    out: dict[str, Any] = {
        "n": len(keep),
        "basic_accuracy": accuracy(gold_b, pred_b),
        "basic_macro_f1": macro_f1(gold_b, pred_b),
        "basic_confusion": {
            "labels": list(BASIC),
            "matrix": confusion_matrix(gold_b, pred_b, BASIC),
        },
    }
    comp = [i for i, g in enumerate(gold_labels) if compound_of(g)]
    if comp:
        gold_c = [compound_of(gold_labels[i]) for i in comp]
        pred_c = [compound_of(pred_labels[i]) for i in comp]
        out["compound_n"] = len(comp)
        out["compound_macro_f1"] = macro_f1(gold_c, pred_c, list(C_EXPR_DB_NAMES))
        out["compound_accuracy"] = accuracy(gold_c, pred_c)
        out.update(
            {
                f"compound_{k}": v
                for k, v in compound_parts(
                    [gold_labels[i] for i in comp], [pred_labels[i] for i in comp]
                ).items()
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# open vocabulary (EMER / MER-UniBench)


def wheel_groups(words: Iterable[str]) -> set[str]:
    """Map free labels onto Plutchik-wheel petals (``affectlens.taxonomy.wheel_petals``: a dyad
    such as "hopeful" gives both its petals); unknown words drop out (as AffectGPT's wheel
    mapping drops labels it cannot map)."""
    groups: set[str] = set()
    for word in words:
        for token in re.findall(r"[a-zA-Z]+(?:-[a-zA-Z]+)?", word):
            groups.update(wheel_petals(token))
    return groups


def set_prf(gold: set, pred: set) -> tuple[float, float, float]:
    """Set precision ``|G∩P|/|P|``, recall ``|G∩P|/|G|`` and their harmonic mean (0 when empty)."""
    inter = len(gold & pred)
    p = inter / len(pred) if pred else 0.0
    r = inter / len(gold) if gold else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f


def open_vocab(gold: Sequence[Iterable[str]], pred: Sequence[Iterable[str]]) -> dict[str, float]:
    """Open-vocabulary set scores after the wheel mapping (Lian et al., EMER / AffectGPT,
    MER-UniBench): per sample ``P_i = |G_i∩P_i|/|P_i|`` (0 when P_i is empty), ``R_i =
    |G_i∩P_i|/|G_i|``; samples whose gold maps to nothing are skipped; ``precision`` and
    ``recall`` are the means over samples and ``f1 = 2 P R / (P + R)`` of those means, as in
    AffectGPT's ``wheel_metric_calculation``.
    """
    _same_length(gold, pred)
    ps, rs = [], []
    for g, p in zip(gold, pred):
        gs, pset = wheel_groups(g), wheel_groups(p)
        if not gs:
            continue
        prec, rec, _ = set_prf(gs, pset)
        ps.append(prec)
        rs.append(rec)
    if not ps:
        return {"n": 0, "precision": math.nan, "recall": math.nan, "f1": math.nan}
    P, R = float(np.mean(ps)), float(np.mean(rs))
    return {"n": len(ps), "precision": P, "recall": R, "f1": 2 * P * R / (P + R) if P + R else 0.0}


_CONCLUSION = re.compile(
    r"\b(?:therefore|thus|hence|in conclusion|overall|inferred|indicating|suggesting)\b(.*)",
    re.IGNORECASE | re.DOTALL,
)


def conclusion(text: str) -> str:
    """The concluding clause of an explanation: what follows the last conclusion marker
    ("Therefore", "inferred", ...) in a sentence that names an emotion; else the whole text."""
    for sentence in reversed(split_sentences(text or "", PLAIN_SENTENCE)):
        match = _CONCLUSION.search(sentence)
        if match and labels_in(match.group(1)):
            return match.group(1)
    return text or ""


def extract_labels(text: str) -> list[str]:
    """Emotion labels stated by a free-text explanation (basic emotions, mention order).

    EMER reasons end with "Therefore, it is inferred that his emotional state is X, Y and Z":
    the last sentence with such a conclusion marker that names an emotion decides (earlier
    sentences mention emotions the person does *not* feel); without one, every emotion word of
    the text counts.
    """
    return labels_in(conclusion(text))


# ---------------------------------------------------------------------------------------------
# grounding: cited cues and whether they support the sentence


# EMFACS prototypes (Friesen & Ekman 1983; Matsumoto & Ekman 2008): AU -> emotions it belongs to.
_PROTOTYPES = {
    "happiness": (6, 12),
    "sadness": (1, 4, 15, 17),
    "surprise": (1, 2, 5, 26, 27),
    "fear": (1, 2, 4, 5, 7, 20, 26),
    "anger": (4, 5, 7, 23, 24),
    "disgust": (9, 10, 15, 16, 17),
}
AU_EMOTIONS: dict[str, set[str]] = {}
for _emo, _aus in _PROTOTYPES.items():
    for _au in _aus:
        AU_EMOTIONS.setdefault(f"AU{_au}", set()).add(_emo)


def cited_ids(sentence: str) -> list[str]:
    """Cue ids cited in brackets: "a smile [F1, F3]" -> ["F1", "F3"] (order kept, no repeats).

    Looser than ``agent.citations.cited_ids`` on purpose: metrics also score other systems'
    explanations, which write "[F1 and V2]" or two-letter ids; the verifier enforces our own
    "[F1, V2]" format on the agent's readings."""
    return citations.cited_ids(sentence, LOOSE_CITATION, LOOSE_CUE_ID)


def cue_emotions(cue: Any) -> set[str]:
    """Basic emotions a cue speaks for: emotion words in its text, the EMFACS prototypes of an
    action unit it measures, and, for a signed valence/arousal value, the emotions on that side
    of the circumplex. ``cue`` is an ``agent.schemas.Cue`` or a dict with the same fields."""
    get = cue.get if isinstance(cue, dict) else lambda k, d=None: getattr(cue, k, d)
    name, text, value = str(get("name", "") or ""), str(get("text", "") or ""), get("value")
    found = set(labels_in(text)) - {"neutral"}
    for au in re.findall(r"\bAU\s?(\d{1,2})\b", f"{name} {text}"):
        found |= AU_EMOTIONS.get(f"AU{int(au)}", set())
    lowered = name.lower()
    if isinstance(value, (int, float)) and lowered in ("valence", "arousal") and abs(value) >= 0.2:
        axis = 0 if lowered == "valence" else 1
        found |= {e for e, va in CIRCUMPLEX.items() if e != "neutral" and va[axis] * value > 0}
    return found


def _valence_sign(emotion: str) -> int:
    v = CIRCUMPLEX.get(emotion, (0.0, 0.0))[0]
    return 0 if abs(v) < 0.3 else (1 if v > 0 else -1)


def sentence_support(sentence: str, cues: dict[str, Any]) -> dict[str, Any]:
    """Judge one explanation sentence against the cues (deterministic).

    ``cited``: ids in brackets; ``missing``: cited ids that are not cues (hallucinated);
    ``claims``: basic emotions the sentence names; ``supported``: it cites at least one cue,
    every cited cue exists, and, when it claims an emotion, at least one cited cue speaks for a
    claimed emotion (``cue_emotions``); ``contradicted``: it claims emotions and some cited cue
    speaks only for emotions of the opposite valence sign.
    """
    cited = cited_ids(sentence)
    missing = [c for c in cited if c not in cues]
    present = [cues[c] for c in cited if c in cues]
    claims = [e for e in labels_in(LOOSE_CITATION.sub(" ", sentence)) if e != "neutral"]
    speaks = [cue_emotions(c) for c in present]
    backs = not claims or any(set(claims) & s for s in speaks)
    claim_signs = {_valence_sign(e) for e in claims} - {0}
    contradicted = bool(claim_signs) and any(
        s and all(_valence_sign(e) and _valence_sign(e) not in claim_signs for e in s)
        for s in speaks
    )
    return {
        "cited": cited,
        "missing": missing,
        "claims": claims,
        "supported": bool(cited) and not missing and backs,
        "contradicted": contradicted,
    }


def grounding(
    explanation: Sequence[str], cues: dict[str, Any], label: str | None
) -> dict[str, Any]:
    """Reference-free grounding of one explanation.

    ``grounded_share`` = supported sentences / sentences; ``hallucinated_rate`` = cited ids
    that are not cues / all cited ids (0 when nothing is cited); ``label_agreement`` = 1 when the
    dominant emotion of ``label`` is named in the explanation, else 0.
    """
    rows = [sentence_support(s, cues) for s in explanation]
    n_cited = sum(len(r["cited"]) for r in rows)
    n_missing = sum(len(r["missing"]) for r in rows)
    dominant = basic_of(label)
    named = labels_in(" ".join(explanation))
    return {
        "sentences": len(rows),
        "grounded_share": sum(r["supported"] for r in rows) / len(rows) if rows else 0.0,
        "hallucinated_rate": n_missing / n_cited if n_cited else 0.0,
        "cited": n_cited,
        "label_agreement": float(dominant is not None and dominant in named),
        "rows": rows,
    }


def mme_emotion(
    steps: Sequence[str], cues: dict[str, Any], gold: str, alpha: float = 0.5
) -> dict[str, float]:
    """MME-Emotion step scores (Zhang et al. 2025, "MME-Emotion: A Holistic Evaluation
    Benchmark for Emotional Intelligence in MLLMs"; their ``cal_metrics.py``).

    Each step gets 0 or 1. The last step is 1 when its emotion matches the gold label (cues not
    considered); every other step is 1 unless it clearly contradicts the cues, judged here
    deterministically: it cites a cue that does not exist, or a cited cue speaks only for
    emotions of the opposite valence (``sentence_support``). ``recognition`` = score of the
    last step; ``reasoning`` = mean of the other steps (0 when there is only one step, as in the
    reference code); ``cot = alpha * recognition + (1 - alpha) * reasoning`` (alpha = 0.5).
    """
    if not steps:
        return {"recognition": 0.0, "reasoning": 0.0, "cot": 0.0, "steps": 0}
    # the final step's emotion: the dominant of its concluding label ("happily surprised" ->
    # surprise), compared with the gold's dominant
    final = basic_of(conclusion(steps[-1]))
    rec = float(final is not None and final == basic_of(gold))
    scores = []
    for step in steps[:-1]:
        row = sentence_support(step, cues)
        scores.append(float(not row["missing"] and not row["contradicted"]))
    rea = float(np.mean(scores)) if scores else 0.0
    return {
        "recognition": rec,
        "reasoning": rea,
        "cot": alpha * rec + (1 - alpha) * rea,
        "steps": len(steps),
    }


# ---------------------------------------------------------------------------------------------
# embeddings


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """``cos(a, b) = a·b / (|a| |b|)`` (0 for a zero vector)."""
    va, vb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = np.linalg.norm(va), np.linalg.norm(vb)
    return float(va @ vb / (na * nb)) if na and nb else 0.0


def clue_coverage(reference: np.ndarray, explanation: np.ndarray) -> float:
    """Mean over reference clues of the best cosine to any explanation sentence (the recall side
    of BERTScore's greedy matching, Zhang et al. 2020, at sentence level).
    Rows are embeddings."""
    ref, exp = np.atleast_2d(reference).astype(float), np.atleast_2d(explanation).astype(float)
    if not len(ref) or not len(exp):
        return 0.0
    ref = ref / np.clip(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12, None)
    exp = exp / np.clip(np.linalg.norm(exp, axis=1, keepdims=True), 1e-12, None)
    return float((ref @ exp.T).max(axis=1).mean())


# ---------------------------------------------------------------------------------------------
# calibration and dimensions


def calibration(
    confidence: Sequence[float], correct: Sequence[bool | float], bins: int = 10
) -> dict[str, Any]:
    """Expected calibration error with equal-width bins (Guo et al. 2017, "On Calibration of
    Modern Neural Networks"): ``ECE = sum_m |B_m|/n * |acc(B_m) - conf(B_m)|``, bin m covering
    ``((m-1)/M, m/M]`` (the first bin also takes 0). Returns the ECE and the reliability-curve
    rows (bin edges, count, accuracy, mean confidence) of the non-empty bins."""
    _same_length(confidence, correct)
    conf = np.clip(np.asarray(confidence, dtype=float), 0.0, 1.0)
    corr = np.asarray(correct, dtype=float)
    n = len(conf)
    if not n:
        return {"ece": math.nan, "bins": bins, "curve": []}
    idx = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    ece, curve = 0.0, []
    for m in range(bins):
        mask = idx == m
        if not mask.any():
            continue
        acc, mc = float(corr[mask].mean()), float(conf[mask].mean())
        ece += mask.sum() / n * abs(acc - mc)
        curve.append(
            {
                "lo": m / bins,
                "hi": (m + 1) / bins,
                "count": int(mask.sum()),
                "accuracy": acc,
                "confidence": mc,
            }
        )
    return {"ece": float(ece), "bins": bins, "curve": curve}


def ccc(gold: Sequence[float], pred: Sequence[float]) -> float:
    """Lin's concordance correlation coefficient (Lin 1989):
    ``rho_c = 2 s_xy / (s_x^2 + s_y^2 + (mean_x - mean_y)^2)`` with population (1/n) moments.
    NaN when fewer than two pairs or both series are constant and equal."""
    _same_length(gold, pred)
    x, y = np.asarray(gold, dtype=float), np.asarray(pred, dtype=float)
    if len(x) < 2:
        return math.nan
    mx, my = x.mean(), y.mean()
    sxy = ((x - mx) * (y - my)).mean()
    denom = x.var() + y.var() + (mx - my) ** 2
    return float(2 * sxy / denom) if denom else math.nan


# ---------------------------------------------------------------------------------------------
# confidence intervals


def bootstrap_ci(
    n: int,
    statistic: Callable[[np.ndarray], float],
    *,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, float]:
    """Percentile bootstrap (Efron & Tibshirani 1993): draw ``resamples`` index sets of size n
    with replacement from a seeded generator, recompute ``statistic(indices)`` on each, and take
    the ``(1-level)/2`` and ``(1+level)/2`` percentiles. Resamples where the statistic is NaN
    are dropped. Returns the point value too."""
    point = float(statistic(np.arange(n))) if n else math.nan
    if n == 0:
        return {"value": math.nan, "lo": math.nan, "hi": math.nan, "resamples": 0}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        v = statistic(rng.integers(0, n, size=n))
        if v is not None and not math.isnan(v):
            values.append(float(v))
    if not values:
        return {"value": point, "lo": math.nan, "hi": math.nan, "resamples": 0}
    lo, hi = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return {"value": point, "lo": float(lo), "hi": float(hi), "resamples": len(values)}


def _classes_in(gold: Sequence[str | None]) -> list[str]:
    """The classes present in gold, sorted; a gold without a class (None) names none."""
    return sorted({g for g in gold if g is not None})


def _same_length(a: Sequence, b: Sequence) -> None:
    if len(a) != len(b):
        raise ValueError(f"length mismatch: {len(a)} gold vs {len(b)} predicted")
