"""Late fusion of the witnesses' votes, the decision rule, and the calibrated confidence.

Fusion: reliability-weighted log-linear pooling (a weighted product of experts; Genest & Zidek
1986, "Combining probability distributions"). With witness m voting ``p_m`` over the 7 basic
emotions with reliability ``r_m`` in [0, 1] and a fitted weight ``w_m >= 0``::

    log q(c) = b_c + sum_m  w_m * r_m * log max(p_m(c), EPS)  - log Z

``b_c`` is a fitted per-class offset (zero-mean) and Z normalises. A witness that is absent or
has reliability 0 drops out (a factor of 1); a witness with w = 1, r = 1 enters at its own
calibration; w < 1 flattens it, w > 1 sharpens it.

For the modalities in ``neutral_discount`` (the words) ``r_m`` is multiplied by
``1 - p_m(neutral)``: plain words are the absence of emotional content, not evidence that the
speaker feels nothing, so a transcript read as neutral steps aside instead of outvoting an
emotional voice or face (EmoDB's lexically neutral sentences, held out: fused UAR 0.32 -> 0.45;
docs/evaluation.md). A face or voice read as neutral still counts as evidence of neutral.

The weights and offsets are fitted by minimum negative log-likelihood on the shared sets'
cached votes, each corpus weighing the same (``sample_weight``), with leave-one-speaker-out
checks (``scripts/fit_recognition.py``), and ship in ``agent/fusion.json`` with the ids and
speakers they were fitted on.

Confidence: Platt scaling (Platt 1999) of the fused probability of the decided label,
``conf = sigmoid(a * logit(q) + b)``, fitted on held-out fused outputs: the stored confidence is
an estimate of the probability that the dominant emotion is right.

Decision (``settings.decision``): ``fusion`` names the fused top class; ``llm`` keeps the
LLM's; ``hybrid`` keeps the LLM's unless the fusion is confident (calibrated confidence of its
top >= ``HYBRID_MIN``) and disagrees. Whenever the LLM's pick differs from the fused top the
result carries a ``conflict`` sentence, never silently.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from affectlens.tools.evidence import BASIC_EMOTIONS, EmotionVote

if TYPE_CHECKING:  # agent.schemas stores a FusedReading
    from affectlens.agent.schemas import Cue

Decision = Literal["fusion", "llm", "hybrid"]
EPS = 1e-4  # probability floor before the log (votes are stored rounded to 4 places)
HYBRID_MIN = 0.6  # fusion overrides the LLM in hybrid mode from this calibrated confidence
PARAMS_FILE = Path(__file__).with_name("fusion.json")
L2_BIAS = 1.0  # ridge on the class offsets: classes rare in the fitting data stay near 0


class FittedOn(BaseModel):
    """Rows and speakers a fitted file saw (evals.recognition.guard refuses to score them)."""

    ids: list[str] = []
    speakers: list[str] = []

    def seen(self, item_id: str, speaker: str | None) -> bool:
        return item_id in set(self.ids) or (speaker is not None and speaker in set(self.speakers))


class FusionParams(BaseModel):
    weights: dict[str, float] = Field(default_factory=dict, description="modality -> w_m")
    bias: dict[str, float] = Field(default_factory=dict, description="class -> b_c")
    platt: tuple[float, float] = Field(default=(1.0, 0.0), description="(a, b) of the confidence")
    default_weight: float = Field(default=1.0, description="w for a modality not fitted yet")
    neutral_discount: list[str] = Field(
        default_factory=list, description="Modalities whose r_m is scaled by 1 - p_m(neutral)."
    )
    fitted_on: FittedOn = Field(default_factory=FittedOn)
    version: str = "unfitted"


class FusedReading(BaseModel):
    """What the fusion says, stored in the result beside the LLM's reading."""

    probs: dict[str, float] = Field(description="Fused basic emotion -> probability.")
    top: str
    confidence: float = Field(ge=0, le=1, description="Calibrated P(top is right).")
    votes: dict[str, EmotionVote] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict, description="w_m * r_m used.")
    decision: Decision = "fusion"
    llm_dominant: str | None = None
    conflict: str | None = Field(
        default=None, description="Set when the LLM's dominant emotion differs from the fusion's."
    )
    model: str = ""


# The cue that carries each witness's vote (agent.textualise, agent.text_emotion).
WITNESS_CUES = {"face": "expression", "voice": "voice_emotion", "speech": "text_emotion"}


