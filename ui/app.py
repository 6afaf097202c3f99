"""The Gradio app: analyse a clip, read the cited result, chat about it, reopen past analyses,
run evals.

``create_app(settings)`` lays out the Blocks and wires each control to a module-level handler
(``analyse``, ``ask``, ``list_past``, ``reopen``, ``delete``, ``run_eval``: settings first, then
the inputs; nothing heavy is loaded: the models load lazily on the first analysis);
``serve(settings)`` launches it with the settings' host, port, auth and upload limit. Each
browser session keeps its analysis id in ``gr.State``. With auth, each analysis records its
owner and a user sees, reopens, chats about and deletes only their own (chat threads are per
user too); without auth the app is single-user and says so on the page.
"""

from __future__ import annotations

import hashlib
import html
import inspect
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Analytics off before gradio is imported (it reads this at import time).
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
from gradio.components.plot import PlotData  # noqa: E402

from affectlens.agent.schemas import AnalysisResult  # noqa: E402
from affectlens.agent.textualise import ts  # noqa: E402
from affectlens.settings import Settings  # noqa: E402
from affectlens.ui import components as cp  # noqa: E402
from affectlens.ui import plots  # noqa: E402

log = logging.getLogger(__name__)

DATASETS_DIR = Path(__file__).resolve().parents[1] / "evals" / "datasets"
CSS = """
.gradio-container {max-width: 1380px !important}
#title h1 {margin-bottom: 0} #title p {margin-top: 2px; color: #666}
.card {border: 1px solid #ddd; border-radius: 10px; padding: 14px 18px; background: #fff}
.card-meta {color: #777; font-size: 0.85em}
.card-meta code {font-size: 0.95em}
.card-label {font-size: 2em; font-weight: 700; margin: 4px 0; text-transform: capitalize}
.card-figures {display: flex; gap: 18px; align-items: center; flex-wrap: wrap}
.card-probs {margin: 6px 0 2px} .prob {background: #f1f1f1; border-radius: 8px;
  padding: 1px 8px; margin-right: 6px; font-size: 0.85em}
.card h4 {margin: 12px 0 4px}
.explanation {margin: 0; padding-left: 18px} .explanation li {margin: 4px 0; line-height: 1.6}
.chip {position: relative; display: inline-block; cursor: help; border: 2px solid #888;
  border-radius: 10px; padding: 0 6px; margin: 0 2px; font-size: 0.8em; font-weight: 600;
  background: #fafafa; line-height: 1.4}
.chip-unknown {border-style: dashed; color: #a00}
.chip-detail {display: none; position: absolute; left: 0; top: 1.7em; z-index: 1000;
  width: min(320px, calc(100vw - 16px)); box-sizing: border-box; white-space: normal;
  background: #fff7e0; border: 1px solid #e8d9a8; border-radius: 6px; padding: 4px 8px;
  font-weight: 400; font-size: 0.95em; color: #333; box-shadow: 0 2px 6px rgba(0,0,0,.15)}
.chip:hover .chip-detail, .chip:focus .chip-detail {display: block}
.badge {border-radius: 8px; padding: 1px 8px; font-size: 0.8em; font-weight: 600}
.badge-ok {background: #dff3e0; color: #1c6b2a} .badge-missing {background: #eee; color: #555}
.badge-failed {background: #fde2e0; color: #9b1c1c}
.table-scroll {overflow-x: auto; max-width: 100%}
.modalities {width: 100%; margin-top: 12px; border-collapse: collapse; font-size: 0.9em}
.modalities td, .modalities th {border-top: 1px solid #eee; padding: 4px 6px; vertical-align: top;
  text-align: left}
.modalities td:first-child, .modalities td:last-child {white-space: nowrap}
@media (max-width: 600px) {
  .card {padding: 10px 10px} .card-label {font-size: 1.5em}
  .modalities {font-size: 0.8em} .modalities td, .modalities th {padding: 3px 3px}
  .modalities td:first-child, .modalities td:last-child {white-space: normal}
}
#timeline, #circumplex {padding-top: 34px} #frames .grid-container {padding-top: 34px}
#frames .thumbnail-item {display: flex; flex-direction: column; height: auto;
  aspect-ratio: auto}
#frames .thumbnail-item img {height: auto; max-height: 230px; object-fit: contain}
#frames .caption-label {position: static; max-width: none; white-space: normal;
  overflow: visible; text-overflow: clip; margin: 2px 0 0; font-size: 0.85em}
.dot {display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 6px}
.card-error, .error-box {background: #fde2e0; color: #7a1212; border-radius: 8px;
  padding: 10px 14px; margin: 6px 0}
.warning-box {background: #fff4d6; color: #6b4e00; border-radius: 8px; padding: 10px 14px;
  margin: 6px 0}
.stages {list-style: none; padding: 0; margin: 0} .stage {padding: 2px 0}
.stage .icon {display: inline-block; width: 1.6em} .stage .secs {float: right; color: #777}
.stage-failed {color: #9b1c1c} .stage-start {font-weight: 600} .stage-missing {color: #6b6b6b}
.stage-start .icon, .stage-start .secs {animation: al-pulse 1.2s ease-in-out infinite}
@keyframes al-pulse {50% {opacity: 0.3}}
@media (prefers-reduced-motion: reduce) {.stage-start .icon, .stage-start .secs {animation: none}}
.elapsed {color: #777; font-size: 0.85em; margin-top: 4px}
.problems {margin-top: 8px; color: #555; font-size: 0.9em}
"""

