"""The shipped knowledge base, its chromadb index (real MiniLM embeddings) and the memory of
past analyses."""

from __future__ import annotations

import json
import shutil

import pytest

from affectlens.agent import knowledge as kb
from affectlens.agent.schemas import AnalysisResult, Cue, EmotionReading
from affectlens.agent.store import AnalysisNotFound, AnalysisStore
from affectlens.tools.evidence import MediaInfo

PROTOTYPES = {  # Ekman & Friesen / EMFACS, as the brief lists them
    "happiness": ["AU6", "AU12"],
    "sadness": ["AU1", "AU4", "AU15"],
    "surprise": ["AU1", "AU2", "AU5", "AU26"],
    "fear": ["AU1", "AU2", "AU4", "AU5", "AU7", "AU20", "AU26"],
    "anger": ["AU4", "AU5", "AU7", "AU23"],
    "disgust": ["AU9", "AU15", "AU16"],
    "contempt": ["AU12", "AU14"],
}


def test_entries_are_complete_and_cover_the_sources():
    entries = {e.id: e for e in kb.load_entries()}
    for emotion, aus in PROTOTYPES.items():
        text = entries[f"proto-{emotion}"].text
        assert all(f"{au}+" in text or f"{au} " in text or text.count(au) for au in aus), emotion
    assert sum(i.startswith("compound-") and i != "compound-naming" for i in entries) == 7
    assert any("Juslin" in e.source for e in entries.values())
    assert any("Scherer" in e.source for e in entries.values())
    assert "lip corner puller" in entries["au-au12"].title
    assert all(e.text and e.source for e in entries.values())


def test_bad_file_is_rejected(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": "x", "title": "t", "text": "t"}) + "\n")
    with pytest.raises(ValueError, match="source"):
        kb.load_entries(tmp_path)


@pytest.fixture(scope="module")
def kb_settings(tmp_path_factory):
    from affectlens.settings import Settings

    return Settings(data_dir=tmp_path_factory.mktemp("kbdata"))


def test_index_is_idempotent_and_rebuilt_when_files_change(kb_settings, tmp_path):
    col = kb.knowledge_collection(kb_settings)
    n = col.count()
    assert n == len(kb.load_entries()) and col.metadata["kb_hash"] == kb.knowledge_hash()
    assert kb.knowledge_collection(kb_settings).count() == n  # second call: no duplicates
    folder = tmp_path / "kb"
    shutil.copytree(kb.KNOWLEDGE_DIR, folder)
    with (folder / "extra.jsonl").open("w") as fh:
        fh.write(
            json.dumps({"id": "extra-1", "title": "t", "text": "a test entry", "source": "here"})
            + "\n"
        )
    col = kb.knowledge_collection(kb_settings, folder)
    assert col.count() == n + 1 and col.metadata["kb_hash"] == kb.knowledge_hash(folder)
    assert kb.knowledge_collection(kb_settings).count() == n  # and back


def test_retrieval_finds_the_relevant_theory(kb_settings):
    smile = [
        Cue(
            id="F1",
            modality="face",
            start=0,
            end=1,
            name="AU12",
            text="AU12 lip corner puller, peak intensity 0.81 (0-1): a smile",
        ),
        Cue(
            id="F2",
            modality="face",
            start=0,
            end=1,
            name="AU6",
            text="AU6 cheek raiser, peak intensity 0.60 (0-1): raised cheeks",
        ),
    ]
    hits = kb.retrieve(kb.cue_queries(smile), kb_settings, k=5)
    ids = [h.id for h in hits]
    assert "proto-happiness" in ids and "au-au12" in ids
    entries = {e.id: e for e in kb.load_entries()}  # the prompt gets each entry's own text
    assert [h.text for h in hits] == [entries[i].text for i in ids]
    calm = [
        Cue(
            id="V1",
            modality="voice",
            start=0,
            end=1,
            name="voice_arousal",
            text="voice arousal -0.60 (-1..1): a calm, low-arousal voice, slow and quiet",
        )
    ]
    ids = [h.id for h in kb.retrieve(kb.cue_queries(calm), kb_settings, k=3)]
    assert any(i.startswith("prosody-") for i in ids)
    assert kb.retrieve([], kb_settings) == []


def _result(i: str, label: str, sentence: str) -> AnalysisResult:
    dom = {"happy": "happiness", "sad": "sadness", "angry": "anger"}[label]
    return AnalysisResult(
        id=i,
        media=MediaInfo(file_name=f"{i}.mp4", size_bytes=1),
        reading=EmotionReading(dominant=dom, label=label, explanation=[sentence]),
    )


def test_store_and_similar_analyses(kb_settings):
    store = AnalysisStore(kb_settings)
    store.save(_result("a1", "happy", "A broad smile with raised cheeks [F1]."))
    store.save(_result("a2", "sad", "Lip corners pulled down and a low, slow voice [F1][V1]."))
    store.save(_result("a3", "angry", "Lowered brows and a loud, sharp voice [F1][V1]."))
    assert [a.id for a in store.list()] == ["a3", "a2", "a1"]  # newest first
    assert store.get("a2").reading.label == "sad"
    hits = kb.similar_analyses("a person smiling happily", kb_settings, k=2)
    assert hits[0][:2] == ("a1", "happy") and hits[0][2] < hits[1][2]
    assert [h[0] for h in kb.similar_analyses("smile", kb_settings, k=3, exclude="a1")] != []
    assert "a1" not in [h[0] for h in kb.similar_analyses("smile", kb_settings, exclude="a1")]
    assert store.delete("a1") and not store.delete("a1")
    assert "a1" not in [h[0] for h in kb.similar_analyses("smile", kb_settings, k=3)]
    with pytest.raises(AnalysisNotFound):
        store.get("a1")
    with pytest.raises(AnalysisNotFound):
        store.get("../etc/passwd")
    assert not list(store.dir.glob("*.tmp"))