def dissenting_cues(fused: FusedReading, emotion: str, cues: Sequence[Cue]) -> list[str]:
    """Ids of the cues whose witness's vote names another emotion than ``emotion`` first: the
    reading's conflicts when the fused witnesses decided (measured, not the LLM's guess)."""
    dissent = {
        WITNESS_CUES[m]
        for m, vote in fused.votes.items()
        if m in WITNESS_CUES
        and vote.probs
        and max(vote.probs, key=vote.probs.__getitem__) != emotion
    }
    return [c.id for c in cues if c.name in dissent]


@lru_cache(maxsize=4)
def load_params(path: str | None = None) -> FusionParams:
    p = Path(path) if path else PARAMS_FILE
    if not p.is_file():
        return FusionParams()
    return FusionParams.model_validate_json(p.read_text())


def _logp(vote: EmotionVote) -> np.ndarray:
    p = np.array([max(float(vote.probs.get(c, 0.0)), EPS) for c in BASIC_EMOTIONS])
    return np.log(p / p.sum())


def reliability(m: str, vote: EmotionVote, neutral_discount: Sequence[str] = ()) -> float:
    """``r_m`` as the pool uses it: the vote's own reliability, times ``1 - p(neutral)`` for a
    modality in ``neutral_discount``."""
    r = float(vote.reliability)
    return r * (1.0 - float(vote.probs.get("neutral", 0.0))) if m in neutral_discount else r


def pool(
    votes: dict[str, EmotionVote],
    weights: dict[str, float],
    bias: dict[str, float],
    default_weight: float = 1.0,
    neutral_discount: Sequence[str] = (),
) -> tuple[np.ndarray, dict[str, float]] | None:
    """The fused distribution (array in ``BASIC_EMOTIONS`` order) and the effective weights
    ``w_m * r_m``; None when no witness votes."""
    z = np.array([bias.get(c, 0.0) for c in BASIC_EMOTIONS], dtype=float)
    used = {}
    for m, v in sorted(votes.items()):
        w = weights.get(m, default_weight) * reliability(m, v, neutral_discount)
        if w <= 0:
            continue
        z = z + w * _logp(v)
        used[m] = round(w, 4)
    if not used:
        return None
    q = np.exp(z - z.max())
    return q / q.sum(), used


def _logit(q):
    """logit of a probability (scalar or array), clipped to [1e-6, 1 - 1e-6]."""
    q = np.clip(q, 1e-6, 1 - 1e-6)
    return np.log(q / (1 - q))


def platt(q: float, ab: Sequence[float]) -> float:
    x = float(_logit(q))
    return float(1 / (1 + math.exp(-(ab[0] * x + ab[1]))))


def fuse(votes: dict[str, EmotionVote], params: FusionParams | None = None) -> FusedReading | None:
    params = params or load_params()
    pooled = pool(
        votes, params.weights, params.bias, params.default_weight, params.neutral_discount
    )
    if pooled is None:
        return None
    q, used = pooled
    probs = {c: round(float(v), 4) for c, v in zip(BASIC_EMOTIONS, q)}
    top = max(probs, key=probs.__getitem__)
    return FusedReading(
        probs=probs,
        top=top,
        confidence=round(platt(probs[top], params.platt), 4),
        votes=votes,
        weights=used,
        model=f"log-linear pool {params.version}",
    )


def decided(fused: FusedReading | None, decision: Decision) -> str | None:
    """The dominant emotion the evidence names before the LLM writes, or None when the LLM is
    to choose: ``fusion`` always decides; ``hybrid`` when its calibrated confidence reaches
    ``HYBRID_MIN``; ``llm`` never. The LLM then explains that emotion (its schema allows only
    it), so the stored explanation concludes with the label it is stored under."""
    if fused is None or decision == "llm":
        return None
    if decision == "fusion" or fused.confidence >= HYBRID_MIN:
        return fused.top
    return None