# The page's script. A chip's pop-up is placed in the window's coordinates (position: fixed)
# when it opens, below the chip or above it when there is no room, and never past the window's
# edges: the card's right edge and the chat's scrolling box would otherwise cut it off. Gradio
# names each chat message after its raw content, which for an answer with chips is HTML
# markup; a screen reader would spell it out, so the name becomes the words shown (the pop-ups
# left out).
PAGE_JS = """
() => {
  const rename = () => {
    const messages = '#chat [data-testid=bot], #chat [data-testid=user]';
    for (const m of document.querySelectorAll(messages)) {
      const clone = m.cloneNode(true);
      clone.querySelectorAll('.chip-detail').forEach((d) => d.remove());
      const words = clone.textContent.replace(/\\s+/g, ' ').trim();
      const name = (m.dataset.testid === 'bot' ? "bot's message: " : "user's message: ") + words;
      if (words && m.getAttribute('aria-label') !== name) m.setAttribute('aria-label', name);
    }
  };
  new MutationObserver(rename).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ['aria-label'],
  });
  const place = (chip) => {
    const pop = chip.querySelector('.chip-detail');
    if (!pop) return;
    pop.style.position = 'fixed';
    const c = chip.getBoundingClientRect(), p = pop.getBoundingClientRect(), m = 8;
    const left = Math.max(m, Math.min(c.left, window.innerWidth - p.width - m));
    const below = c.bottom + 4, above = c.top - p.height - 4;
    const top = below + p.height <= window.innerHeight - m || above < m ? below : above;
    pop.style.left = left + 'px';
    pop.style.top = top + 'px';
  };
  for (const kind of ['mouseover', 'focusin']) {
    document.addEventListener(kind, (e) => {
      const chip = e.target.closest && e.target.closest('.chip');
      if (chip) requestAnimationFrame(() => place(chip));
    });
  }
  document.addEventListener('scroll', () => {
    const open = document.querySelector('.chip:focus, .chip:hover');
    if (open) place(open);
  }, true);
}
"""


# --- wiring to the rest of the project (imported lazily: the page starts without models) ----
def _friendly(exc: BaseException) -> str:
    """A short message for the page; the traceback goes to the server log only."""
    from affectlens.agent.chat import ChatError
    from affectlens.agent.llm import LLMError
    from affectlens.agent.store import AnalysisNotFound
    from affectlens.models import ModelError
    from affectlens.tools.media import MediaError

    if isinstance(exc, MediaError):
        return str(exc)
    if isinstance(exc, AnalysisNotFound):
        return f"Analysis not found: {exc.args[0] if exc.args else exc}"
    if isinstance(exc, ChatError):
        return f"Chat: {exc}"
    if isinstance(exc, ModelError):
        return f"A model is missing or broken: {exc} (run `affectlens models assemble`)."
    if isinstance(exc, LLMError):
        return f"The language model failed: {exc}"
    log.error("unexpected error in the UI", exc_info=exc)
    return f"Unexpected error ({type(exc).__name__}); the details are in the server log."


def _store(settings: Settings):
    from affectlens.agent.store import AnalysisStore

    return AnalysisStore(settings)


def _saved_warnings(settings: Settings, result: AnalysisResult) -> list[str]:
    """Warnings the store recorded when saving (e.g. indexing failed): the analysis is saved."""
    try:
        return _store(settings).get(result.id).warnings
    except Exception:  # noqa: BLE001 - not saved (save=False) or unreadable: nothing to add
        return list(result.warnings)


def _frames_dir(settings: Settings, analysis_id: str) -> Path:
    return _store(settings).frames_dir(analysis_id)


def _user(settings: Settings, request: gr.Request | None) -> str | None:
    """The signed-in user, or None when the app runs without auth (single-user)."""
    if settings.auth is None or request is None:
        return None
    return getattr(request, "username", None) or None


def _thread(user: str | None) -> str:
    """The chat thread of one user (a hash: thread names allow only [A-Za-z0-9_.-])."""
    if user is None:
        return "default"
    return "user-" + hashlib.sha256(user.encode()).hexdigest()[:16]


SINGLE_USER_NOTE = (
    "Single-user mode: this server has no sign-in, so everyone who can open "
    "this page sees every stored analysis. Set AFFECTLENS_AUTH to separate users."
)


def _gallery(items: list[tuple[str, str]]) -> list[tuple[Any, str]]:
    from PIL import Image

    return [(Image.open(f).copy(), caption) for f, caption in items]


class DescribedPlot(PlotData):
    """A matplotlib figure with the words screen readers say for it: Gradio writes the image's
    alt text as "<chart> plot visualising provided data" and leaves ``chart`` undefined for
    matplotlib."""

    chart: str


