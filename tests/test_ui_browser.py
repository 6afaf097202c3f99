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
import sys
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


def _ask(page, settings, analysis_id: str, question: str, host_speed, tokens: int):
    """Ask in the page; wait until the thread stores the answer and the page shows it with
    every citation as a chip; return the stored answer."""
    from affectlens.agent import chat

    before = len(chat.history(analysis_id, settings=settings))
    page.fill("#question textarea", question)
    page.click("#ask-btn")
    with host_speed.within(f"the chat answer to {question!r}", tokens, PROMPT_S) as limit:
        deadline = time.monotonic() + limit
        while len(chat.history(analysis_id, settings=settings)) < before + 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer to {question!r} stored in the chat thread")
            time.sleep(1)
        answer = chat.history(analysis_id, settings=settings)[-1]
        assert answer.role == "assistant" and answer.content
        page.wait_for_function(  # the answer's citations are the card's chips
            "ids => { const m = document.querySelectorAll('#chat .message-row');"
            " if (m.length < 2) return false; const last = m[m.length-1];"
            " const chips = [...last.querySelectorAll('.chip')].map(c => c.firstChild.textContent);"
            " return last.innerText.trim().length > 0 && ids.every(i => chips.includes(i)); }",
            arg=list(answer.cited),
            timeout=30_000,
        )
    return answer


def _sides(page, heading: str) -> dict[str, int]:
    """The last answer cut at each side's heading (written by code, not the model: "For
    sadness:", "Against crying:" ...): heading -> the chips in its part; "" is the part before
    the first heading (the opening)."""
    # the message's own markup (its row's aria-label repeats the raw text, headings included)
    html = page.locator("#chat .message-row").last.locator("[data-testid=bot]").inner_html()
    html = html.split("<small>cited</small>", 1)[0]  # the list of cited cues below is not a side
    parts = re.split(f"({heading})", html)
    chips = [len(re.findall(r'class="chip[" ]', part)) for part in parts]
    return {"": chips[0], **{parts[i]: chips[i + 1] for i in range(1, len(parts) - 1, 2)}}


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
    answer = _ask(
        page, settings, stored.id, "Which cues show the emotion?", host_speed,
        ROUTE_MAX_TOKENS + settings.llm_max_tokens,
    )  # fmt: skip
    shown = page.locator("#chat .message-row").last.inner_text()
    for i in answer.cited:  # the cited cues are listed under the answer too
        assert i in shown.split("cited", 1)[-1], shown
    if answer.cited:  # a chip opens its cue on focus (keyboard), as on the card
        chip = page.locator("#chat .message-row").last.locator(".chip").first
        chip.focus()
        assert chip.locator(".chip-detail").is_visible()
    page.locator("#chat").screenshot(path=str(ARTIFACTS / "3-chat.png"))


def test_question_kinds_are_answered_with_cited_evidence_for_and_against(page, app, host_speed):
    """A contrastive, a yes/no and a counterfactual question on the sample's analysis: each
    answer has its kind's parts (headings and verdicts written by code), and every part that
    argues a side cites cues shown as chips. The model's wording is never checked."""
    from affectlens.agent import chat
    from affectlens.agent.chat.replies import SIDES_MAX_TOKENS

    settings = app[1]
    (stored,) = chat.analyses(settings)
    # contrastive: each emotion's side is argued with chips, or said to have no cue; a verdict
    _ask(page, settings, stored.id, "Why this emotion and not sadness?", host_speed,
         SIDES_MAX_TOKENS)  # fmt: skip
    sides = _sides(page, r"For [a-z]+:|No measured cue favours [a-z]+")
    sides.pop("")
    assert len(sides) >= 2, sides
    assert any(h.startswith("For sadness") or h.endswith("sadness") for h in sides), sides
    assert all(n >= 1 for h, n in sides.items() if h.startswith("For")), sides
    assert "Verdict:" in page.locator("#chat .message-row").last.inner_text()
    page.locator("#chat").screenshot(path=str(ARTIFACTS / "3b-contrastive.png"))

    # yes/no: an opening verdict with the cues' time spans (chips), then the sides' claims
    _ask(page, settings, stored.id, "Is she crying?", host_speed, SIDES_MAX_TOKENS)
    text = page.locator("#chat .message-row").last.inner_text()
    assert re.match(r"(Yes,|No,|The cues disagree|The cues cannot tell)", text.strip()), text
    if not text.strip().startswith("The cues cannot tell"):
        sides = _sides(page, r"Showing crying:|Against crying:")
        assert sides[""] >= 1, sides  # the opening gives each cue's time span, cited
        assert all(n >= 1 for n in sides.values()), sides
    page.locator("#chat").screenshot(path=str(ARTIFACTS / "3c-yes-no.png"))

    # counterfactual: the reading before and after, and what the left-out voice had shown
    reading_tokens = settings.llm_max_tokens * (1 + settings.verify_max_rounds)
    _ask(page, settings, stored.id, "What would you say without the voice?", host_speed,
         reading_tokens + SIDES_MAX_TOKENS)  # fmt: skip
    text = page.locator("#chat .message-row").last.inner_text()
    assert "Before:" in text and "Without the voice:" in text, text
    voice = [c for c in app_result(settings, stored.id).cues if c.modality == "voice"]
    if voice:  # the voice's cues, argued with chips
        sides = _sides(page, r"What the voice showed:")
        sides.pop("")
        assert sides and all(n >= 1 for n in sides.values()), sides
    page.locator("#chat").screenshot(path=str(ARTIFACTS / "3d-counterfactual.png"))


