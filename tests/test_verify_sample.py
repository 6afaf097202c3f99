"""The sample clip's explanation answers to its cues, on the real tools' output.

Issue 14: the bundled sample was read as surprised with "narrowed eyes and a raised chin" while
citing the AU05 (widened eyes) and AU43 (eyes closed) cues, and the verifier did not notice.
The cues here come from running the face, voice and speech tools on samples/sample.mp4 and the
textualiser on their evidence; the claims are built from those cues, never from fixed ids.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from affectlens.agent import lexicon
from affectlens.agent import verify as vf
from affectlens.agent.citations import cited_ids, split_sentences
from affectlens.agent.run import analyze, reason_again
from affectlens.agent.schemas import AnalysisResult, EmotionReading
from affectlens.agent.textualise import AU_GLOSS, textualise
from affectlens.settings import Settings
from affectlens.taxonomy import ADJECTIVE, labels_in

pytestmark = pytest.mark.slow

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "sample.mp4"
ALL = {"face": True, "speech": True, "voice": True, "scene": False}


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> AnalysisResult:
    """The sample's real evidence (face, voice, speech tools), without reasoning."""
    from affectlens.tools.asr import transcribe
    from affectlens.tools.face import analyze_face
    from affectlens.tools.media import load
    from affectlens.tools.tone import analyze_tone

    settings = Settings(data_dir=tmp_path_factory.mktemp("verify-sample"))
    media = load(SAMPLE, settings)
    return AnalysisResult(
        id="sample",
        media=media.info,
        face=analyze_face(media, settings),
        voice=analyze_tone(media, settings),
        speech=transcribe(media, settings),
    )


@pytest.fixture(scope="module")
def cues(sample):
    return textualise(
        {"face": sample.face, "voice": sample.voice, "speech": sample.speech},
        sample.media.duration_s,
    )


def au_cue(cues, code):
    found = [c for c in cues if lexicon.au_code(c.name) == code]
    assert found, f"the sample no longer shows {code}: {[c.name for c in cues]}"
    return found[0]


def cited_cues(sentence, cues):
    by_id = {c.id: c for c in cues}
    return [by_id[i] for i in cited_ids(sentence) if i in by_id]


def contradictions(explanation, cues):
    """Every claim's mentions its cited cues do not show (the property the issue asks for)."""
    return [
        (s, m.phrase)
        for s in split_sentences(explanation)
        for m, _ in vf.unsupported(s, cited_cues(s, cues), cues)
    ]


def the_issue_reading(cues) -> EmotionReading:
    """The reading issue 14 reports, citing the sample's real AU05 and AU43 cues."""
    wide, closed = au_cue(cues, "AU05"), au_cue(cues, "AU43")
    return EmotionReading(
        dominant="surprise",
        label="surprised",
        explanation=[
            f"The person looks surprised, with narrowed eyes and a raised chin "
            f"[{wide.id}][{closed.id}]."
        ],
    )


def test_narrowed_eyes_and_a_raised_chin_citing_au05_and_au43_is_caught(cues):
    problems = vf.check(the_issue_reading(cues), cues, ALL)
    content = [p.message for p in problems if p.kind == "content"]
    assert len(content) == 2 and not vf.grounded(problems), content
    assert "'narrowed eyes'" in content[0] and "'raised chin'" in content[1]