def described(fig: Any, what: str) -> DescribedPlot:
    from gradio.processing_utils import encode_plot_to_base64
    from matplotlib import pyplot

    data = encode_plot_to_base64(fig, "webp")
    pyplot.close(fig)
    return DescribedPlot(type="matplotlib", plot=data, chart=what)


def _views(result: AnalysisResult, frames: list[tuple[str, str]]) -> tuple:
    """card, circumplex, timeline, key frames for one result."""
    label = result.reading.label if result.reading else "no reading"
    return (
        cp.result_card(result),
        described(plots.circumplex(result.reading), f"Valence and arousal of '{label}':"),
        described(plots.timeline(result), "Cue timeline, cited cues shaded:"),
        _gallery(frames),
    )


# --- chat ------------------------------------------------------------------------------------
def _chat_module():
    try:
        from affectlens.agent import chat
    except ImportError:
        return None
    return chat


def _history(
    analysis_id: str, settings: Settings, thread: str = "default", cues: list | None = None
) -> list[dict]:
    """The thread as chat messages; with the analysis's ``cues``, an answer's citations are
    chips again (the same as when it was given)."""
    chat = _chat_module()
    if chat is None or not hasattr(chat, "history"):
        return []
    try:
        turns = chat.history(analysis_id, thread, settings=settings)
    except Exception as exc:  # noqa: BLE001 - history is a nicety; the result still opens
        log.warning("no chat history for %s: %s", analysis_id, exc)
        return []
    out = []
    for t in turns or []:
        role = t.get("role") if isinstance(t, dict) else getattr(t, "role", None)
        content = t.get("content") if isinstance(t, dict) else getattr(t, "content", None)
        if role in ("user", "assistant") and content:
            text = str(content)
            if role == "assistant" and cues:
                text = cp.with_chips(text, {c.id: c for c in cues})
            out.append({"role": role, "content": text})
    return out


def _answer_text(answer: Any) -> str:
    for attr in ("text", "answer", "content"):
        value = getattr(answer, attr, None)
        if isinstance(value, str):
            return value
    return str(answer)


def chat_stream(
    analysis_id: str, question: str, settings: Settings, thread: str = "default"
) -> Iterator[str]:
    """The answer so far, growing as the chat streams tokens; the final text lists the cues it
    cites with their time, modality and value."""
    chat = _chat_module()
    if chat is None:
        yield "Chat is not available in this installation (affectlens.agent.chat is missing)."
        return
    text = ""
    for piece in chat.ask_stream(analysis_id, question, settings, thread=thread, steps=True):
        if isinstance(piece, chat.ChatStep):  # what it is doing, until its first words
            if not text:
                yield f"<em class='chat-step'>{html.escape(piece.text)}…</em>"
        elif isinstance(piece, str):
            text += piece
            yield text
        else:  # the final ChatAnswer (possibly repaired): citations become the card's chips
            cues = getattr(piece, "cues", [])
            text = cp.with_chips(_answer_text(piece), {c.id: c for c in cues})
            yield text + _cited_footer(cues)


def _cited_footer(cues: list) -> str:
    if not cues:
        return ""
    lines = [
        f"- **{c.id}** {ts(c.start)}-{ts(c.end)} · {c.modality} · {c.name}: {cp.cue_value(c)}"
        for c in cues
    ]
    return "\n\n<small>cited</small>\n\n" + "\n".join(lines)


# --- evals -----------------------------------------------------------------------------------
def dataset_choices() -> list[str]:
    if not DATASETS_DIR.is_dir():
        return []
    return sorted(
        str(p.relative_to(DATASETS_DIR.parents[1])) for p in DATASETS_DIR.iterdir() if p.is_dir()
    )


def _eval_runner():
    try:
        from affectlens.evals import runner
    except ImportError:
        return None
    return runner if hasattr(runner, "run_eval") else None  # pragma: no branch


# --- handlers (module level: the tests call them with explicit settings) -----------------
# Every output list below is fixed by ``create_app``'s wiring; a handler returns one value per
# output, gr.skip() for an output it leaves as it is.
def _stage_rows(stages: dict[str, tuple[str, float, str]]) -> list:
    """(stage, status, seconds, reason) for the progress list."""
    return [(s, st, sec, why) for s, (st, sec, why) in stages.items()]


# What the upload accepts: every kind the back end analyses (video, a photo, an audio file),
# with the containers a browser's file filter does not file under "video".
ACCEPTED = ["video", "image", "audio", ".flv", ".mkv", ".avi", ".wmv", ".mts", ".3gp", ".mpg"]
PREVIEW_DIR = Path(tempfile.gettempdir()) / "affectlens-previews"  # Gradio serves the temp dir


