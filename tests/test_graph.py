"""The analysis graph's wiring on real media: parallel tool branches, a failing tool caught,
modalities left out, stage progress, the verify loop repairing a bad first reading (with the
real embedded LLM after it), and re-reasoning on stored evidence."""

from __future__ import annotations

import threading
import time

import pytest

from affectlens.agent.graph import build_graph
from affectlens.agent.run import analyze, reason_again
from affectlens.agent.schemas import MODALITIES
from affectlens.agent.store import AnalysisStore
from affectlens.agent.verify import cited_ids
from affectlens.settings import Settings
from tests.conftest import SchemaFiller, reverified

BAD_NUMBER = "4321"  # a value no cue shows


class FirstBad:
    """The first reasoning call fills the production schema but quotes a number no cited cue
    shows; every later call goes to the real embedded LLM."""

    def __init__(self, real):
        self.real = real
        self.model_id = real.model_id
        self.calls: list[list[dict]] = []
        quoted = {"face": f"The face shows an intensity of {BAD_NUMBER}."}
        self.bad = SchemaFiller(claim_text=quoted)

    def chat(self, messages, schema=None, **kw):
        self.calls.append(messages)
        if len(self.calls) == 1:
            return self.bad.chat(messages, schema, **kw)
        return self.real.chat(messages, schema, **kw)


def test_graph_shape():
    g = build_graph("probe").get_graph()
    edges = {(e.source, e.target) for e in g.edges}
    for m in MODALITIES:
        assert ("probe", m) in edges and (m, "textualise") in edges
    assert {("verify", "reason"), ("verify", "store"), ("reason", "verify")} <= edges
    g2 = build_graph("textualise").get_graph()
    assert "probe" not in g2.nodes and "face" not in g2.nodes


def test_tools_run_in_parallel_and_a_failing_tool_is_caught(face_clip, settings, monkeypatch):
    import affectlens.tools.scene

    def broken(media, settings):
        raise RuntimeError("scene model exploded")

    monkeypatch.setattr(affectlens.tools.scene, "match_scene", broken)
    events: list[tuple[str, str, str, float]] = []

    def on_stage(stage, status, seconds):
        events.append((stage, status, threading.current_thread().name, time.perf_counter()))

    llm = SchemaFiller()
    result = analyze(face_clip, settings, on_stage=on_stage, llm=llm)
    span = {}
    for stage, status, _, t in events:
        span.setdefault(stage, [t, t])[1 if status != "start" else 0] = t
    ran = {m for m in MODALITIES if m in span}
    assert ran == set(MODALITIES)  # the clip has frames and an audio track
    # the slow tools overlap in time, in different threads: parallel branches of one superstep
    assert span["face"][0] < span["speech"][1] and span["speech"][0] < span["face"][1]
    assert len({th for s, _, th, _ in events if s in MODALITIES}) > 1
    assert span["textualise"][0] >= max(span[m][1] for m in ran)
    assert [st for s, st, _, _ in events if s == "scene"] == ["start", "failed"]
    assert result.scene.status == "failed" and "scene model exploded" in result.scene.reason
    assert result.face.status == "ok" and result.reading is not None
    assert set(result.timings) >= {"probe", "face", "textualise", "retrieve", "reason", "verify"}
    acc = {a.modality: a for a in result.reading.modalities}
    assert acc["scene"].status == "failed" and "exploded" in acc["scene"].summary
    assert "No scene analysed" in llm.calls[0][1]["content"]
    stored = AnalysisStore(settings).get(result.id)
    assert stored.scene.status == "failed"
    # built once, in the graph: what was stored is what analyze() returned
    assert stored.model_dump(mode="json") == result.model_dump(mode="json")


def test_without_skips_the_tool_and_reason_again(face_clip, settings):
    stages: list[str] = []
    llm = SchemaFiller()
    result = analyze(
        face_clip, settings, on_stage=lambda s, st, t: stages.append(s), without=["scene"], llm=llm
    )
    assert "scene" not in stages and result.scene is None and result.face.status == "ok"
    assert result.settings["without"] == ["scene"]
    asked = len(llm.calls)
    again = reason_again(result, settings, without=["face"], llm=llm)
    assert again.id == f"{result.id}-without-face" and again.face is not None  # evidence kept
    assert not any(c.modality == "face" for c in again.cues)
    acc = {a.modality: a for a in again.reading.modalities}
    assert acc["face"].status == "missing" and "left out" in acc["face"].summary
    # Without the face this near-silent clip has no cue left: no LLM call, an honest reading.
    assert not again.cues and len(llm.calls) == asked
    assert again.reading.confidence == 0.0 and "face missing" in again.reading.explanation[0]
    with pytest.raises(ValueError, match="unknown modality"):
        analyze(face_clip, settings, without=["smell"], llm=llm)


@pytest.mark.slow
def test_verify_loop_repairs_a_bad_first_reading(face_clip, tmp_path):
    from affectlens.agent.llm import get_llm

    settings = Settings(data_dir=tmp_path, llm_model="qwen2.5-1.5b", verify_max_rounds=2)
    llm = FirstBad(get_llm(settings))
    result = analyze(face_clip, settings, llm=llm, without=["scene"])
    assert len(llm.calls) >= 2  # the graph re-asked
    repair = llm.calls[1]
    assert repair[-2]["role"] == "assistant" and BAD_NUMBER in repair[-2]["content"]
    assert BAD_NUMBER in repair[-1]["content"] and "quote the cue values" in repair[-1]["content"]
    v = result.verification
    assert v.rounds == len(llm.calls) and any(BAD_NUMBER in f for f in v.fixed)
    assert not any(BAD_NUMBER in s for s in result.reading.explanation)
    cited = {i for s in result.reading.explanation for i in cited_ids(s)}
    assert cited <= {c.id for c in result.cues}
    assert v.grounded == reverified(result), v  # the repaired reading's quality is the model's
