"""End to end in headless Chromium: upload the real sample clip, watch the stages, read the
result card and timeline, ask the chat, then upload a corrupt file and read the error.

Uses Debian's /usr/bin/chromium (no browser download). Screenshots go to test-artifacts/ui/.
The app runs the 0.5B (this is plumbing, not reasoning quality). The waits for the model are
sized from the host's measured speed (``host_speed`` in conftest), and the chat answer is
checked against the stored thread (its citations shown), never against the model's wording.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import socket
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "sample.mp4"
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    # a backstop only: the waits below are sized from the host and fail first, with a message
    pytest.mark.timeout(3600),
    pytest.mark.skipif(
        not Path(CHROMIUM).exists() or shutil.which("ffmpeg") is None,
        reason="needs /usr/bin/chromium and ffmpeg",
    ),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PERCEPTION_S = 90.0  # probe, face, whisper, tone, scene on the sample, on the reference host
PROMPT_S = 20.0  # evaluating a chat prompt (analysis in context), on the reference host


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The real app, fast LLM, analyses stored in a temporary data dir: (url, settings)."""
    from affectlens.settings import Settings
    from affectlens.ui.app import serve

    data = tmp_path_factory.mktemp("ui-data")
    settings = Settings(data_dir=data, port=_free_port(), llm_model="qwen2.5-0.5b")
    t0 = time.perf_counter()
    server, url = serve(settings, block=False, quiet=True)
    print(f"\ncreate_app + launch: {time.perf_counter() - t0:.2f} s")
    yield url, settings
    server.close()


@pytest.fixture(scope="module")
def app_url(app):
    return app[0]


@pytest.fixture(scope="module")
def page(app_url):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.goto(app_url)
        pg.wait_for_selector("#clip", timeout=30_000)
        yield pg
        browser.close()


def _upload(page, path: Path) -> None:
    page.locator("#clip input[type=file]").set_input_files(str(path))
    # uploaded once the file is listed; its preview (a player, or a note) follows
    page.wait_for_function(
        f"() => (document.querySelector('#clip')?.innerText || '').includes({path.name!r})",
        timeout=60_000,
    )
    page.wait_for_function(
        "() => document.querySelector('#preview-video video, #preview-image img, "
        "#preview-audio audio') || "
        "/preview/i.test(document.querySelector('#preview-note .card-meta')?.innerText || '')",
        timeout=120_000,
    )


def test_analyse_read_and_chat(page, app, host_speed):
    from affectlens.agent import chat
    from affectlens.agent.chat.graph import ROUTE_MAX_TOKENS

    settings = app[1]
    _upload(page, SAMPLE)
    page.click("#analyse-btn")
    # the stage list names stages while they run
    page.wait_for_selector("#progress .stage", timeout=60_000)
    assert "probe the file" in page.inner_text("#progress")
    page.screenshot(path=str(ARTIFACTS / "1-progress.png"))
    reading_tokens = settings.llm_max_tokens * (1 + settings.verify_max_rounds)
    try:
        with host_speed.within(
            "the analysis in the browser", reading_tokens, PERCEPTION_S
        ) as limit:
            label = page.wait_for_selector("#result-label", timeout=limit * 1000)
    finally:  # on a timeout the screenshot shows which stage it was stuck in
        page.screenshot(path=str(ARTIFACTS / "2-result.png"), full_page=True)
    text = label.inner_text().strip()
    assert re.fullmatch(r"[a-z]+( [a-z]+)?", text.lower()), text
    progress = page.inner_text("#progress")
    for stage in ("face", "speech", "reasoning", "verification"):
        assert stage in progress, progress
    assert page.locator("#timeline img, #timeline svg").count() >= 1
    assert page.locator("#circumplex img, #circumplex svg").count() >= 1
    assert page.locator("#card .chip").count() >= 1  # the explanation cites cues
    page.screenshot(path=str(ARTIFACTS / "2-result.png"), full_page=True)

    # chat: the answer stored in the thread is the one shown, with its citations
    (stored,) = chat.analyses(settings)
    page.fill("#question textarea", "Which cues show the emotion?")
    page.click("#ask-btn")
    with host_speed.within(
        "the chat answer in the browser", ROUTE_MAX_TOKENS + settings.llm_max_tokens, PROMPT_S
    ) as limit:
        deadline = time.monotonic() + limit
        while len(chat.history(stored.id, settings=settings)) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("no answer stored in the chat thread")
            time.sleep(1)
        answer = chat.history(stored.id, settings=settings)[-1]
        assert answer.role == "assistant" and answer.content
        page.wait_for_function(  # the answer's citations are the card's chips
            "ids => { const m = document.querySelectorAll('#chat .message-row');"
            " if (m.length < 2) return false; const last = m[m.length-1];"
            " const chips = [...last.querySelectorAll('.chip')].map(c => c.firstChild.textContent);"
            " return last.innerText.trim().length > 0 && ids.every(i => chips.includes(i)); }",
            arg=list(answer.cited),
            timeout=30_000,
        )
    shown = page.locator("#chat .message-row").last.inner_text()
    for i in answer.cited:  # the cited cues are listed under the answer too
        assert i in shown.split("cited", 1)[-1], shown
    if answer.cited:  # a chip opens its cue on focus (keyboard), as on the card
        chip = page.locator("#chat .message-row").last.locator(".chip").first
        chip.focus()
        assert chip.locator(".chip-detail").is_visible()
    page.locator("#chat").screenshot(path=str(ARTIFACTS / "3-chat.png"))


def test_photos_audio_and_unplayable_video_are_accepted_and_previewed(page, test_data, face_image):
    """An actor's .flv (VP6: no browser plays it) is accepted and previewed from a small
    H.264 copy, said so in words; a photo and an audio file are accepted with their players."""
    page.reload()
    page.wait_for_selector("#clip", timeout=30_000)
    _upload(page, next((test_data / "cremad").glob("*.flv")))
    page.wait_for_selector("#preview-video video", state="visible", timeout=120_000)
    assert "small copy the browser can play" in page.inner_text("#preview-note")
    page.screenshot(path=str(ARTIFACTS / "5-flv-preview.png"))
    page.reload()
    page.wait_for_selector("#clip", timeout=30_000)
    _upload(page, face_image)
    page.wait_for_selector("#preview-image img", state="visible", timeout=60_000)
    page.reload()
    page.wait_for_selector("#clip", timeout=30_000)
    _upload(page, next((test_data / "cremad").glob("*.mp3")))
    page.wait_for_selector("#preview-audio audio", state="attached", timeout=60_000)
    assert page.locator("#preview-audio").is_visible()


def test_corrupt_file_shows_a_readable_error(page, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(random.Random(0).randbytes(64 * 1024))  # seeded: the same probe each run
    page.reload()
    page.wait_for_selector("#clip", timeout=30_000)
    _upload(page, bad)
    page.click("#analyse-btn")
    box = page.wait_for_selector("#error .error-box", timeout=60_000)
    message = box.inner_text()
    assert "broken.mp4" in message and "Traceback" not in message
    # ffprobe may take noise for some container it then fails to read, or for one outside the
    # demuxer whitelist (affectlens.tools.media): either typed message, never a traceback
    assert "not a readable media file" in message or "not one AffectLens accepts" in message
    page.screenshot(path=str(ARTIFACTS / "4-error.png"))