def decide(
    fused: FusedReading | None,
    llm_dominant: str | None,
    decision: Decision,
    params: FusionParams | None = None,
) -> tuple[str | None, float | None, FusedReading | None]:
    """(dominant, calibrated confidence, fused with the conflict noted). Without a fusion the
    LLM decides and the confidence is left to the caller (None)."""
    if fused is None:
        return llm_dominant, None, None
    params = params or load_params()
    out = fused.model_copy(
        update={"decision": decision, "llm_dominant": llm_dominant, "conflict": None}
    )
    if llm_dominant and llm_dominant != fused.top:
        out.conflict = (
            f"The LLM named {llm_dominant} (fused probability "
            f"{fused.probs.get(llm_dominant, 0.0):.2f}); the fused witnesses favour "
            f"{fused.top} ({fused.probs[fused.top]:.2f})."
        )
    if decision == "fusion" or not llm_dominant:
        chosen = fused.top
    elif decision == "hybrid" and fused.confidence >= HYBRID_MIN:
        chosen = fused.top
    else:
        chosen = llm_dominant
    conf = platt(fused.probs.get(chosen, 0.0), params.platt)
    return chosen, round(conf, 4), out


# fitting (scripts/fit_recognition.py) ---------------------------------------------------------
def fit_pool(
    rows: Sequence[tuple[dict[str, EmotionVote], str]],
    modalities: Sequence[str],
    *,
    l2_bias: float = L2_BIAS,
    offsets: bool = True,
    neutral_discount: Sequence[str] = (),
    sample_weight: Sequence[float] | None = None,
) -> tuple[dict[str, float], dict[str, float]]:
    """Weights (>= 0) and zero-mean class offsets minimising the (``sample_weight``-weighted)
    mean NLL of the gold class plus ``l2_bias * |b|^2``; deterministic (L-BFGS-B from w = 1,
    b = 0). ``offsets=False`` fits the weights alone (offsets 0): offsets learn the fitting
    rows' label mix, which a clip in the wild does not share (scripts/fit_recognition.py fits
    without them)."""
    from scipy.optimize import minimize

    mods = list(modalities)
    k = len(BASIC_EMOTIONS)
    L = np.zeros((len(rows), len(mods), k))
    y = np.array([BASIC_EMOTIONS.index(g) for _, g in rows])
    sw = _normalised(sample_weight, len(rows))
    for i, (votes, _) in enumerate(rows):
        for j, m in enumerate(mods):
            if m in votes:
                L[i, j] = reliability(m, votes[m], neutral_discount) * _logp(votes[m])

    def loss(theta):
        w, b = theta[: len(mods)], theta[len(mods) :]
        b = b - b.mean()
        z = np.einsum("imk,m->ik", L, w) + b
        z = z - z.max(axis=1, keepdims=True)
        nll = -((z[np.arange(len(y)), y] - np.log(np.exp(z).sum(axis=1))) * sw).sum()
        return nll + l2_bias * float(b @ b) / k

    theta0 = np.concatenate([np.ones(len(mods)), np.zeros(k)])
    span = 5.0 if offsets else 0.0
    res = minimize(
        loss, theta0, method="L-BFGS-B", bounds=[(0.0, 10.0)] * len(mods) + [(-span, span)] * k
    )
    w, b = res.x[: len(mods)], res.x[len(mods) :] - res.x[len(mods) :].mean()
    return (
        {m: round(float(v), 4) for m, v in zip(mods, w)},
        {c: round(float(v), 4) for c, v in zip(BASIC_EMOTIONS, b)},
    )


def _normalised(sample_weight: Sequence[float] | None, n: int) -> np.ndarray:
    """Row weights summing to 1 (uniform when None)."""
    sw = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    return sw / sw.sum()


def fit_platt(
    q: Sequence[float], correct: Sequence[bool], sample_weight: Sequence[float] | None = None
) -> tuple[float, float]:
    """Platt scaling on logit(q): a 1-feature logistic regression (mild ridge), deterministic;
    ``sample_weight`` weights the rows as in ``fit_pool``."""
    from scipy.optimize import minimize

    x = _logit(np.asarray(q, dtype=float))
    t = np.asarray(correct, dtype=float)
    sw = _normalised(sample_weight, len(x))

    def loss(ab):
        s = ab[0] * x + ab[1]
        return float(((np.logaddexp(0, s) - t * s) * sw).sum() + 1e-3 * ab @ ab)

    res = minimize(loss, np.array([1.0, 0.0]), method="L-BFGS-B")
    return round(float(res.x[0]), 4), round(float(res.x[1]), 4)


def save_params(params: FusionParams, path: Path = PARAMS_FILE) -> None:
    path.write_text(json.dumps(params.model_dump(), indent=1) + "\n")
    load_params.cache_clear()
