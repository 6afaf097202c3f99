"""The UI's error paths: reopen shows its error (with the right number of outputs), the
project's own errors reach the page by name, and a saved analysis whose indexing fails is
reported as saved with a warning."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from affectlens.agent.schemas import AnalysisResult  # noqa: E402
from affectlens.settings import Settings  # noqa: E402


def _fn(app, name: str):
    return next(f for f in app.fns.values() if f.name == name)


@pytest.fixture
def stored(tmp_path, face_clip) -> tuple[Settings, AnalysisResult]:
    from affectlens.tools.media import probe

    settings = Settings(data_dir=tmp_path / "data")
    result = AnalysisResult(id="20260101-000000-clip-abc123", media=probe(face_clip, settings))
    return settings, result


def test_reopen_unknown_id_shows_the_error_in_every_output_slot(tmp_path):
    from affectlens.ui.app import create_app

    app = create_app(Settings(data_dir=tmp_path / "data"))
    reopen = _fn(app, "reopen")
    for chosen, expected in (("20990101-nope", "Analysis not found"), (None, "pick an analysis")):
        out = reopen.fn(chosen, "current-id")
        assert len(out) == len(reopen.outputs) == 10
        assert out[7] == "current-id"  # the session keeps its analysis
        assert expected in out[8] and "Unexpected error" not in out[8]


def test_reopen_opens_a_stored_analysis(stored):
    from affectlens.agent.store import AnalysisStore
    from affectlens.ui.app import create_app

    settings, result = stored
    AnalysisStore(settings, index=False).save(result)
    out = _fn(create_app(settings), "reopen").fn(result.id, None)
    assert len(out) == 10 and out[7] == result.id and result.media.file_name in out[2]


def test_chat_and_not_found_errors_are_named():
    from affectlens.agent.chat import ChatError
    from affectlens.agent.store import AnalysisNotFound
    from affectlens.ui.app import _friendly

    msg = _friendly(ChatError("the question is empty"))
    assert "the question is empty" in msg and "Unexpected" not in msg
    msg = _friendly(AnalysisNotFound("no analysis 'x1' in /tmp"))
    assert msg == "Analysis not found: no analysis 'x1' in /tmp"


def test_indexing_failure_keeps_the_analysis_saved_with_a_warning(stored):
    """chromadb cannot open its directory (a file stands where it should be): a real failure."""
    from affectlens.agent.store import AnalysisStore
    from affectlens.ui.app import _saved_warnings
    from affectlens.ui.components import warning_box

    settings, result = stored
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "chroma").write_text("not a directory")
    store = AnalysisStore(settings)
    path = store.save(result)  # does not raise
    assert path.is_file()
    again = store.get(result.id)
    assert len(again.warnings) == 1 and "not indexed" in again.warnings[0]
    assert [a.id for a in store.list()] == [result.id]
    assert _saved_warnings(settings, result) == again.warnings
    assert "Saved, with warnings" in warning_box(again.warnings)