def preview(settings: Settings, path: str | None):
    """What the browser can show of the chosen file. A video it cannot play (an actor's .flv)
    gets a small transcoded copy; a file nothing can read gets a plain note instead of the red
    "not playable" of a broken file. Outputs: video, image, audio, note."""
    from affectlens.tools.media import MediaError, probe

    hide = gr.update(visible=False, value=None)
    if not path:
        return hide, hide, hide, ""
    unplayable = cp.note_box(
        "No preview: the browser cannot play this file. Press Analyse to read it anyway."
    )
    try:  # the analysis's own probe: the same checks, the same reading of the streams
        info = probe(path, settings)
    except MediaError:
        return hide, hide, hide, unplayable
    if info.is_image:
        return hide, gr.update(visible=True, value=path), hide, ""
    if not info.has_video:
        return hide, hide, gr.update(visible=True, value=path), ""
    shown, transcoded = cp.browser_preview(Path(path), info.video_codec, PREVIEW_DIR)
    if shown is None:
        return hide, hide, hide, unplayable
    note = (
        cp.note_box(
            f"Preview: a small copy the browser can play (the first {cp.PREVIEW_S} s); "
            f"the original {Path(path).suffix or 'file'} is what gets analysed."
        )
        if transcoded
        else ""
    )
    return gr.update(visible=True, value=str(shown)), hide, hide, note


def analyse(
    settings: Settings,
    path: str | None,
    current: str | None,
    recorded: str | None = None,
    request: gr.Request | None = None,
):
    """The Analyse button: the stage list while the graph streams its stages, then the result.
    ``path`` is the uploaded file, ``recorded`` a webcam recording (used when no file is chosen).
    Outputs: progress, error, card, circumplex, timeline, frames, chatbot, analysis id."""
    from affectlens.agent.run import analyze_stream

    user = _user(settings, request)
    empty: tuple = (None, None, None, [])
    path = path or recorded
    if not path:
        gr.Warning("Choose a clip first.")
        yield ("", cp.error_box("no file chosen"), gr.skip(), *empty[1:], gr.skip(), current)
        return
    t0 = time.perf_counter()
    stages: dict[str, tuple[str, float, str]] = {}  # stage -> status, seconds, reason
    yield (
        cp.progress_html([], 0.0),
        "",
        cp.result_card_placeholder("Analysing…"),
        *empty[1:],
        [],
        None,
    )
    try:
        for item in analyze_stream(path, settings):
            if isinstance(item, AnalysisResult):  # the last item
                result = item
                continue
            stages[item.stage] = (item.status, item.seconds, item.reason)
            now = time.perf_counter()
            yield (cp.progress_html(_stage_rows(stages), now - t0), *(gr.skip(),) * 7)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        message = _friendly(exc)
        gr.Warning(message)
        yield (
            cp.progress_html(_stage_rows(stages), time.perf_counter() - t0, "(stopped)"),
            cp.error_box(message),
            cp.result_card_placeholder("No result."),
            *empty[1:],
            [],
            None,
        )
        return
    total = time.perf_counter() - t0
    if user is not None:
        try:
            _store(settings).set_owner(result.id, user)
        except Exception as exc:  # noqa: BLE001 - not saved: nothing to own
            log.warning("could not record the owner of %s: %s", result.id, exc)
    try:
        keys = cp.key_frames(result, path, _frames_dir(settings, result.id))
    except Exception as exc:  # noqa: BLE001 - frames are an illustration, not the result
        log.warning("key frames failed: %s", exc)
        keys = []
    note = f"(done: {result.reading.label})" if result.reading else "(no reading)"
    warnings = _saved_warnings(settings, result)
    for w in warnings:
        gr.Warning(w)
    yield (
        cp.progress_html(_stage_rows(stages), total, note),
        cp.warning_box(warnings),
        *_views(result, keys),
        [],
        result.id,
    )
    # after the result is on the page (a copy to transcode must not delay it), before History
    # lists the analysis: what the player shows when it is reopened
    try:
        cp.keep_clip(path, result.media, _frames_dir(settings, result.id))
    except Exception as exc:  # noqa: BLE001 - reopening then says the clip was not kept
        log.warning("could not keep the clip of %s: %s", result.id, exc)


def ask(
    settings: Settings,
    q: str,
    messages: list[dict],
    current: str | None,
    request: gr.Request | None = None,
):
    """Ask / Enter: the chat's answer streamed into the last message. Outputs: chatbot,
    question box."""
    user = _user(settings, request)
    q = (q or "").strip()
    messages = list(messages or [])
    if not q:
        yield messages, ""
        return
    messages.append({"role": "user", "content": q})
    if not current:
        messages.append(
            {"role": "assistant", "content": "Analyse a clip (or open one in History) first."}
        )
        yield messages, ""
        return
    messages.append({"role": "assistant", "content": "…"})
    yield messages, ""
    try:
        _store(settings).get_for(current, user)  # another user's id: not found
        for text in chat_stream(current, q, settings, _thread(user)):
            messages[-1] = {"role": "assistant", "content": text or "…"}
            yield messages, ""
    except Exception as exc:  # noqa: BLE001 - a failed answer must not break the page
        messages[-1] = {"role": "assistant", "content": f"⚠ {_friendly(exc)}"}
        yield messages, ""