def app_result(settings, analysis_id: str):
    from affectlens.agent.store import AnalysisStore

    return AnalysisStore(settings, index=False).get(analysis_id)


def test_history_lists_and_reopens_with_captions_chips_chat_and_player(page, app):
    """History lists the analysis without a Refresh; in a fresh page, Open brings back the
    card (chips), the key frames captioned with time and top expression, the chat with its
    chips, and the clip in the player."""
    listed = (
        "() => (document.querySelector('#past')?.innerText || '').includes('sample.mp4')"
        " || [...document.querySelectorAll('#past input')].some(i => i.value.includes('sample'))"
    )
    page.get_by_role("tab", name="History").click()  # the session that ran it: no Refresh
    page.wait_for_function(listed, timeout=30_000)
    page.reload()
    page.wait_for_selector("#clip", timeout=30_000)
    page.get_by_role("tab", name="History").click()
    page.get_by_role("button", name="Refresh").click()
    page.wait_for_function(listed, timeout=30_000)
    page.click("#open-btn")
    page.wait_for_selector("#result-label", timeout=60_000)
    assert page.locator("#card .chip").count() >= 1
    captions = page.locator("#frames .caption-label").all_inner_texts()
    assert captions and all(
        re.fullmatch(r"\d\d:\d\d\.\d · ([a-z]+ \d+%|no face)", c.strip()) for c in captions
    ), captions
    page.wait_for_selector("#chat .message-row .chip", timeout=30_000)  # the thread, as chips
    video = page.wait_for_selector("#preview-video video", state="visible", timeout=30_000)
    assert video.get_attribute("src")
    assert "Reopened" in page.inner_text("#preview-note")
    page.screenshot(path=str(ARTIFACTS / "6-reopened.png"), full_page=True)


def test_names_keyboard_and_layout(page):
    """Playwright's accessibility tree: every button has a name, the plots and the question
    box are named; Tab goes from the question to Ask; a chip's pop-up stays in the window;
    no horizontal overflow at 1024 px, and the card's table fits (or scrolls) on a phone."""
    tree = page.locator("body").aria_snapshot()
    assert not re.search(r"- button( \"\")?:?$", tree, re.M), tree  # a button with no name
    assert re.search(r'img "Valence and arousal of', tree), tree
    assert re.search(r'img "Cue timeline', tree), tree
    assert re.search(r'- textbox "Your question about this analysis"', tree), tree
    # a chat message is named by the words shown, not the chips' HTML markup
    names = page.locator("#chat [data-testid=bot]").evaluate_all(
        "ms => ms.map(m => m.getAttribute('aria-label') || '')"
    )
    assert names and not any("<" in n for n in names), names
    page.focus("#question textarea")
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.closest('#ask-btn') !== null")
    for width, height in ((1024, 800), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.wait_for_timeout(500)
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width
        table = page.locator("#card .table-scroll")
        box, card = table.bounding_box(), page.locator("#card .card").bounding_box()
        assert box["x"] + box["width"] <= card["x"] + card["width"] + 1
        chips = page.locator("#card .chip")
        rightmost = max(range(chips.count()), key=lambda i: chips.nth(i).bounding_box()["x"])
        chips.nth(rightmost).focus()
        page.wait_for_timeout(200)
        pop = chips.nth(rightmost).locator(".chip-detail").bounding_box()
        assert pop and 0 <= pop["x"] and pop["x"] + pop["width"] <= width, (pop, width)
        page.screenshot(path=str(ARTIFACTS / f"7-layout-{width}.png"), full_page=True)
    page.set_viewport_size({"width": 1400, "height": 1000})


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
    page.locator("#clip").get_by_role("button", name="Clear").click()  # a new file instead:
    page.wait_for_selector("#error .error-box", state="detached", timeout=30_000)  # no stale error
    _upload(page, SAMPLE)
    assert page.locator("#error .error-box").count() == 0


def _eval_running() -> bool:
    """Whether an eval run is still working in this process (the server runs here)."""
    for frame in sys._current_frames().values():
        while frame is not None:
            if frame.f_code.co_name == "_eval_outputs":
                return True
            frame = frame.f_back
    return False


def test_evals_limit_and_cancel(page, app, host_speed):
    """The Evals tab counts the samples a run will take, and Cancel stops a run (its worker
    stops before the next sample; here, with a limit of 1, after at most the one)."""
    page.reload()
    page.wait_for_selector("#clip", timeout=30_000)
    page.get_by_role("tab", name="Evals").click()
    limit = page.locator("#eval-limit input")
    limit.fill("1")
    limit.press("Enter")
    page.wait_for_function("() => /running 1:/.test(document.body.innerText)", timeout=30_000)
    page.get_by_role("button", name="Run eval").click()
    page.wait_for_timeout(1500)
    page.click("#eval-cancel")
    page.wait_for_function("() => /Cancelled/.test(document.body.innerText)", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "8-evals-cancelled.png"), full_page=True)
    settings = app[1]
    tokens = settings.llm_max_tokens * (1 + settings.verify_max_rounds)
    with host_speed.within("the cancelled eval's last sample", tokens, PERCEPTION_S) as limit:
        deadline = time.monotonic() + limit
        while _eval_running():  # the server must not close under a running analysis
            if time.monotonic() > deadline:
                raise TimeoutError("the cancelled eval run did not stop")
            time.sleep(1)
