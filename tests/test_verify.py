"""Deterministic verification and normalisation of readings against cues."""

from __future__ import annotations

import pytest

from agent import reason as rs
from agent import verify as vf
from agent.schemas import Cue, EmotionReading

CUES = [
    Cue(id="F1", modality="face", start=0, end=5, name="expression", value=0.62,
        unit="probability", scale="0-1", text="facial expression sadness 0.62, neutral 0.20"),
    Cue(id="F2", modality="face", start=1.2, end=3.4, name="AU15", value=0.81, unit="intensity",
        scale="0-1", text="AU15 lip corner depressor, peak intensity 0.81 (0-1): lip corners down"),
    Cue(id="V1", modality="voice", start=0, end=5, name="voice_arousal", value=-0.4,
        scale="-1..1", text="voice arousal -0.40 (-1..1): a calm, low-arousal voice"),
]
ALL = {"face": True, "speech": False, "voice": True, "scene": False}


def reading(explanation, label="sad", dominant="sadness", secondary=None) -> EmotionReading:
    return EmotionReading(dominant=dominant, secondary=secondary, label=label,
                          explanation=explanation)


GOOD = ["The face is mostly sad at 0.62 [F1] with lip corners down at 0.81 [F2].",
        "The voice is calm, arousal -0.40 [V1].", "Overall the person is sad."]


def kinds(problems):
    return {p.kind for p in problems}


def test_a_good_reading_passes():
    problems = vf.check(reading(GOOD), CUES, ALL)
    assert problems == [] and vf.grounded(problems)


def test_unknown_cue_is_reported_with_the_valid_ids():
    bad = ["The mouth area [F7] shows sadness [F1].", "Voice [V1] is calm, so sad."]
    problems = vf.check(reading(bad), CUES, ALL)
    assert kinds(problems) == {"unknown-cue"} and not vf.grounded(problems)
    assert "F7" in problems[0].message and "F1, F2, V1" in problems[0].message


def test_numbers_must_match_the_cited_cue():
    bad = ["Lip corners down at 0.95 [F2] and sadness 62% [F1].", "Voice [V1] calm: sad."]
    problems = vf.check(reading(bad), CUES, ALL)
    assert kinds(problems) == {"number"} and "0.95" in problems[0].message
    # the percentage (62% = 0.62) and an AU code are not flagged
    assert "62" not in problems[0].message and "15" not in problems[0].message


def test_uncited_sentence_and_missing_modality():
    bad = ["The face looks sad.", "Sadness is clear [F1]."]
    problems = vf.check(reading(bad), CUES, ALL)
    assert {"uncited", "modality"} <= kinds(problems)
    assert any("voice" in p.message for p in problems if p.kind == "modality")


def test_label_and_explanation_must_agree():
    problems = vf.check(reading(GOOD[:2] + ["So: happy."], label="happy", dominant="happiness"),
                        CUES, ALL)
    assert "agreement" not in kinds(problems)
    problems = vf.check(reading(GOOD[:2], label="angry", dominant="anger"), CUES, ALL)
    assert "agreement" in kinds(problems)
    problems = vf.check(reading(GOOD, label="blorptastic", dominant="sadness"), CUES, ALL)
    assert "label" in kinds(problems)


@pytest.mark.parametrize("text, ids", [
    ("a [F1] b [F2, V1] c [S1][C2]", ["F1", "F2", "V1", "S1", "C2"]),
    ("no citation, just AU12 at 0.5", []),
])
def test_cited_ids(text, ids):
    assert vf.cited_ids(text) == ids


def test_numbers_ignore_times_ids_and_au_codes():
    assert vf.numbers("AU12 at 00:01.2 peaks 0.81 [F2], 40% of 3 frames") == [0.81, 0.4, 3.0]
    assert vf.numbers("F2 1.2-3.4s AU15 peak 0.81 (0-1)") == [0.81, 0.0, 1.0]  # spans are times


def test_normalise_fixes_label_conflicts_and_probabilities():
    raw = rs.LLMReading(explanation=["Sad face [F1]. Calm voice [V1], so sad."],
                        label="happily surprised", dominant="sadness", secondary="fear",
                        valence=-0.5, arousal=-0.2, confidence=0.7, conflicts=["F2", "Z9"])
    status = {"face": ("ok", ""), "speech": ("missing", "no audio"), "voice": ("ok", ""),
              "scene": ("failed", "boom")}
    r, fixes = rs.normalise(raw, CUES, status, {"sadness": 0.6, "neutral": 0.4})
    assert r.label == "fearfully sad" and r.dominant == "sadness" and r.secondary == "fear"
    assert any("label" in f for f in fixes) and any("Z9" in f for f in fixes)
    assert r.conflicts == ["F2"] and len(r.explanation) == 2
    assert sum(r.probabilities.values()) == pytest.approx(1, abs=1e-3)
    assert max(r.probabilities, key=r.probabilities.get) == "sadness"
    acc = {a.modality: a for a in r.modalities}
    assert "[F1]" in acc["face"].summary and acc["scene"].status == "failed"
    assert "boom" in acc["scene"].summary and acc["speech"].status == "missing"


def test_normalise_keeps_an_agreeing_label_without_a_fix():
    raw = rs.LLMReading(explanation=["x [F1]."], label="Sadly angry", dominant="anger",
                        secondary="sadness", valence=-0.6, arousal=0.5, confidence=0.5)
    r, fixes = rs.normalise(raw, CUES, {"face": ("ok", "")}, {})
    assert r.label == "sadly angry" and fixes == []


def test_a_claim_of_several_sentences_cites_once_at_its_end():
    """The structured reading writes one claim as 'text [ids].'; when the text holds two
    sentences the ids cover both (a repair round for that cost a 1.5B model ~15 s)."""
    two = reading(["The face is mostly sad at 0.62. The lip corners are down [F1][F2].",
                   "The voice is calm [V1].", "Overall the person is sad."])
    assert "uncited" not in kinds(vf.check(two, CUES, ALL))
    # A sentence after the last citation of its item is not covered.
    trailing = reading(["The face is sad [F1]. The lips are down.", "The voice is calm [V1].",
                        "Overall the person is sad."])
    assert [p.kind for p in vf.check(trailing, CUES, ALL)].count("uncited") == 1
    # Numbers in the covered sentence are checked against the covering cues.
    wrong = reading(["The face is sad at 0.75. The lips are down [F1][F2].",
                     "The voice is calm [V1].", "Overall the person is sad."])
    assert "number" in kinds(vf.check(wrong, CUES, ALL))
