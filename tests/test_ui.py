"""The UI's pieces without a browser: the result card (escaping, cited chips), the plots, key
frames drawn on real video, error messages, auth, and two sessions through gradio_client."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from affectlens.agent.schemas import AnalysisResult, Cue, EmotionReading, ModalityAccount  # noqa: E402
from affectlens.tools.evidence import (  # noqa: E402
    Box,
    FaceEvidence,
    FaceFrame,
    MediaInfo,
    Segment,
    SpeechEvidence,
    ToneEvidence,
    ToneWindow,
)
from affectlens.ui import components as cp  # noqa: E402
from affectlens.ui import plots  # noqa: E402

HOSTILE = '<img src=x onerror="alert(1)">'


def _result(file_name: str = "clip.mp4", transcript: str = "I am so glad.") -> AnalysisResult:
    """A complete result as the analysis graph stores it (values from a real run's shape)."""
    frames = [
        FaceFrame(
            t=t,
            faces=1,
            box=Box(x=40, y=30, w=60, h=70, confidence=0.9),
            aus={"AU06": 0.2 + 0.1 * t, "AU12": 0.3 + 0.1 * t},
            expressions={"happiness": 0.6, "neutral": 0.3, "surprise": 0.1},
        )
        for t in (0.0, 0.5, 1.0, 1.5, 2.0)
    ]
    cues = [
        Cue(
            id="F1",
            modality="face",
            start=0.5,
            end=2.0,
            name="AU12",
            value=0.5,
            unit="",
            scale="0-1",
            text="F1 00:00.5-00:02.0 AU12 lip corner puller, intensity 0.50",
        ),
        Cue(
            id="S1",
            modality="speech",
            start=0.2,
            end=1.8,
            name="transcript",
            value=transcript,
            text=f'S1 said: "{transcript}"',
        ),
    ]
    reading = EmotionReading(
        dominant="happiness",
        secondary="surprise",
        label="surprisedly happy",
        probabilities={"happiness": 0.7, "surprise": 0.2, "neutral": 0.1},
        valence=0.6,
        arousal=0.4,
        confidence=0.8,
        explanation=[
            "The lip corner puller rises [F1].",
            f"The speaker says {transcript} [S1, X9].",
        ],
        modalities=[ModalityAccount(modality="face", status="ok", summary="A smile [F1].")],
    )
    return AnalysisResult(
        id="20260101-000000-clip-abc123",
        media=MediaInfo(
            file_name=file_name,
            size_bytes=1000,
            duration_s=2.4,
            has_video=True,
            has_audio=True,
            width=640,
            height=360,
        ),
        face=FaceEvidence(frames=frames, backend="mediapipe"),
        speech=SpeechEvidence(segments=[Segment(start=0.2, end=1.8, text=transcript)]),
        voice=ToneEvidence(
            status="ok", windows=[ToneWindow(start=0, end=1, pitch_hz=180, loudness=0.4)]
        ),
        cues=cues,
        reading=reading,
    )


def test_card_escapes_untrusted_text_and_renders_chips():
    html = cp.result_card(_result(file_name=HOSTILE + ".mp4", transcript=HOSTILE))
    assert "<img" not in html and "&lt;img src=x" in html
    assert 'id="result-label">surprisedly happy<' in html
    # the cited cue becomes a chip whose one pop-up gives time, modality and the cue's text;
    # no title attribute (a second browser tooltip), the same words as its description
    detail = "00:00.5-00:02.0 face · F1 00:00.5-00:02.0 AU12 lip corner puller, intensity 0.50"
    assert f'aria-description="{detail}"' in html and "title=" not in html
    assert 'class="chip-detail"><b>00:00.5-00:02.0</b> face · F1' in html
    # a cited id that no cue has is shown as unknown, not dropped
    assert 'chip-unknown" tabindex="0" aria-description="no cue has this id">X9<' in html
    assert "confidence <b>80%</b>" in html
    for m in ("face", "speech", "voice", "scene"):
        assert f"</span>{m}</td>" in html


def test_card_renders_chips_for_structured_citations():
    """agent.reason writes each claim as "text [F1][S1]."; every id becomes its own chip."""
    from affectlens.agent.reason import Claim

    sentence = Claim(text="The smile matches the words.", cues=["F1", "S1"]).sentence
    assert sentence.endswith("[F1][S1].")
    reading = _result().reading.model_copy(update={"explanation": [sentence]})
    html = cp.result_card(_result().model_copy(update={"reading": reading}))
    why = html.split('class="explanation">', 1)[1].split("</ul>", 1)[0]
    assert why.startswith('<li>The smile matches the words <span class="chip"')
    assert why.count('<span class="chip"') == 2 and "[" not in why and why.endswith(".</li>")
    assert 'aria-description="00:00.2-00:01.8 speech · S1 said: &quot;I am so glad.&quot;"' in why


def test_card_without_reading_shows_the_reason():
    result = _result().model_copy(update={"reading": None, "error": "LLM <timeout>"})
    html = cp.result_card(result)
    assert "No reading: LLM &lt;timeout&gt;" in html


def test_progress_and_error_box_escape():
    html = cp.progress_html([("probe", "done", 1.23), ("face", "start", 0.5)], 2.0)
    assert "probe the file" in html and "1.2 s" in html and "stage-start" in html
    assert "running…" in html and "0.5 s" not in html  # a running stage pulses, no stale count
    assert "&lt;b&gt;" in cp.error_box("<b>bad</b>")


def test_timeline_marks_cited_cues_and_circumplex_places_the_reading():
    result = _result()
    fig = plots.timeline(result)
    axes = fig.axes
    assert len(axes) >= 5
    assert len(axes[4].collections) == 2  # one lane per cited cue
    # F1 and S1 are cited (X9 is unknown) -> two spans on each of the four rows
    spans = [p for p in axes[0].patches if p.get_alpha() == pytest.approx(0.06)]
    assert len(spans) == 2
    assert [c.id for c in plots.cited_cues(result)] == ["F1", "S1"]
    assert {ln.get_label() for ln in axes[0].get_lines()} == {"AU06", "AU12"}
    circ = plots.circumplex(result.reading)
    offsets = np.concatenate([c.get_offsets() for c in circ.axes[0].collections])
    assert any(np.allclose(o, (0.6, 0.4)) for o in offsets)


def test_timeline_explains_missing_modalities():
    result = _result().model_copy(
        update={
            "face": FaceEvidence(status="failed", reason="no face found"),
            "voice": None,
            "speech": None,
        }
    )
    fig = plots.timeline(result)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "face: failed (no face found)" in texts and "no voice evidence" in texts


def test_key_frames_draw_the_face_box_on_real_video(face_clip, tmp_path):
    from affectlens.settings import Settings
    from affectlens.tools.media import probe

    info = probe(face_clip, Settings(data_dir=tmp_path))
    result = _result().model_copy(update={"media": info})
    items = cp.key_frames(result, face_clip, tmp_path / "frames")
    assert 1 <= len(items) <= cp.KEY_FRAMES
    from PIL import Image

    img = np.asarray(Image.open(items[0][0]).convert("RGB")).astype(int)
    orange = (abs(img[..., 0] - 228) < 40) & (abs(img[..., 1] - 87) < 40) & (img[..., 2] < 100)
    assert orange.sum() > 50  # the box outline is there
    assert "happiness 60%" in items[0][1]
    assert cp.stored_key_frames(tmp_path / "frames") == items  # captions kept for History


def test_friendly_messages_never_show_a_traceback():
    from affectlens.models import ModelError
    from affectlens.tools.media import UnreadableMedia
    from affectlens.ui.app import _friendly

    assert _friendly(UnreadableMedia("x.mp4: not a readable media file")) == (
        "x.mp4: not a readable media file"
    )
    assert "affectlens models assemble" in _friendly(ModelError("qwen2.5-1.5b missing"))
    msg = _friendly(ZeroDivisionError("division by zero"))
    assert "ZeroDivisionError" in msg and "Traceback" not in msg and "division" not in msg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """The real app on a free port (auth on), closed after the test."""
    from affectlens.settings import Settings
    from affectlens.ui.app import serve

    settings = Settings(
        data_dir=tmp_path / "data", port=_free_port(), auth="ann:secret", llm_model="qwen2.5-0.5b"
    )
    app, url = serve(settings, block=False, quiet=True)
    yield app, url, settings
    app.close()


def test_serve_requires_auth_and_lists_no_history(served):
    import httpx

    app, url, settings = served
    assert url.startswith("http://127.0.0.1:")
    assert httpx.get(url + "config").status_code in (401, 403)
    from gradio_client import Client

    client = Client(url, auth=("ann", "secret"), verbose=False)
    choices, note = client.predict(api_name="/list_past")
    assert "No analyses stored yet" in note


@pytest.mark.slow
def test_two_sessions_see_only_their_own_analysis(served, shared_data, host_speed):
    """Two clients analyse different real inputs; each sees its own label and id. The wait is
    sized from the host's measured LLM speed (two readings, each with its repair rounds)."""
    from gradio_client import Client, handle_file

    app, url, settings = served
    inputs = [shared_data / "pyfeat" / "single_face.mp4", shared_data / "pyfeat" / "0-f1-su-ph.jpg"]
    clients = [Client(url, auth=("ann", "secret"), verbose=False) for _ in inputs]
    # Gradio 6: a Video input is the file itself; the per-session gr.State is neither an
    # argument nor a return value of the API, so the id is read from the card.
    jobs = [c.submit(handle_file(str(p)), api_name="/analyse") for c, p in zip(clients, inputs)]
    tokens = 2 * settings.llm_max_tokens * (1 + settings.verify_max_rounds)
    with host_speed.within("two analyses through gradio_client", tokens, 60.0) as limit:
        deadline = time.monotonic() + limit
        outs = [job.result(timeout=max(1.0, deadline - time.monotonic())) for job in jobs]
    ids = []
    for out, path in zip(outs, inputs):
        progress, error, card = out[0], out[1], out[2]
        assert error == "", error
        assert path.name in card and 'id="result-label">' in card
        assert "probe the file" in progress and "reasoning" in progress
        found = re.search(r"analysis <code>([^<]+)</code>", card)
        assert found, card
        ids.append(found.group(1))
    assert ids[0] != ids[1]
    assert inputs[1].name not in outs[0][2] and inputs[0].name not in outs[1][2]
    # both analyses are stored, each under its own id
    stored = {a.id: a.file_name for a in _store_list(settings)}
    assert stored[ids[0]] == inputs[0].name and stored[ids[1]] == inputs[1].name


def _store_list(settings):
    from affectlens.agent.store import AnalysisStore

    return AnalysisStore(settings).list()


def test_waits_scale_with_the_host_and_say_where_the_limit_came_from():
    """The browser and e2e waits come from ``HostSpeed`` (conftest): a slower host gets a
    longer limit, and a timeout fails with the limit and the measured speed."""
    from conftest import REFERENCE_TOKPS, HostSpeed

    fast, slow = HostSpeed(tokens_per_s=REFERENCE_TOKPS), HostSpeed(tokens_per_s=10.0)
    assert slow.limit(400, 90) > fast.limit(400, 90) > fast.limit(100, 90)
    with pytest.raises(pytest.fail.Exception, match=r"chat: limit \d+ s from 10\.0 tok/s measured"):
        with slow.within("chat", 400, 20) as limit:
            assert limit == slow.limit(400, 20)
            raise TimeoutError("Timeout 30000ms exceeded")
    with pytest.raises(ValueError):  # anything else passes through
        with slow.within("chat", 400):
            raise ValueError("not a timeout")


def test_a_missing_modality_says_so_in_a_users_words():
    from affectlens.tools.scene import NO_WEIGHTS

    html = cp.progress_html([("scene", "missing", 0.0, NO_WEIGHTS)], 1.0)
    assert "stage-missing" in html and "✓" not in html
    assert "missing: no scene model is installed (optional)" in html
    assert "clip_pretrained" not in html  # the developers' hint stays in the logs and docs
    from affectlens.tools.evidence import SceneEvidence

    scene = SceneEvidence(status="missing", reason=NO_WEIGHTS)
    card = cp.result_card(_result().model_copy(update={"scene": scene}))
    assert '<th scope="col">modality</th>' in card and "analysis time</th>" in card
    assert "no scene model is installed (optional)" in card and "clip_pretrained" not in card


def test_the_upload_previews_what_a_browser_can_play(test_data, face_image, tmp_path, monkeypatch):
    """An actor's .flv (VP6, which no browser plays) gets a small H.264 copy and says so; the
    H.264 sample shows as it is; a photo and an audio file get their own players; bytes nothing
    can read get a plain note, not the red error of a broken upload."""
    from affectlens.settings import Settings
    from affectlens.ui import app as ui_app

    monkeypatch.setattr(ui_app, "PREVIEW_DIR", tmp_path / "previews")
    settings = Settings(data_dir=tmp_path / "data")
    flv = next((test_data / "cremad").glob("*.flv"))
    video, image, audio, note = ui_app.preview(settings, str(flv))
    assert video["visible"] and Path(video["value"]).parent == tmp_path / "previews"
    from affectlens.tools.media import probe

    assert probe(video["value"], settings).video_codec == "h264" and "original .flv" in note
    sample = Path(__file__).resolve().parents[1] / "samples" / "sample.mp4"
    video, *_, note = ui_app.preview(settings, str(sample))
    assert video["value"] == str(sample) and note == ""
    _, image, _, _ = ui_app.preview(settings, str(face_image))
    assert image["visible"] and image["value"] == str(face_image)
    mp3 = next((test_data / "cremad").glob("*.mp3"))
    *_, audio, _ = ui_app.preview(settings, str(mp3))
    assert audio["visible"]
    junk = tmp_path / "broken.mp4"
    junk.write_bytes(bytes(range(256)) * 64)
    video, image, audio, note = ui_app.preview(settings, str(junk))
    assert not (video["visible"] or image["visible"] or audio["visible"])
    assert "No preview" in note and "Analyse" in note


def test_the_evals_tab_counts_estimates_and_gives_one_clear_error(tmp_path):
    from affectlens.settings import Settings
    from affectlens.ui import app as ui_app

    settings = Settings(data_dir=tmp_path / "data")
    choice = "evals/datasets/pyfeat-faces"
    note = ui_app.eval_estimate(settings, choice, "", 2)
    assert "5 samples in this set; running 2" in note and "time unknown" in note
    wrong = ui_app.eval_estimate(settings, choice, str(tmp_path), 2)  # outside the roots
    assert wrong.count("error-box") == 1 and "dataset roots" in wrong
    *kept, message = ui_app.run_eval(settings, choice, str(tmp_path), 2)
    import gradio as gr

    assert kept == [gr.skip()] * 3  # the table, plots and report stay as they were
    assert message.count("error-box") == 1 and "dataset roots" in message


def test_plots_carry_their_words_and_the_page_states_its_intended_use(tmp_path):
    from affectlens.settings import Settings
    from affectlens.ui import app as ui_app

    circ, timeline = ui_app._views(_result(), [])[1:3]
    assert circ.chart.startswith("Valence and arousal of") and circ.type == "matplotlib"
    assert timeline.chart.startswith("Cue timeline") and timeline.plot.startswith("data:image")
    page = ui_app.create_app(Settings(data_dir=tmp_path))
    html = [b.value for b in page.blocks.values() if getattr(b, "elem_id", None) == "intended-use"]
    assert html and "Not for judging people" in html[0]
    (question,) = [b for b in page.blocks.values() if getattr(b, "elem_id", None) == "question"]
    assert question.label  # its accessible name (the label is hidden, not absent)


def _drawn(fig):
    """The renderer after drawing ``fig`` on an Agg canvas (text extents need one)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


@pytest.mark.parametrize("where", [(0.02, 0.03), (0.6, 0.4), (-0.62, 0.66), (0.2, 0.85)])
def test_circumplex_labels_never_overlap_each_other_or_the_marker(where):
    """Each prototype's name is readable wherever the reading lands: no two names overlap
    ("anger" and "fear" are neighbours), none sits under the reading's marker, and the reading's
    own label stays inside the figure."""
    valence, arousal = where
    reading = _result().reading.model_copy(update={"valence": valence, "arousal": arousal})
    fig = plots.circumplex(reading)
    renderer = _drawn(fig)
    ax = fig.axes[0]
    texts = [t for t in ax.texts if t.get_text()]
    boxes = {t.get_text(): t.get_window_extent(renderer) for t in texts}
    names = list(boxes)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not boxes[a].overlaps(boxes[b]), (a, b)
    dot = ax.collections[-1]
    marker = plots.marker_box(ax, valence, arousal, dot.get_sizes()[0])
    for name in names:
        if name != reading.label:
            assert not boxes[name].overlaps(marker), name
    figure = fig.bbox
    label = boxes[reading.label]
    assert figure.x0 <= label.x0 and label.x1 <= figure.x1 and label.y1 <= figure.y1


def test_timeline_legends_sit_above_their_panels():
    fig = plots.timeline(_result())
    renderer = _drawn(fig)
    legends = [(ax, ax.get_legend()) for ax in fig.axes if ax.get_legend() is not None]
    assert len(legends) == 3  # AUs, expressions, voice
    for ax, legend in legends:
        assert legend.get_window_extent(renderer).y0 >= ax.get_window_extent(renderer).y1 - 1