def test_a_faithful_explanation_of_the_same_cues_passes(cues):
    """Claims written from the cues' own content: the AU glosses, the voice's arousal words,
    a stretch of the transcript quoted word for word."""
    wide, closed = au_cue(cues, "AU05"), au_cue(cues, "AU43")
    gloss = lambda c: AU_GLOSS[f"AU{int(c.name[2:])}"]  # noqa: E731
    said = next(c for c in cues if c.modality == "speech")
    words = str(said.value).split()
    arousal = [c for c in cues if c.modality == "voice" and "arousal" in c.text]
    level = next(c for c in arousal if "high arousal" in c.text)
    explanation = [
        f"The face shows {gloss(wide)} and {gloss(closed)} [{wide.id}][{closed.id}].",
        f'The speaker says "{" ".join(words[3:9])}" [{said.id}].',
        f"The voice sounds excited at one point [{level.id}].",
        f"Overall the person looks surprised [{wide.id}][{level.id}].",
    ]
    reading = EmotionReading(dominant="surprise", label="surprised", explanation=explanation)
    assert contradictions(explanation, cues) == []
    assert not [p for p in vf.check(reading, cues, ALL) if p.kind == "content"]
    # the same voice words against a cue that says the opposite are caught
    calm = next((c for c in arousal if "low arousal" in c.text), None)
    if calm is not None:
        assert contradictions([f"The voice sounds excited [{calm.id}]."], cues)


def test_the_samples_words_claim_citing_face_cues_is_caught(cues):
    """The sample's stored conclusion on 2026-12-04 said "The words are neutral, with a slight
    hint of happiness" citing only face cues; the words are in the speech cues."""
    face = [c.id for c in cues if c.modality == "face"][:3]
    speech = [c.id for c in cues if c.modality == "speech"]
    claim = "The words are neutral, with a slight hint of happiness"
    found = contradictions([claim + "".join(f"[{i}]" for i in face) + "."], cues)
    assert [phrase for _, phrase in found] == ["The words"]
    assert contradictions([f"{claim} [{speech[-1]}]."], cues) == []


def test_prune_keeps_the_conclusion_and_lists_the_cut(cues):
    reading = the_issue_reading(cues)
    kept, dropped = vf.prune(reading, cues)
    assert contradictions(kept, cues) == []
    assert ADJECTIVE["surprise"] in " ".join(kept) and "surprise" in labels_in(" ".join(kept))
    assert [d.text for d in dropped] == reading.explanation and len(dropped[0].reasons) == 2


class ScriptedLLM:
    """An LLM that writes the same claims whatever it is asked (``claims``, from the sample's
    real cues), concluding surprise. Like a grammar-bound model it writes only the fields in
    the JSON schema it is given."""

    model_id = "scripted"

    def __init__(self, cues):
        self.cues, self.calls = cues, []

    def claims(self) -> dict:
        raise NotImplementedError

    def chat(self, messages, schema=None, **kw):
        from affectlens.agent import reason as rs

        self.calls.append(messages)
        fields = {
            **self.claims(),
            "dominant": "surprise",
            "secondary": "none",
            "valence": 0.1,
            "arousal": 0.6,
            "confidence": 0.6,
            "conflicts": [],
        }
        schema = schema or rs.LLMReading
        return schema.model_validate({k: fields[k] for k in rs.written(schema)})


class Stubborn(ScriptedLLM):
    """Repeats the issue's reading whatever the repair request says: the graph must send it
    back, then store only what the cues show."""

    def claims(self) -> dict:
        ids = {m: [c.id for c in self.cues if c.modality == m] for m in ("speech", "voice")}
        bad = the_issue_reading(self.cues).explanation[0]
        face_ids = cited_ids(bad)
        return {
            "face": {"text": "Narrowed eyes and a raised chin.", "cues": face_ids},
            "speech": {"text": "The speaker talks about the country.", "cues": ids["speech"][:1]},
            "voice": {"text": "The voice varies in arousal.", "cues": ids["voice"][:1]},
            "conclusion": {"text": bad.split(" [")[0], "cues": face_ids},
        }


def test_the_graph_repairs_then_drops_what_still_contradicts_the_cues(sample, cues, tmp_path):
    """Issue 14's reading was the LLM's own pick (decision = "llm"); under the default decision
    the fused emotion is filled in and the conclusion must name it instead."""
    settings = Settings(data_dir=tmp_path, verify_max_rounds=1, decision="llm")
    llm = Stubborn(cues)
    result = reason_again(sample, settings, llm=llm)
    assert len(llm.calls) == 2  # the first answer and one repair round
    assert "narrowed eyes" in llm.calls[1][-1]["content"]  # the repair request names it
    r, report = result.reading, result.verification
    assert contradictions(r.explanation, result.cues) == []
    assert "surprise" in labels_in(" ".join(r.explanation))
    assert any("raised chin" in d.text for d in report.dropped_claims)
    assert not any("raised chin" in a.summary for a in r.modalities)


