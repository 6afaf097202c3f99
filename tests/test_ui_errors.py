"""The UI's error paths, through its module-level handlers: reopen shows its error (with the
right number of outputs), an unreadable upload stops the streamed stage list at probe with the
media error, the project's own errors reach the page by name, and a saved analysis whose
indexing fails is reported as saved with a warning."""

from __future__ import annotations

import os
from pathlib import Path

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
    from affectlens.ui.app import create_app, reopen

    settings = Settings(data_dir=tmp_path / "data")
    wired = _fn(create_app(settings), "reopen")  # the page wires one output per value
    for chosen, expected in (("20990101-nope", "Analysis not found"), (None, "pick an analysis")):
        out = reopen(settings, chosen, "current-id")
        assert len(out) == len(wired.outputs) == 15
        assert out[7] == "current-id"  # the session keeps its analysis
        assert expected in out[8] and "Unexpected error" not in out[8]
    assert wired.fn("20990101-nope", "current-id")[7] == "current-id"  # bound to the settings


def test_reopen_opens_a_stored_analysis(stored):
    from affectlens.agent.store import AnalysisStore
    from affectlens.ui.app import reopen

    settings, result = stored
    AnalysisStore(settings, index=False).save(result)
    out = reopen(settings, result.id, None)
    assert len(out) == 15 and out[7] == result.id and result.media.file_name in out[2]


def test_reopen_restores_the_player_or_says_the_clip_is_gone(
    stored, face_clip, tmp_path, monkeypatch
):
    """The clip kept at analysis time (beside the key frames) plays again when the analysis is
    reopened, served from a copy in the temp folder; once it is gone, the page says so."""
    from affectlens.agent.store import AnalysisStore
    from affectlens.ui import app as ui_app
    from affectlens.ui import components as cp

    monkeypatch.setattr(ui_app, "PREVIEW_DIR", tmp_path / "previews")
    settings, result = stored
    store = AnalysisStore(settings, index=False)
    store.save(result)
    kept = cp.keep_clip(face_clip, result.media, store.frames_dir(result.id))
    assert kept is not None and kept.read_bytes() == face_clip.read_bytes()  # H.264 .mp4 as is
    *_, upload, video, image, audio, note = ui_app.reopen(settings, result.id, None)
    assert upload is None  # the upload box no longer names the file chosen before
    assert video["visible"] and not image["visible"] and not audio["visible"]
    assert Path(video["value"]).parent == tmp_path / "previews" / result.id
    assert Path(video["value"]).read_bytes() == kept.read_bytes()
    assert "Reopened" in note and result.media.file_name in note
    kept.unlink()
    *_, video, image, audio, note = ui_app.reopen(settings, result.id, None)
    assert not (video["visible"] or image["visible"] or audio["visible"])
    assert "no longer available" in note
    cp.keep_clip(face_clip, result.media, store.frames_dir(result.id))
    ui_app.reopen(settings, result.id, None)
    assert (tmp_path / "previews" / result.id).is_dir()
    ui_app.delete(settings, result.id, None)  # the kept clip and its served copy go with it
    assert not store.frames_dir(result.id).exists()
    assert not (tmp_path / "previews" / result.id).exists()


def test_an_unplayable_clip_is_kept_as_a_small_playable_copy(test_data, settings, tmp_path):
    from affectlens.tools.media import probe
    from affectlens.ui import components as cp

    flv = next((test_data / "cremad").glob("*.flv"))
    kept = cp.keep_clip(flv, probe(flv, settings), tmp_path / "frames")
    assert (
        kept is not None and kept.name == "clip.mp4" and cp.kept_clip(tmp_path / "frames") == kept
    )
    again = probe(kept, settings)
    assert again.video_codec == "h264" and again.has_audio
    assert abs(again.duration_s - probe(flv, settings).duration_s) < 0.5  # the whole clip
    mp3 = next((test_data / "cremad").glob("*.mp3"))
    kept = cp.keep_clip(mp3, probe(mp3, settings), tmp_path / "frames")
    assert kept is not None and kept.name == "clip.mp3"  # one clip per analysis: replaced
    assert [p.name for p in (tmp_path / "frames").iterdir()] == ["clip.mp3"]


def test_a_new_upload_clears_the_previous_result(tmp_path):
    from affectlens.ui.app import cleared, create_app

    settings = Settings(data_dir=tmp_path / "data")
    wired = [f for f in create_app(settings).fns.values() if f.name == "cleared"]
    assert wired and all(len(f.outputs) == len(cleared()) == 8 for f in wired)
    progress, error, card, circ, timeline, frames, chat, current = cleared()
    assert error == "" and progress == "" and "Press Analyse" in card
    assert (circ, timeline, frames, chat, current) == (None, None, [], [], None)


def test_analyse_streams_the_stages_and_stops_at_an_unreadable_file(tmp_path):
    """No model loads: probe rejects the file; the last update names it failed, with the
    media error in the error slot, and the session's analysis is cleared."""
    from affectlens.ui.app import analyse, create_app

    settings = Settings(data_dir=tmp_path / "data")
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video\n" * 50)
    updates = list(analyse(settings, str(bad), "old-id"))
    wired = _fn(create_app(settings), "analyse")
    assert all(len(u) == len(wired.outputs) == 8 for u in updates)
    assert "Analysing" in updates[0][2] and updates[0][7] is None
    assert any("stage-start" in u[0] and "probe the file" in u[0] for u in updates[1:-1])
    progress, error, card, *_, chat, current = updates[-1]
    assert 'class="stage stage-failed"' in progress and "(stopped)" in progress
    assert "Could not analyse" in error and "notes.mp4" in error and "Unexpected" not in error
    assert "No result." in card and chat == [] and current is None


def test_analyse_without_a_file_keeps_the_session(tmp_path):
    from affectlens.ui.app import analyse

    (update,) = analyse(Settings(data_dir=tmp_path / "data"), None, "old-id")
    assert "no file chosen" in update[1] and update[7] == "old-id"


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


def test_cancel_stops_an_eval_run_between_samples(tmp_path, monkeypatch):
    """Gradio's cancel leaves the worker thread running; the run checks its session's cancel
    before each clip (run_eval's ``should_stop``, which raises ``EvalStopped``; the batch's
    stop is tests/test_eval_batch.py's) and stops there (no more samples analysed)."""
    from types import SimpleNamespace

    from affectlens.evals import runner
    from affectlens.ui import app as ui_app

    settings = Settings(data_dir=tmp_path / "data")
    request = SimpleNamespace(session_hash="s1")
    seen: list[str] = []

    class Runner:
        EvalStopped = runner.EvalStopped

        @staticmethod
        def run_eval(dataset, settings, out_dir, progress, should_stop):
            for sample in dataset.samples:
                if should_stop():
                    raise runner.EvalStopped("stopped")
                seen.append(sample.id)
                progress(f"[{len(seen)}/{len(dataset.samples)}] {sample.id}")
                ui_app.cancel_eval(request)  # the user presses Cancel during the first sample
            return {"metrics": {}}

    monkeypatch.setattr(ui_app, "_eval_runner", lambda: Runner)
    out = ui_app.run_eval(
        settings, "evals/datasets/pyfeat-faces", "", 5, lambda *a, **k: None, request
    )
    assert len(seen) == 1 and "Cancelled" in out[-1]
    assert "s1" not in ui_app._CANCELLED  # the next run of this session starts clean