def list_past(settings: Settings, request: gr.Request | None = None):
    """The History dropdown's choices (the user's own analyses). Outputs: dropdown, note."""
    try:
        items = _store(settings).list_for(_user(settings, request))
    except Exception as exc:  # noqa: BLE001
        return gr.update(choices=[]), cp.error_box(_friendly(exc))
    choices = [
        (f"{a.created:%Y-%m-%d %H:%M} · {a.label or '(no label)'} · {a.file_name}", a.id)
        for a in items
    ]
    note = "" if choices else '<div class="card-meta">No analyses stored yet.</div>'
    return gr.update(choices=choices, value=choices[0][1] if choices else None), note


def reopen(
    settings: Settings, chosen: str | None, current: str | None, request: gr.Request | None = None
):
    """Open: a stored analysis back on the Analyse tab, with its chat and its clip in the
    player. 15 outputs: progress, error, card, circumplex, timeline, frames, chatbot, analysis
    id, history note, tabs, then the upload (emptied: the page shows the stored clip) and the
    player's video, image, audio and note."""
    user = _user(settings, request)
    keep = (gr.skip(),) * 5
    if not chosen:
        return (gr.skip(),) * 7 + (current, cp.error_box("pick an analysis"), gr.skip(), *keep)
    try:
        result = _store(settings).get_for(chosen, user)
    except Exception as exc:  # noqa: BLE001 - missing or unreadable file
        return (gr.skip(),) * 7 + (current, cp.error_box(_friendly(exc)), gr.skip(), *keep)
    keys = cp.stored_key_frames(_frames_dir(settings, result.id))
    return (
        "",
        "",
        *_views(result, keys),
        _history(result.id, settings, _thread(user), result.cues),
        result.id,
        "",
        gr.Tabs(selected="analyse"),
        None,
        *_player(settings, result),
    )


def _player(settings: Settings, result: AnalysisResult) -> tuple:
    """The player of a reopened analysis (video, image, audio, note): the clip kept with it,
    served from a copy in the temp folder (Gradio serves that, never the data directory), or a
    plain note that it is no longer available."""
    hide = gr.update(visible=False, value=None)
    kept = cp.kept_clip(_frames_dir(settings, result.id))
    if kept is None:
        note = f"The clip {result.media.file_name} is no longer available; its analysis is."
        return hide, hide, hide, cp.note_box(note)
    served = PREVIEW_DIR / result.id / kept.name
    served.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(kept, served)
    show = gr.update(visible=True, value=str(served))
    note = cp.note_box(f"Reopened: {result.media.file_name}")
    if result.media.is_image:
        return hide, show, hide, note
    if result.media.has_video:
        return show, hide, hide, note
    return hide, hide, show, note


def cleared():
    """A new file chosen (or the upload emptied): the previous result, its error and its chat
    leave the page (the analysis stays in History). Outputs: as ``analyse``'s."""
    placeholder = cp.result_card_placeholder("Press Analyse to read this file.")
    return "", "", placeholder, None, None, [], [], None


def delete(
    settings: Settings, chosen: str | None, current: str | None, request: gr.Request | None = None
):
    """Remove the chosen analysis and everything kept for it (owner only). Outputs: dropdown,
    history note, analysis id."""
    user = _user(settings, request)
    store = _store(settings)
    if not chosen:
        return gr.skip(), cp.error_box("pick an analysis"), current
    try:
        store.get_for(chosen, user)
        store.delete(chosen)
        shutil.rmtree(PREVIEW_DIR / chosen, ignore_errors=True)  # its player's served copy
    except Exception as exc:  # noqa: BLE001
        return gr.skip(), cp.error_box(_friendly(exc)), current
    dropdown, _ = list_past(settings, request)
    note = f'<div class="card-meta">Deleted {cp.escape(chosen)}.</div>'
    return dropdown, note, None if current == chosen else current


METRIC_HEADERS = ["metric", "value", "95% low", "95% high"]
INTENDED_USE = (
    "For research and media analysis. Readings are inferences from visible and audible cues, "
    "not facts about what a person feels. Not for judging people: do not use it to assess "
    "employees, job candidates or students (the EU AI Act, Art. 5(1)(f), forbids emotion "
    "recognition at work and in education)."
)
DEFAULT_EVAL_LIMIT = 10


def seconds_per_sample(settings: Settings, recent: int = 20) -> float | None:
    """The median total seconds of this machine's recent analyses (None before the first)."""
    store = _store(settings)
    totals = []
    for a in store.list()[:recent]:
        try:
            totals.append(sum(store.get(a.id).timings.values()))
        except Exception:  # noqa: BLE001 - an unreadable record just does not count
            continue
    return float(np.median(totals)) if totals else None


def eval_estimate(settings: Settings, choice: str | None, typed: str, limit: float | None) -> str:
    """How many samples the chosen set has and how long the run will take here (the Evals
    tab's note, updated as the choice or the limit changes)."""
    from affectlens.evals.datasets import load_dataset

    try:
        n = len(load_dataset(eval_folder(choice, typed, settings)).samples)
    except Exception as exc:  # noqa: BLE001 - the same message the run would give
        return cp.error_box(_friendly(exc) if not isinstance(exc, ValueError) else str(exc))
    run = min(n, int(limit)) if limit else n
    per = seconds_per_sample(settings)
    when = (
        f"about {max(1, round(run * per / 60))} min here ({per:.0f} s a sample, the median of "
        "your recent analyses; the judge adds to it)"
        if per
        else "time unknown until a first analysis has run on this machine"
    )
    return cp.note_box(f"{n} samples in this set; running {run}: {when}.")


