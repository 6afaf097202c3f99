"""Voice emotion: a categorical scorer over the 7 basic emotions on eGeMAPS functionals.

A multinomial logistic regression fitted by ``scripts/train_voice_emotion.py`` on EmoDB
(see docs/models/voice-emotion.md for data, protocol and figures), shipped as plain JSON
(feature names, normalisation, coefficients): no pickle, nothing to download.

EmoDB has no surprise: the model never votes for it (probability 0), and says so in its card.
Arousal and valence are the expectation of each class's circumplex position
(``affectlens.taxonomy.circumplex_point``) under the class probabilities, so they follow the same
fitted model.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from affectlens.cache import model_cache
from affectlens.taxonomy import circumplex_point
from affectlens.tools.evidence import BASIC_EMOTIONS, EmotionVote

SR = 16000
MODEL_PATH = Path(__file__).with_name("voice_emotion.json")


@model_cache(maxsize=1)
def _functionals_smile():
    import opensmile

    return opensmile.Smile(
        feature_set=opensmile.FeatureSet.eGeMAPSv02,
        feature_level=opensmile.FeatureLevel.Functionals,
    )


def functionals(speech: np.ndarray) -> dict[str, float]:
    """All 88 eGeMAPSv02 functionals of a 16 kHz mono signal (the speech span only): the one
    extractor for the model's input, tools.tone's named features and the training script."""
    row = _functionals_smile().process_signal(np.asarray(speech, dtype=np.float32), SR).iloc[0]
    return {k: float(v) for k, v in row.items()}


# the model (fitted by scripts/train_voice_emotion.py) -----------------------------------------
# "global": z-score with the training set's mean/SD. "gender": z-score with the mean/SD of the
# training clips of the same sex, the sex guessed from the clip's own mean F0 (works on one clip;
# no speaker enrolment needed).
NORMS = ("global", "gender")
DEFAULT_NORM = "global"
F0_MEAN = "F0semitoneFrom27.5Hz_sma3nz_amean"


def norm_stats(X: np.ndarray, groups: np.ndarray, norm: str, names: list[str]) -> dict:
    """Normalisation statistics from training rows (``groups``: each row's sex)."""
    if norm == "global":
        return {"mean": {"all": X.mean(0).tolist()}, "sd": {"all": (X.std(0) + 1e-9).tolist()}}
    f0 = X[:, names.index(F0_MEAN)]
    medians = [float(np.median(f0[groups == g])) for g in ("female", "male")]
    threshold = sum(medians) / 2
    guess = np.where(f0 >= threshold, "female", "male")
    return {
        "f0_threshold_st": threshold,
        "mean": {g: X[guess == g].mean(0).tolist() for g in ("female", "male")},
        "sd": {g: (X[guess == g].std(0) + 1e-9).tolist() for g in ("female", "male")},
    }


def normalise(X: np.ndarray, model: dict) -> np.ndarray:
    X = np.atleast_2d(np.asarray(X, dtype=float))
    key: np.ndarray  # the normalisation group of each row
    if model["norm"] == "global":
        key = np.full(len(X), "all")
    else:
        f0 = X[:, model["features"].index(F0_MEAN)]
        key = np.where(f0 >= model["f0_threshold_st"], "female", "male")
    mean = np.array([model["mean"][k] for k in key])
    sd = np.array([model["sd"][k] for k in key])
    return np.clip((X - mean) / sd, -6, 6)  # one wild functional cannot dominate


def logits(X: np.ndarray, model: dict) -> np.ndarray:
    return normalise(X, model) @ np.array(model["coef"]).T + np.array(model["intercept"])


def save(model: dict, path: Path) -> None:
    def rounded(v):
        if isinstance(v, float):
            return float(f"{v:.6g}")
        if isinstance(v, list):
            return [rounded(x) for x in v]
        if isinstance(v, dict):
            return {k: rounded(x) for k, x in v.items()}
        return v

    path.write_text(json.dumps(rounded(model), indent=1) + "\n")


class VoiceEmotion(BaseModel):
    """What the scorer says about one clip."""

    vote: EmotionVote
    arousal: float
    valence: float


@lru_cache(maxsize=2)
def load_model(path: Path = MODEL_PATH) -> dict:
    model = json.loads(Path(path).read_text())
    missing = set(model["classes"]) - set(BASIC_EMOTIONS)
    if missing:
        raise ValueError(f"{path}: classes outside BASIC_EMOTIONS: {missing}")
    return model


def reliability(voiced_share: float | None, voiced_s: float | None) -> float:
    """How far to trust the vote: full when at least half the speech span is voiced and there
    is at least 1 s of voice (EmoDB utterances: median voiced share ~0.6, 1-5 s); less below."""
    share = min(max((voiced_share or 0.0) / 0.5, 0.0), 1.0)
    amount = min(max((voiced_s or 0.0) / 1.0, 0.0), 1.0)
    return round(share * amount, 3)


def score(
    feats: dict[str, float],
    *,
    voiced_share: float | None = None,
    voiced_s: float | None = None,
    model: dict | None = None,
) -> VoiceEmotion:
    """The 7-class vote (surprise 0: not in the training data), arousal and valence."""
    model = model or load_model()
    x = np.array([[feats[n] for n in model["features"]]], dtype=float)
    z = logits(np.nan_to_num(x), model)[0]
    p = np.exp(z - z.max())
    p /= p.sum()
    probs = {k: 0.0 for k in BASIC_EMOTIONS} | {
        k: round(float(v), 4) for k, v in zip(model["classes"], p)
    }
    valence, arousal = circumplex_point(probs)
    name = f"voice-emotion LR/eGeMAPS ({model['norm']} norm, {model['trained_on']})"
    vote = EmotionVote(probs=probs, reliability=reliability(voiced_share, voiced_s), model=name)
    return VoiceEmotion(vote=vote, arousal=arousal, valence=valence)
