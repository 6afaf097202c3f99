"""affectlens.tools.voice_emotion: the shipped JSON model loads and scores real EmoDB speech.

The generalisation check uses ``check_without_speaker``, a model the training script ships in
the same file, fitted on EmoDB without speaker 03: speaker 03's utterances are unseen by it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from affectlens.settings import Settings
from affectlens.tools import voice_emotion as ve
from affectlens.tools.evidence import BASIC_EMOTIONS
from affectlens.tools.media import load
from affectlens.tools.tone import analyze_tone, speech_span


def _emodb(test_data: Path, speaker: str, code: str, n: int) -> list[Path]:
    """The ``n`` utterances of ``speaker`` with emotion ``code`` that listeners recognised best."""
    rows = [
        r
        for r in csv.DictReader(open(test_data / "emodb" / "labels.csv"))
        if r["speaker"] == speaker and r["code"] == code
    ]
    rows.sort(key=lambda r: -float(r["recognised_pct"]))
    return [test_data / "emodb" / r["file"] for r in rows[:n]]


def _feats(path: Path, settings: Settings) -> dict[str, float]:
    audio = load(path, settings).audio
    a, b = speech_span(audio)
    return ve.functionals(audio[a:b])


def test_shipped_model_is_plain_json_over_basic_emotions() -> None:
    model = json.loads(ve.MODEL_PATH.read_text())
    assert set(model["classes"]) <= set(BASIC_EMOTIONS) and "surprise" not in model["classes"]
    assert np.array(model["coef"]).shape == (len(model["classes"]), len(model["features"]))
    assert model["check_without_speaker"]["speaker"] == "03"
    assert ve.MODEL_PATH.stat().st_size < 200_000


def test_held_out_speaker_anger_scores_anger(test_data: Path, settings: Settings) -> None:
    """Speaker 03's clearest anger utterances ('W', Wut), scored by the model that never heard
    speaker 03, put anger on top."""
    check = ve.load_model()["check_without_speaker"]
    for path in _emodb(test_data, "03", "W", 3):
        vote = ve.score(_feats(path, settings), voiced_share=0.6, voiced_s=2.0, model=check).vote
        assert max(vote.probs, key=vote.probs.get) == "anger", (path.name, vote.probs)
        assert sum(vote.probs.values()) == pytest.approx(1.0, abs=1e-3)
        assert vote.probs["surprise"] == 0.0


def test_held_out_speaker_sadness_is_calm_and_negative(test_data: Path, settings) -> None:
    check = ve.load_model()["check_without_speaker"]
    anger = ve.score(_feats(_emodb(test_data, "03", "W", 1)[0], settings), model=check)
    sad = ve.score(_feats(_emodb(test_data, "03", "T", 1)[0], settings), model=check)
    assert sad.arousal < anger.arousal and sad.valence < 0


def test_tone_evidence_carries_the_vote_and_the_cue(test_data: Path, settings) -> None:
    from affectlens.agent.textualise import textualise

    path = _emodb(test_data, "03", "W", 1)[0]
    ev = analyze_tone(load(path, settings), settings)
    assert ev.status == "ok" and ev.vote is not None
    assert 0 < ev.vote.reliability <= 1 and set(ev.vote.probs) == set(BASIC_EMOTIONS)
    cue = next(c for c in textualise({"voice": ev}, 2.0) if c.name == "voice_emotion")
    top = max(ev.vote.probs, key=ev.vote.probs.get)
    assert cue.text.startswith(f"voice emotion model: {top}")


def test_reliability_follows_voiced_share() -> None:
    assert ve.reliability(0.6, 2.0) == 1.0
    assert ve.reliability(0.1, 2.0) < ve.reliability(0.4, 2.0) < 1.0
    assert ve.reliability(0.6, 0.3) < 0.5 and ve.reliability(None, None) == 0.0


@pytest.mark.slow
@pytest.mark.train
def test_refit_reproduces_the_shipped_model(tmp_path: Path) -> None:
    """The one-command training script, rerun, writes the same coefficients (seeded)."""
    import subprocess
    import sys

    out = tmp_path / "voice_emotion.json"
    repo = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, str(repo / "scripts" / "train_voice_emotion.py"), "--out", str(out)],
        check=True,
        cwd=repo,
    )
    new, shipped = json.loads(out.read_text()), ve.load_model()
    assert new["classes"] == shipped["classes"] and new["C"] == shipped["C"]
    np.testing.assert_allclose(new["coef"], shipped["coef"], atol=1e-4)
    assert new["figures"] == shipped["figures"]
