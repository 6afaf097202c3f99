"""The per-analysis JSON schema makes citations structural: only real ids, per modality."""

import json

import pytest
from pydantic import ValidationError

from affectlens.agent import reason as rs
from affectlens.agent.schemas import Cue


def _cue(i: str, m: str) -> Cue:
    return Cue(id=i, modality=m, start=0, end=1, name="x", text=f"{i} cue")


CUES = [_cue("F1", "face"), _cue("F2", "face"), _cue("S1", "speech"), _cue("V1", "voice")]
GOOD = {
    "face": {"text": "The lips are pulled down", "cues": ["F1"]},
    "speech": {"text": "The words are about loss", "cues": ["S1"]},
    "voice": {"text": "The voice is low and slow", "cues": ["V1"]},
    "conclusion": {"text": "Overall the person is sad", "cues": ["F1", "V1"]},
    "label": "sad",
    "dominant": "sadness",
    "valence": -0.6,
    "arousal": -0.3,
    "confidence": 0.7,
    "conflicts": [],
}


def test_schema_has_one_claim_per_available_modality_then_the_emotions():
    schema = rs.schema_for(CUES).model_json_schema()
    assert list(schema["properties"])[:6] == [
        "face",
        "speech",
        "voice",
        "conclusion",
        "dominant",
        "secondary",
    ]
    # No free-text label to copy from the prompt: the taxonomy composes it.
    assert "scene" not in schema["properties"] and "label" not in schema["properties"]


def test_claims_can_only_cite_their_own_modality_and_must_cite():
    model = rs.schema_for(CUES)
    model.model_validate(GOOD)
    with pytest.raises(ValidationError):
        model.model_validate({**GOOD, "face": {"text": "x", "cues": ["V1"]}})  # voice id in face
    with pytest.raises(ValidationError):
        model.model_validate({**GOOD, "voice": {"text": "x", "cues": []}})  # uncited
    with pytest.raises(ValidationError):
        model.model_validate({**GOOD, "conclusion": {"text": "x", "cues": ["F9"]}})  # no such cue


def test_a_decided_emotion_is_the_only_dominant_the_schema_allows():
    """When the fused witnesses decided (affectlens.agent.nodes), the schema admits only their
    emotion, the conclusion is asked to name it, and the LLM generates neither it nor a
    confidence, valence, arousal or conflicts (the grammar's JSON schema leaves them out; the
    reading fills them in from the fused witnesses)."""
    model = rs.schema_for(CUES, "sadness")
    model.model_validate(GOOD)
    with pytest.raises(ValidationError):
        model.model_validate({**GOOD, "dominant": "happiness"})
    schema = model.model_json_schema()
    assert "sadness" in json.dumps(schema["properties"]["conclusion"])
    filled = ("dominant", "confidence", "valence", "arousal", "conflicts")
    assert not set(filled) & set(schema["properties"])
    assert set(filled) <= set(rs.schema_for(CUES).model_json_schema()["properties"])
    written = {k: v for k, v in GOOD.items() if k not in filled}
    assert model.model_validate(written).dominant == "sadness"
    assert rs.schema_for(CUES).model_validate({**GOOD, "dominant": "happiness"})


def test_a_claim_is_one_sentence_in_the_grammar_but_any_stored_text_validates():
    """The claim text's JSON-schema pattern (the grammar closes the string where the sentence
    ends); pydantic does not enforce it, so a stored claim of two sentences still loads."""
    import re

    text = rs.schema_for(CUES).model_json_schema()["$defs"]["FaceClaim"]["properties"]["text"]
    one = re.compile(text["pattern"])
    assert one.match("The face is sad at 0.62, lips 'gone.' and down.")
    assert not one.match("The face is sad. The voice is low.")
    assert not one.match('He said "no".')  # quotes inside are single quotes
    assert not one.match("x" * 161)
    assert rs.Claim(text="Sad face. Low voice.", cues=["F1"]).sentence == (
        "Sad face. Low voice [F1]."
    )


def test_structured_reading_normalises_to_cited_sentences():
    raw = rs.schema_for(CUES).model_validate(GOOD)
    status = {
        "face": ("ok", ""),
        "speech": ("ok", ""),
        "voice": ("ok", ""),
        "scene": ("missing", ""),
    }
    reading, _ = rs.normalise(raw, CUES, status, {})
    assert reading.explanation[0] == "The lips are pulled down [F1]."
    assert reading.explanation[-1] == "Overall the person is sad [F1][V1]."
    assert reading.label == "sad"
    accounts = {a.modality: a for a in reading.modalities}
    assert "[S1]" in accounts["speech"].summary and accounts["scene"].status == "missing"