# Sessions whose eval run was cancelled. Gradio's cancel drops the event, but the worker
# thread it ran in goes on; the run checks this before each clip and each score (run_eval's
# should_stop, and its progress messages) and stops there.
_CANCELLED: set[str] = set()


class EvalCancelled(Exception):
    """The session cancelled its eval run (raised between two samples)."""


def cancel_eval(request: gr.Request | None = None) -> str:
    """Cancel: the run stops before its next sample. Output: the Evals note."""
    if request is not None and request.session_hash:
        _CANCELLED.add(request.session_hash)
    return cp.note_box("Cancelled: the run stops before its next sample.")


def run_eval(
    settings: Settings,
    choice: str | None,
    typed: str,
    limit: float | None = DEFAULT_EVAL_LIMIT,
    progress=gr.Progress(),
    request: gr.Request | None = None,
):
    """Run eval on the first ``limit`` samples: metrics table, plots, report file, note. A wrong
    folder or a failed run is one clear message in the note; the other outputs stay as they
    were (no red badge on each of them). Cancel (``cancel_eval``) stops it between samples."""
    session = request.session_hash if request is not None else None
    _CANCELLED.discard(session or "")

    def cancelled() -> bool:
        return session is not None and session in _CANCELLED

    runner = _eval_runner()
    if runner is None:
        return gr.skip(), gr.skip(), gr.skip(), cp.error_box("The eval runner is not installed.")
    try:
        folder = eval_folder(choice, typed, settings)
    except ValueError as exc:
        return gr.skip(), gr.skip(), gr.skip(), cp.error_box(str(exc))
    progress(0, desc="loading the dataset")
    try:
        return _eval_outputs(
            runner, folder, settings, progress, int(limit) if limit else None, cancelled
        )
    except EvalCancelled:
        _CANCELLED.discard(session or "")
        return gr.skip(), gr.skip(), gr.skip(), cp.note_box("Cancelled.")
    except Exception as exc:  # noqa: BLE001 - shown in the note
        return gr.skip(), gr.skip(), gr.skip(), cp.error_box(_friendly(exc))


def _bind(handler, settings: Settings):
    """``handler`` with ``settings`` filled in, as Gradio reads a handler: the same name (the
    API name), a generator stays one, and the signature without ``settings`` (Gradio injects
    gr.Request and gr.Progress by it; a functools.partial would hide the annotations)."""
    if inspect.isgeneratorfunction(handler):

        def bound(*args, **kwargs):
            yield from handler(settings, *args, **kwargs)
    else:

        def bound(*args, **kwargs):
            return handler(settings, *args, **kwargs)

    signature = inspect.signature(handler)
    bound.__name__ = bound.__qualname__ = handler.__name__
    bound.__doc__ = handler.__doc__
    params = list(signature.parameters.values())[1:]
    bound.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    bound.__annotations__ = {k: v for k, v in handler.__annotations__.items() if k != "settings"}
    return bound


