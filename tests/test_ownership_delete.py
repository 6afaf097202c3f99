"""Data a user owns: with auth each user sees only their own analyses and chat (through the
real served app and gradio_client); `affectlens delete` and the History Delete button remove
the JSON, the index entry, the chat threads and the key frames, leaving nothing behind."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from affectlens.agent.schemas import AnalysisResult  # noqa: E402
from affectlens.agent.store import AnalysisStore  # noqa: E402
from affectlens.settings import Settings  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _result(analysis_id: str, clip: Path, settings: Settings, owner: str | None = None):
    """A stored-shape result of the real clip: probed media, face frames at sampled times
    (no boxes: key frames then need no face model)."""
    from affectlens.tools.evidence import FaceEvidence, FaceFrame
    from affectlens.tools.media import probe

    face = FaceEvidence(frames=[FaceFrame(t=t, faces=0) for t in (0.0, 1.0, 2.0)])
    return AnalysisResult(id=analysis_id, media=probe(clip, settings), face=face, owner=owner)


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _with_thread_and_frames(result: AnalysisResult, clip: Path, settings: Settings) -> None:
    """What the app keeps besides the JSON: a chat thread and the key frames (real ffmpeg)."""
    from affectlens.agent.chat.store import persistent_graph, thread_config
    from affectlens.ui import components as cp

    persistent_graph(settings).update_state(
        thread_config(result.id, "default"),
        {"messages": [{"role": "user", "content": "why?", "created": "2026-01-01T00:00:00Z"}]},
        as_node="__start__",
    )
    assert cp.key_frames(result, clip, AnalysisStore(settings).frames_dir(result.id))


@pytest.mark.slow  # MiniLM embeds the summaries for the chromadb index
def test_delete_leaves_nothing_behind(tmp_path, face_clip):
    from affectlens.agent import chat
    from affectlens.agent.knowledge import ANALYSES, _collection
    from affectlens.ui.cli import app

    settings = Settings(data_dir=tmp_path / "data")
    store = AnalysisStore(settings)
    keep = _result("20260101-000000-keep-aaaaaa", face_clip, settings)
    store.save(keep)
    _with_thread_and_frames(keep, face_clip, settings)
    before = _listing(settings.data_dir)

    gone = _result("20260102-000000-gone-bbbbbb", face_clip, settings)
    store.save(gone)
    _with_thread_and_frames(gone, face_clip, settings)
    assert any(gone.id in p for p in _listing(settings.data_dir))
    assert chat.threads(gone.id, settings) == ["default"]

    res = CliRunner().invoke(app, ["delete", gone.id, "--data-dir", str(settings.data_dir)])
    assert res.exit_code == 0, res.output
    after = _listing(settings.data_dir)
    assert not any(gone.id in p for p in after)
    assert after == before
    assert chat.threads(gone.id, settings) == [] and chat.threads(keep.id, settings) == ["default"]
    col = _collection(settings, ANALYSES)
    assert col.get(ids=[gone.id])["ids"] == [] and col.get(ids=[keep.id])["ids"] == [keep.id]
    res = CliRunner().invoke(app, ["delete", gone.id, "--data-dir", str(settings.data_dir)])
    assert res.exit_code == 1 and "no analysis" in res.output


@pytest.fixture
def two_users(tmp_path, face_clip):
    from affectlens.ui.app import serve

    settings = Settings(
        data_dir=tmp_path / "data", port=_free_port(), auth="ann:secret,bob:hunter2"
    )
    store = AnalysisStore(settings, index=False)
    ann = _result("20260101-000000-ann-aaaaaa", face_clip, settings, owner="ann")
    bob = _result("20260101-000001-bob-bbbbbb", face_clip, settings, owner="bob")
    store.save(ann)
    store.save(bob)
    _with_thread_and_frames(bob, face_clip, settings)
    app, url = serve(settings, block=False, quiet=True)
    yield url, settings, ann, bob
    app.close()


def _client(url: str, user: str, password: str):
    from gradio_client import Client

    return Client(url, auth=(user, password), verbose=False)


def test_with_auth_each_user_sees_and_deletes_only_their_own(two_users):
    url, settings, ann, bob = two_users
    as_ann = _client(url, "ann", "secret")
    choices, _ = as_ann.predict(api_name="/list_past")
    ids = [c[1] for c in choices["choices"]] if isinstance(choices, dict) else None
    assert ids == [ann.id], choices
    # ann cannot open or delete bob's analysis, even knowing its id: the session's choices
    # refuse it, and behind them the store answers "not found" to anyone but the owner
    from gradio_client.exceptions import AppError

    from affectlens.agent.store import AnalysisNotFound

    for api in ("/reopen", "/delete"):
        with pytest.raises(AppError):
            as_ann.predict(bob.id, api_name=api)
    with pytest.raises(AnalysisNotFound):
        AnalysisStore(settings, index=False).get_for(bob.id, "ann")
    assert AnalysisStore(settings, index=False).get(bob.id).owner == "bob"
    # chat threads are per user: ann's question about bob's analysis is refused and writes
    # nothing into any thread of his
    from affectlens.agent import chat
    from affectlens.ui.app import _thread

    threads_before = chat.threads(bob.id, settings)
    messages, _ = as_ann.predict("Why this emotion?", [], bob.id, api_name="/ask")
    content = messages[-1]["content"]  # the session's analysis is a server-side state: the id
    text = content if isinstance(content, str) else " ".join(p["text"] for p in content)
    assert text.startswith("⚠") or text.startswith("Analyse a clip"), text  # never an answer
    assert chat.threads(bob.id, settings) == threads_before
    assert _thread("ann") != _thread("bob")
    # bob deletes his own: the JSON, the thread and the key frames go
    as_bob = _client(url, "bob", "hunter2")
    choices, _ = as_bob.predict(api_name="/list_past")
    assert [c[1] for c in choices["choices"]] == [bob.id]
    out = as_bob.predict(bob.id, api_name="/reopen")
    assert bob.media.file_name in out[2]
    as_bob.predict(bob.id, api_name="/delete")
    assert [a.id for a in AnalysisStore(settings, index=False).list()] == [ann.id]
    assert not AnalysisStore(settings).frames_dir(bob.id).exists()
    assert chat.threads(bob.id, settings) == []


def test_without_auth_the_page_says_single_user(tmp_path):
    from affectlens.ui.app import SINGLE_USER_NOTE, create_app

    def notes(app):
        return [
            b.value for b in app.blocks.values() if getattr(b, "elem_id", None) == "single-user"
        ]

    assert any(SINGLE_USER_NOTE in v for v in notes(create_app(Settings(data_dir=tmp_path))))
    assert notes(create_app(Settings(data_dir=tmp_path, auth="ann:pw"))) == []
    doc = (Path(__file__).resolve().parents[1] / "docs" / "ui.md").read_text()
    assert "single-user" in doc.lower()