def test_a_claim_cut_by_the_length_limit_keeps_only_what_was_finished():
    """Seen on the sample: the grammar closed a face claim at SENTENCE_CHARS in the middle of
    a word ("The voice is calm and low, with a sl"), and the fragment reached the card."""
    from affectlens.agent.reason import SENTENCE_CHARS, Claim

    text = (
        "The person is looking sad, with widened eyes and a raised chin, and the words are "
        "neutral, with a slight hint of happiness. The voice is calm and low, with a slight hint"
    )[:SENTENCE_CHARS]
    assert text.endswith("with a sl")
    sentence = Claim(text=text, cues=["F1"]).sentence
    assert sentence.endswith("with a slight hint of happiness [F1].")
    # clauses, when no sentence finished; a claim under the limit is left alone
    clauses = ("The eyes stay closed, the jaw drops slowly " * 6)[:SENTENCE_CHARS]
    assert clauses.endswith("the jaw d")
    assert Claim(text=clauses, cues=["F1"]).sentence.endswith("slowly The eyes stay closed [F1].")
    assert Claim(text="Low, with a slight hint", cues=["V1"]).sentence == (
        "Low, with a slight hint [V1]."
    )


def test_fast_mode_picks_the_small_reasoner_unless_a_model_is_named():
    from affectlens.settings import FAST_LLM_MODEL, Settings

    assert Settings(fast=True).llm_model == FAST_LLM_MODEL != Settings().llm_model
    assert Settings(fast=True, llm_model="qwen2.5-1.5b").llm_model == "qwen2.5-1.5b"
    # and no repair round unless one is asked for
    assert (Settings(fast=True).verify_max_rounds, Settings().verify_max_rounds) == (0, 1)
    assert Settings(fast=True, verify_max_rounds=2).verify_max_rounds == 2


FIELDS_AFTER_CLAIMS = ["dominant", "secondary", "valence", "arousal", "confidence", "conflicts"]


def test_a_repair_round_writes_again_only_the_claims_that_were_wrong():
    previous = rs.schema_for(CUES).model_validate(GOOD)
    assert rs.redo_fields(previous, [2]) == ["speech"]  # the speech claim was wrong: only it
    # the conclusion (sentence 4) wrong, or the label or its emotion (no sentence): it and the
    # decision fields
    assert rs.redo_fields(previous, [2, 4]) == ["speech", "conclusion", *FIELDS_AFTER_CLAIMS]
    assert rs.redo_fields(previous, []) == ["conclusion", *FIELDS_AFTER_CLAIMS]
    assert rs.redo_fields(previous, None) is None  # the whole reading was wrong
    assert rs.redo_fields(rs.LLMReading.model_validate(GOOD | {"explanation": ["x"]}), [1]) is None
    decided = rs.schema_for(CUES, "sadness").model_validate(GOOD)
    written = ["secondary"]  # dominant, confidence, valence, arousal, conflicts: filled in
    assert rs.redo_fields(decided, []) == ["conclusion", *written]  # only what the LLM writes
    redo = rs.redo_fields(decided, [2])
    repair = rs.schema_for(CUES, "sadness", only=redo)
    assert list(repair.model_fields) == ["speech"]  # nothing else to generate again
    with pytest.raises(ValidationError):  # still only this modality's ids
        repair.model_validate({"speech": {"text": "x", "cues": ["F1"]}})
    new = repair.model_validate({"speech": {"text": "The words are about a loss", "cues": ["S1"]}})
    full = rs.merged(decided, new, rs.schema_for(CUES, "sadness"))
    for kept in ("face", "voice", "conclusion"):  # they stand as written
        assert getattr(full, kept).model_dump() == getattr(decided, kept).model_dump()
    assert full.speech.text == "The words are about a loss" and full.dominant == "sadness"
    again = rs.schema_for(CUES, "sadness", only=rs.redo_fields(decided, []))
    assert "dominant" not in again.model_json_schema()["properties"]


