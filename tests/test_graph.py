"""The analysis graph's wiring on real media: parallel tool branches, a failing tool caught,
modalities left out, stage progress, the verify loop repairing a bad first reading (with the
real embedded LLM after it), and re-reasoning on stored evidence."""

from __future__ import annotations

import threading
import time

import pytest

from affectlens.agent.graph import build_graph
from affectlens.agent.run import StageEvent, analyze, analyze_stream, reason_again
from affectlens.agent.schemas import MODALITIES, AnalysisResult
from affectlens.agent.store import AnalysisStore
from affectlens.agent.verify import cited_ids
from affectlens.settings import Settings
from tests.conftest import SchemaFiller, reverified

BAD_NUMBER = "4321"  # a value no cue shows
AFTER_TOOLS = ("textualise", "retrieve", "reason", "verify", "store")


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
    from affectlens.agent.registry import Tool

    def broken(media, settings):
        raise RuntimeError("scene model exploded")

    monkeypatch.setattr(affectlens.tools.scene, "match_scene", broken)
    measured: dict[str, tuple[str, float, float]] = {}  # tool -> thread, start, end
    measure = Tool.measure

    def traced(self, media, settings):
        t0 = time.perf_counter()
        try:
            return measure(self, media, settings)
        finally:
            measured[self.modality] = (threading.current_thread().name, t0, time.perf_counter())

    monkeypatch.setattr(Tool, "measure", traced)
    events: list[tuple[str, str, float, float]] = []

    def on_stage(stage, status, seconds):
        events.append((stage, status, seconds, time.perf_counter()))

    llm = SchemaFiller()
    result = analyze(face_clip, settings, on_stage=on_stage, llm=llm)
    assert set(measured) == set(MODALITIES)  # the clip has frames and an audio track
    # the slow tools overlap in time, in different threads: parallel branches of one superstep
    face, speech = measured["face"], measured["speech"]
    assert face[1] < speech[2] and speech[1] < face[2]
    assert len({thread for thread, _, _ in measured.values()}) > 1
    # the stream reports each stage as it starts and ends, with the node's own seconds
    span = {}
    for stage, status, _, t in events:
        span.setdefault(stage, [t, t])[1 if status != "start" else 0] = t
    assert set(span) == {"probe", *MODALITIES, *AFTER_TOOLS}
    assert span["textualise"][0] >= max(span[m][1] for m in MODALITIES)
    assert all(span[m][0] <= min(span[n][1] for n in MODALITIES) for m in MODALITIES)
    assert [st for s, st, _, _ in events if s == "scene"] == ["start", "failed"]
    done = {s: secs for s, st, secs, _ in events if st == "done"}
    assert done["face"] == result.timings["face"] > 0  # the seconds the node measured itself
    assert result.scene.status == "failed" and "scene model exploded" in result.scene.reason
    assert result.face.status == "ok" and result.reading is not None
    assert set(result.timings) >= {"probe", "face", "textualise", "retrieve", "reason", "verify"}
    acc = {a.modality: a for a in result.reading.modalities}
    assert acc["scene"].status == "failed" and "exploded" in acc["scene"].summary
    assert "Scene failed (" in llm.calls[0][1]["content"]
    stored = AnalysisStore(settings).get(result.id)
    assert stored.scene.status == "failed"
    # built once, in the graph: what was stored is what analyze() returned
    assert stored.model_dump(mode="json") == result.model_dump(mode="json")


def test_without_skips_the_tool_and_reason_again(face_clip, settings):
    llm = SchemaFiller()
    items = list(analyze_stream(face_clip, settings, without=["scene"], llm=llm))
    result, events = items[-1], items[:-1]
    assert isinstance(result, AnalysisResult) and all(isinstance(e, StageEvent) for e in events)
    stages = [e.stage for e in events]
    assert "scene" not in stages and result.scene is None and result.face.status == "ok"
    assert stages[:2] == ["probe", "probe"] and stages[-2:] == ["store", "store"]
    assert result.settings["without"] == ["scene"]
    asked = len(llm.calls)
    seen: list[tuple[str, str]] = []
    again = reason_again(
        result, settings, without=["face"], llm=llm, on_stage=lambda s, st, t: seen.append((s, st))
    )
    assert seen == [(stage, status) for stage in AFTER_TOOLS for status in ("start", "done")]
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


def test_the_stream_reports_a_missing_modality_with_its_reason(face_clip, settings):
    from affectlens.tools.scene import NO_WEIGHTS

    events = [e for e in analyze_stream(face_clip, settings, llm=SchemaFiller())][:-1]
    scene = [e for e in events if e.stage == "scene"]
    assert [e.status for e in scene] == ["start", "missing"] and scene[-1].reason == NO_WEIGHTS
    assert all(e.reason == "" for e in events if e.status == "done")