def test_under_the_fused_decision_the_stored_conclusion_names_the_decided_emotion(
    sample, cues, tmp_path
):
    """The default decision: the stubborn LLM still concludes "surprised" and names a frown no
    cue shows; what is stored is the fused emotion, concluded as such, and no such claim."""
    settings = Settings(data_dir=tmp_path, verify_max_rounds=1)
    llm = Stubborn(cues)
    result = reason_again(sample, settings, llm=llm)
    decided = result.fusion.top
    assert result.reading.dominant == decided and decided in llm.calls[0][-1]["content"]
    assert len(llm.calls) == 2
    assert contradictions(result.reading.explanation, result.cues) == []
    assert decided in labels_in(result.reading.explanation[-1]), result.reading.explanation
    assert result.fusion.llm_dominant is None  # the LLM named no pick of its own


class Frowner(ScriptedLLM):
    """Faithful but for a frown in its face claim (the 1.5B's commonest slip on the bench):
    written from the sample's real cues, like the faithful test above."""

    def claims(self) -> dict:
        wide, closed = au_cue(self.cues, "AU05"), au_cue(self.cues, "AU43")
        said = next(c for c in self.cues if c.modality == "speech")
        level = next(c for c in self.cues if c.modality == "voice" and "high arousal" in c.text)
        gloss = AU_GLOSS[f"AU{int(wide.name[2:])}"]
        return {
            "face": {"text": f"The face shows {gloss}, then a frown", "cues": [wide.id, closed.id]},
            "speech": {"text": f'The speaker says "{said.value}"', "cues": [said.id]},
            "voice": {"text": "The voice sounds excited at one point", "cues": [level.id]},
            "conclusion": {"text": "Overall the person looks surprised", "cues": [wide.id]},
        }


@pytest.mark.parametrize("prune_first", [True, False])
def test_a_frown_no_cue_shows_is_cut_at_once_when_the_cut_is_clean(
    sample, cues, tmp_path, prune_first
):
    """settings.verify_prune_first: the frown is cut with no repair round (the face claim keeps
    the widened eyes); without it the graph asks the LLM again, and cuts it after that round."""
    settings = Settings(
        data_dir=tmp_path, verify_max_rounds=1, decision="llm", verify_prune_first=prune_first
    )
    llm = Frowner(cues)
    result = reason_again(sample, settings, llm=llm)
    report = result.verification
    assert len(llm.calls) == (1 if prune_first else 2)
    assert report.grounded and not report.problems, report
    [dropped] = report.dropped_claims
    assert "frown" in dropped.text and dropped.kept and "frown" not in dropped.kept
    assert dropped.kept in result.reading.explanation
    assert contradictions(result.reading.explanation, result.cues) == []
    assert "frown" not in " ".join(a.summary for a in result.reading.modalities)


def test_the_sample_end_to_end_never_stores_a_claim_its_cues_do_not_show(tmp_path):
    """The default model on the sample: whatever it writes, the stored explanation names only
    what its cited cues show, and still concludes with the dominant emotion."""
    settings = Settings(data_dir=tmp_path, llm_model="qwen2.5-1.5b")
    result = analyze(SAMPLE, settings)
    r = result.reading
    assert r is not None, result.error
    assert contradictions(r.explanation, result.cues) == [], result.verification
    assert r.dominant in labels_in(" ".join(r.explanation)), r.explanation
    for d in result.verification.dropped_claims:
        assert d.text not in r.explanation and d.reasons
    print("\nexplanation:", r.explanation, "\ndropped:", result.verification.dropped_claims)