def test_the_repair_turn_names_the_fields_to_write_again():
    previous = rs.schema_for(CUES).model_validate(GOOD)
    msgs = rs.messages("h", CUES, [], previous, ["Sentence 2 cites nothing."], ["speech"])
    assert msgs[-2] == {"role": "assistant", "content": previous.model_dump_json()}
    assert "Sentence 2 cites nothing." in msgs[-1]["content"]
    assert "only these fields, corrected: speech." in msgs[-1]["content"]
    every = rs.messages("h", CUES, [], previous, ["x"])[-1]["content"]
    assert "face, speech, voice, conclusion, dominant" in every
    assert "+repair.v2" in rs.prompt_versions()["prompt"]  # a batch's fingerprint changes with it


def test_the_reason_node_sends_the_narrowed_schema_and_keeps_the_other_claims(tmp_path):
    """The wiring: the verifier's sentences in the state -> the repair schema the LLM gets ->
    the merged reading."""
    from types import SimpleNamespace

    from affectlens.agent import nodes
    from affectlens.agent.state import RunContext
    from affectlens.settings import Settings
    from tests.conftest import SchemaFiller

    previous = rs.schema_for(CUES).model_validate(GOOD)
    llm = SchemaFiller(claim_text={m: f"Rewritten {m}." for m in ("face", "speech", "voice")})
    seen = []
    chat = llm.chat
    llm.chat = lambda msgs, schema=None, **kw: seen.append(schema) or chat(msgs, schema, **kw)
    state = {
        "cues": CUES,
        "status": {m: ("ok", "") for m in ("face", "speech", "voice")} | {"scene": ("missing", "")},
        "rounds": 1,
        "raw": previous,
        "problems": ["Sentence 3 quotes 9, which is not in V1; quote the cue values exactly."],
        "redo": [3],
    }
    runtime = SimpleNamespace(context=RunContext(settings=Settings(data_dir=tmp_path), llm=llm))
    update = nodes.reason_node(state, runtime)
    assert list(seen[0].model_fields) == ["voice"]  # only the claim found wrong
    raw = update["raw"]
    assert raw.face.text == GOOD["face"]["text"] and raw.speech.text == GOOD["speech"]["text"]
    assert raw.voice.text == "Rewritten voice."
    assert update["reading"].explanation[2] == "Rewritten voice [V1]."


@pytest.mark.parametrize("decision", ["fusion", "llm"])
def test_who_decides_is_settled_in_the_first_prompt(tmp_path, decision):
    """When the fused witnesses decide, the first turn states their emotion and the schema
    allows only it: the LLM explains it at once (no repair round for a disagreement) and names
    no pick of its own, so no conflict is recorded. When the LLM decides, its turn carries no
    decision and its own pick stands, the disagreement reported. A repair round repeats the
    first prompt unchanged (the prompt cache reuses it)."""
    from types import SimpleNamespace

    from affectlens.agent import nodes
    from affectlens.agent.fusion import FusedReading
    from affectlens.agent.state import RunContext
    from affectlens.settings import Settings
    from tests.conftest import SchemaFiller

    fused = FusedReading(probs={"sadness": 0.6, "happiness": 0.4}, top="sadness", confidence=0.6)
    state = {
        "cues": CUES,
        "status": {m: ("ok", "") for m in ("face", "speech", "voice")} | {"scene": ("missing", "")},
        "header": "Clip: 4.0 s, one person.",
        "knowledge_text": ["Lowered lip corners go with sadness."],
        "fusion": fused,
    }
    llm = SchemaFiller(dominant="happiness")
    settings = Settings(data_dir=tmp_path, decision=decision)
    runtime = SimpleNamespace(context=RunContext(settings=settings, llm=llm))
    first = nodes.reason_node(state, runtime)
    told = "the dominant emotion is sadness" in llm.calls[0][-1]["content"]
    if decision == "fusion":
        assert told and first["raw"].dominant == "sadness"
        assert first["fusion"].llm_dominant is None and first["fusion"].conflict is None
    else:
        assert not told and first["raw"].dominant == "happiness"
        assert first["fusion"].llm_dominant == "happiness"
        assert "happiness" in first["fusion"].conflict and "sadness" in first["fusion"].conflict
    problem = "Sentence 1 names 'frowning', a facial action its cited cues do not show."
    state |= {"rounds": 1, "raw": first["raw"], "problems": [problem], "redo": [1]}
    second = nodes.reason_node(state, runtime)
    asked_first, asked_again = llm.calls
    assert asked_again[: len(asked_first)] == asked_first
    assert problem in asked_again[-1]["content"]
    assert second["reading"].dominant == first["reading"].dominant