# --- the app ---------------------------------------------------------------------------------
def create_app(settings: Settings) -> gr.Blocks:
    """The page's layout, each control wired to its handler bound to ``settings``; launch with
    ``serve``."""
    with gr.Blocks(title="AffectLens", analytics_enabled=False) as app:
        analysis_id = gr.State(None)  # per browser session
        with gr.Column(elem_id="title"):
            gr.Markdown(
                "# AffectLens\nWhich emotion does this clip show, and why? "
                "Every claim cites the measured cue it rests on."
            )
            if settings.auth is None:
                gr.HTML(f'<div class="card-meta">{SINGLE_USER_NOTE}</div>', elem_id="single-user")
        with gr.Tabs() as tabs:
            with gr.Tab("Analyse", id="analyse"):
                with gr.Row():
                    with gr.Column(scale=4, min_width=300):
                        clip = gr.File(
                            label="Clip, photo or audio file",
                            file_types=ACCEPTED,
                            type="filepath",
                            height=120,
                            elem_id="clip",
                        )
                        preview_note = gr.HTML(elem_id="preview-note")
                        shown_video = gr.Video(
                            label="Preview",
                            interactive=False,
                            visible=False,
                            height=260,
                            elem_id="preview-video",
                        )
                        shown_image = gr.Image(
                            label="Preview",
                            type="filepath",
                            interactive=False,
                            visible=False,
                            height=260,
                            elem_id="preview-image",
                        )
                        shown_audio = gr.Audio(
                            label="Preview",
                            type="filepath",
                            interactive=False,
                            visible=False,
                            elem_id="preview-audio",
                        )
                        with gr.Accordion("…or record with the webcam", open=False):
                            recorded = gr.Video(
                                label="Recording",
                                sources=["webcam"],
                                height=240,
                                elem_id="record",
                            )
                        run_btn = gr.Button("Analyse", variant="primary", elem_id="analyse-btn")
                        progress = gr.HTML(elem_id="progress")
                        error = gr.HTML(elem_id="error")
                    with gr.Column(scale=6, min_width=360):
                        card = gr.HTML(
                            '<div class="card card-meta">Upload a clip and press '
                            "<b>Analyse</b>.</div>",
                            elem_id="card",
                        )
                        with gr.Row():
                            circ = gr.Plot(label="Valence / arousal", elem_id="circumplex", scale=2)
                            frames = gr.Gallery(
                                label="Key frames (detected face)",
                                columns=2,
                                height=330,
                                object_fit="contain",  # the whole frame: the face box uncut
                                elem_id="frames",
                                scale=3,
                            )
                with gr.Row():
                    with gr.Column(scale=6):
                        timeline = gr.Plot(label="Timeline (cited cues shaded)", elem_id="timeline")
                    with gr.Column(scale=4):
                        chatbot = gr.Chatbot(
                            label="Ask about this analysis",
                            height=420,
                            elem_id="chat",
                            feedback_options=None,
                            buttons=["copy", "copy_all"],  # no unnamed "share" icon
                            placeholder="Analyse a clip, then ask e.g. "
                            "“Which cue shows the smile?”",
                        )
                        with gr.Row():
                            question = gr.Textbox(
                                label="Your question about this analysis",
                                show_label=False,
                                scale=5,
                                placeholder="Ask a question",
                                elem_id="question",
                            )
                            ask_btn = gr.Button("Ask", scale=1, elem_id="ask-btn")

            with gr.Tab("History", id="history"):
                with gr.Row():
                    past = gr.Dropdown(label="Past analyses", choices=[], scale=5, elem_id="past")
                    refresh_btn = gr.Button("Refresh", scale=1)
                    open_btn = gr.Button("Open", variant="primary", scale=1, elem_id="open-btn")
                    delete_btn = gr.Button("Delete", variant="stop", scale=1, elem_id="delete-btn")
                history_note = gr.HTML()

            with gr.Tab("Evals", id="evals"):
                with gr.Row():
                    dataset = gr.Dropdown(
                        label="Dataset",
                        choices=dataset_choices(),
                        value=next(iter(dataset_choices()), None),
                        scale=3,
                    )
                    dataset_path = gr.Textbox(label="…or a dataset folder", scale=3)
                    eval_limit = gr.Number(
                        label="Samples (at most)",
                        value=DEFAULT_EVAL_LIMIT,
                        precision=0,
                        minimum=1,
                        scale=1,
                        elem_id="eval-limit",
                    )
                    eval_btn = gr.Button("Run eval", variant="primary", scale=1)
                    cancel_btn = gr.Button("Cancel", scale=1, elem_id="eval-cancel")
                eval_note = gr.HTML(
                    ""
                    if _eval_runner()
                    else '<div class="error-box">The eval runner '
                    "(<code>evals.runner.run_eval</code>) is not installed yet; use "
                    "<code>affectlens eval</code> when it is.</div>"
                )
                metrics = gr.Dataframe(
                    value=[["-"] * len(METRIC_HEADERS)],
                    headers=METRIC_HEADERS,
                    label="Metrics",
                    interactive=False,
                )
                eval_plots = gr.Gallery(label="Plots", columns=3, height=320)
                report = gr.File(label="Report")

        gr.HTML(f'<footer class="card-meta">{INTENDED_USE}</footer>', elem_id="intended-use")

        # --- wiring ---------------------------------------------------------------------
        outputs = [progress, error, card, circ, timeline, frames, chatbot, analysis_id]
        player = [shown_video, shown_image, shown_audio, preview_note]
        for chosen in (clip.upload, clip.clear):  # the user's act, not reopen emptying it
            chosen(_bind(preview, settings), [clip], player, concurrency_limit=2)
            chosen(cleared, None, outputs)  # no stale result, error or chat
        run_btn.click(
            _bind(analyse, settings),
            [clip, analysis_id, recorded],
            outputs,
            concurrency_limit=1,
            concurrency_id="analysis",
        ).then(_bind(list_past, settings), None, [past, history_note])  # History is current
        for trigger in (ask_btn.click, question.submit):
            trigger(
                _bind(ask, settings),
                [question, chatbot, analysis_id],
                [chatbot, question],
                concurrency_limit=1,
                concurrency_id="llm",
            )
        refresh_btn.click(_bind(list_past, settings), None, [past, history_note])
        app.load(_bind(list_past, settings), None, [past, history_note])
        open_btn.click(
            _bind(reopen, settings),
            [past, analysis_id],
            [*outputs, history_note, tabs, clip, *player],
        )
        delete_btn.click(
            _bind(delete, settings), [past, analysis_id], [past, history_note, analysis_id]
        )
        estimate_inputs = [dataset, dataset_path, eval_limit]
        for changed in (dataset.change, dataset_path.blur, eval_limit.change, app.load):
            changed(_bind(eval_estimate, settings), estimate_inputs, eval_note)
        running = eval_btn.click(
            _bind(run_eval, settings),
            estimate_inputs,
            [metrics, eval_plots, report, eval_note],
            concurrency_limit=1,
            concurrency_id="analysis",
        )
        cancel_btn.click(cancel_eval, None, eval_note, cancels=[running])
    return app


