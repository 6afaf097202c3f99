"""What the graph stores, on the real tools' output for a talking-face clip (face, speech,
voice and scene, with test_scene's tiny random CLIP, all produce cues): the analysed file's
path (chat's re-run reopens it), a conclusion that survives when every modality has a claim,
and no "grounded" badge on a reading that has no evidence. The LLM is a stand-in that fills
the per-analysis schema the real LLM is constrained to, so the reading is valid for whatever
the tools produced."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SchemaFiller
from test_scene import TINY, tiny_weights  # noqa: F401 - the tiny random CLIP, a fixture

from affectlens.agent.run import analyze, reason_again
from affectlens.agent.schemas import MODALITIES
from affectlens.agent.store import AnalysisStore
from affectlens.settings import Settings

pytestmark = pytest.mark.slow  # real models (face, whisper, MiniLM, a VLM): seconds each


@pytest.fixture(scope="module")
def stored(talking_clip, tiny_weights, tmp_path_factory):
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("record"),
        verify_max_rounds=0,
        clip_model=TINY,
        clip_pretrained=str(tiny_weights),
    )
    llm = SchemaFiller()
    result = analyze(talking_clip, settings, llm=llm)
    return settings, result, llm


def test_the_analysed_file_is_recorded_so_chat_can_reopen_it(stored, talking_clip):
    settings, result, _ = stored
    assert result.source == str(Path(talking_clip).resolve())
    assert AnalysisStore(settings).get(result.id).source == result.source
    # re-reasoning on stored evidence keeps pointing at the same file
    again = reason_again(result, settings, without=["scene"], llm=SchemaFiller())
    assert again.source == result.source


def test_the_conclusion_survives_when_all_four_modalities_have_cues(stored):
    _, result, llm = stored
    assert {c.modality for c in result.cues} == set(MODALITIES), result.cues
    assert len(llm.calls) == 1
    explanation = result.reading.explanation
    assert len(explanation) == len(MODALITIES) + 1
    assert "happiness" in explanation[-1]
    assert not any("dominant" in p for p in result.verification.problems), (
        result.verification.problems
    )
    assert result.verification.grounded


def test_a_reading_without_cues_is_not_grounded(stored):
    settings, result, _ = stored
    llm = SchemaFiller()
    empty = reason_again(result, settings, without=list(MODALITIES), llm=llm)
    assert not empty.cues and len(llm.calls) == 0
    assert empty.reading.confidence == 0.0
    assert not empty.verification.grounded
    assert any("no cue" in p for p in empty.verification.problems)