def eval_roots(settings: Settings) -> list[Path]:
    """The folders the Evals tab may read: the bundled datasets and ``settings.eval_roots``."""
    return [DATASETS_DIR.resolve(), *settings.eval_roots]


def eval_folder(choice: str | None, typed: str | None, settings: Settings) -> Path:
    """The dataset folder the Evals tab asked for, only inside ``eval_roots`` (a typed path
    may not point the server at any other directory); ValueError otherwise."""
    if typed and typed.strip():
        folder = Path(typed.strip()).expanduser().resolve()
    elif choice:
        folder = (DATASETS_DIR.parents[1] / choice).resolve()
    else:
        raise ValueError("Choose a dataset.")
    roots = eval_roots(settings)
    if not any(folder == r or folder.is_relative_to(r) for r in roots):
        raise ValueError(
            "Only folders under the configured dataset roots can be evaluated "
            f"(eval_roots: {', '.join(str(r) for r in roots)})."
        )
    if not folder.is_dir():
        raise ValueError(f"Not a dataset folder: {folder.name}")
    return folder


def _eval_outputs(
    runner, folder: Path, settings: Settings, progress, limit: int | None = None, cancelled=None
) -> tuple:
    """Run ``evals.runner.run_eval`` and turn its results into a table, plots and a download."""
    from affectlens.evals.datasets import load_dataset

    dataset = load_dataset(folder).head(limit)
    total = max(len(dataset.samples), 1)
    out_dir = settings.data_dir / "ui" / "evals" / f"{folder.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    done = [0]

    def say(message: str) -> None:
        if cancelled is not None and cancelled():
            raise EvalCancelled
        done[0] += message.startswith("[")
        progress((min(done[0], total) - 1, total), desc=message)

    try:  # a cancel stops the clips' batch before its next clip, and the scoring too
        results = runner.run_eval(dataset, settings, out_dir, progress=say, should_stop=cancelled)
    except runner.EvalStopped as exc:
        raise EvalCancelled from exc
    m = results.get("metrics", {})
    rows = [
        [name, _num(ci.get("value")), _num(ci.get("lo")), _num(ci.get("hi"))]
        for name, ci in (m.get("headline") or {}).items()
    ]
    table = {"headers": METRIC_HEADERS, "data": rows or [["-"] * 4]}
    plots_ = _gallery([(str(p), p.stem) for p in sorted(out_dir.glob("*.png"))])
    report = next(
        (str(p) for p in (out_dir / "report.md", out_dir / "results.json") if p.is_file()), None
    )
    note = (
        f'<div class="card-meta">{m.get("scored", 0)} of {m.get("n", 0)} samples scored '
        f"({m.get('failed', 0)} failed); report in {cp.escape(str(out_dir))}</div>"
    )
    return table, plots_, report, note


def _num(x: Any) -> str:
    try:
        return "-" if x is None or x != x else f"{float(x):.3f}"
    except (TypeError, ValueError):
        return str(x)


class ExposureError(ValueError):
    """Refused: the server would be reachable from other machines without authentication."""


def check_exposure(settings: Settings) -> str | None:
    """Raise for a non-loopback host without auth (unless ``allow_remote_without_auth``);
    return the warning to print when that override is used, else None."""
    if settings.is_loopback or settings.auth is not None:
        return None
    if not settings.allow_remote_without_auth:
        raise ExposureError(
            f"refusing to serve on {settings.host} without authentication: anyone who can reach "
            "it could read every analysis. Set AFFECTLENS_AUTH=user:password (or `auth` in "
            "config.toml), bind 127.0.0.1, or pass --allow-remote-without-auth."
        )
    return (
        f"WARNING: serving on {settings.host} WITHOUT authentication: anyone who can reach "
        "this port can upload files and read every stored analysis."
    )


def serve(
    settings: Settings, *, block: bool = True, quiet: bool = False
) -> tuple[gr.Blocks, str | None]:
    """Launch on ``settings.host:port`` with its auth and upload limit; returns (app, url).
    Refuses a non-loopback host without auth (see ``check_exposure``)."""
    warning = check_exposure(settings)
    if warning:
        log.warning(warning)
        print(warning, flush=True)
    _store(settings).prune()
    auth = settings.auth_pairs() or None
    app = create_app(settings)
    app.queue(default_concurrency_limit=2)
    app.launch(
        server_name=settings.host,
        server_port=settings.port,
        auth=auth,
        max_file_size=int(settings.max_upload_mb * 1024 * 1024),
        prevent_thread_lock=not block,
        quiet=quiet,
        css=CSS,
        js=PAGE_JS,
        theme=gr.themes.Soft(),
        footer_links=[],
        ssr_mode=False,
        show_error=False,
        allowed_paths=[str(settings.data_dir / "ui" / "evals")],
    )
    return app, app.local_url
