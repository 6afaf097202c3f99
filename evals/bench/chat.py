"""Chat latency: how long a person waits for an answer about the sample's analysis.

One analysis of ``samples/sample.mp4`` (stored in the bench store, never the user's history),
then each question of ``QUESTIONS`` once, each on a thread of its own (no earlier turn in the
prompt). Per question:

- ``first_token_s``: from the question to the LLM's first token (the first call of the answer:
  its start, plus llama.cpp's prompt-evaluation time from the context's perf counters, plus
  one generation step). It grows with the chat prompt, which is what keeping the prompt small
  buys. None on a backend without perf counters.
- ``first_words_s``: from the question to the first text the page can show (a free-text answer
  streams; a cited answer comes whole, so this is its full time).
- ``answer_s``: the whole answer; ``llm_calls``: the LLM calls it took.

The figures are the median over the questions, beside the 1-minute load average.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import Any

from affectlens.evals.bench.clips import REPO
from affectlens.settings import Settings

SAMPLE = REPO / "samples" / "sample.mp4"
# real questions of each kind the chat tells apart (contrastive, yes/no, why, counterfactual)
QUESTIONS = (
    "Why this emotion and not sadness?",
    "Is she crying?",
    "Which cue shows the emotion most clearly?",
    "What would you say without the voice?",
)
START, END = "<!-- bench-chat:start -->", "<!-- bench-chat:end -->"


class FirstToken:
    """Times the first LLM token after ``start()`` by wrapping the model's completion call
    (``_complete`` embedded, ``_create`` OpenAI-compatible), like ``meter.TokenMeter``."""

    def __init__(self, llm: Any):
        self.llm = llm
        self.t0 = 0.0
        self.first: float | None = None
        self.calls = 0
        for name in ("_complete", "_create"):
            inner = getattr(llm, name, None)
            if inner is not None:
                setattr(llm, name, self._wrap(inner))
                break

    def start(self) -> None:
        self.t0, self.first, self.calls = time.perf_counter(), None, 0

    def since(self) -> float:
        return time.perf_counter() - self.t0

    def _perf(self):
        try:
            import llama_cpp

            return llama_cpp, self.llm._llama.ctx
        except Exception:  # noqa: BLE001 - not llama.cpp: no perf counters
            return None, None

    def _wrap(self, inner):
        def timed(*args, **kwargs):
            self.calls += 1
            lib, ctx = self._perf()
            if lib is not None and ctx is not None:
                lib.llama_perf_context_reset(ctx)
            called = self.since()
            reply = inner(*args, **kwargs)
            if kwargs.get("stream"):
                return self._first_chunk(reply)
            if self.first is None and lib is not None and ctx is not None:
                perf = lib.llama_perf_context(ctx)
                step = perf.t_eval_ms / perf.n_eval if perf.n_eval else 0.0
                self.first = called + (perf.t_p_eval_ms + step) / 1000
            return reply

        return timed

    def _first_chunk(self, chunks):
        for chunk in chunks:
            if self.first is None:
                self.first = self.since()
            yield chunk


def chat_latency(
    settings: Settings, questions: tuple[str, ...] = QUESTIONS, clip: Path = SAMPLE, progress=print
) -> dict[str, Any]:
    """Analyse ``clip`` once, then time each question; returns the JSON-ready figures."""
    from affectlens.agent import chat
    from affectlens.agent.llm import get_llm
    from affectlens.agent.run import analyze

    s = settings.model_copy(update={"data_dir": settings.data_dir / "bench" / "store"})
    progress(f"chat: analysing {clip.name} once ...")
    result = analyze(clip, s)
    llm = get_llm(s, role="reason")
    clock = FirstToken(llm)
    rows = []
    for i, question in enumerate(questions):
        load = os.getloadavg()[0]
        clock.start()
        first_words = None
        for _ in chat.ask_stream(result.id, question, s, thread=f"bench-{i}", llm=llm):
            if first_words is None:
                first_words = clock.since()
        row = {
            "question": question,
            "first_token_s": None if clock.first is None else round(clock.first, 2),
            "first_words_s": round(first_words or clock.since(), 2),
            "answer_s": round(clock.since(), 2),
            "llm_calls": clock.calls,
            "load": round(load, 2),
        }
        progress(
            f"  {question!r}: first token {row['first_token_s']} s, first words "
            f"{row['first_words_s']} s, answer {row['answer_s']} s (load {load:.2f})"
        )
        rows.append(row)
    return {
        "clip": clip.name,
        "llm_model": s.llm_model,
        "questions": rows,
        "median": {k: _median([r[k] for r in rows]) for k in ("first_token_s", "first_words_s")}
        | {"answer_s": _median([r["answer_s"] for r in rows])},
        "load": _median([r["load"] for r in rows]),
    }


def _median(values: list) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 2) if known else None


def render_chat(figures: dict[str, Any]) -> str:
    """The Markdown lines for docs/bench.md: the medians, then one line per question."""
    m = figures["median"]
    head = (
        f"Chat on the {figures['clip']} analysis, {figures['llm_model']}, median of "
        f"{len(figures['questions'])} questions (load {figures['load']}): time to first token "
        f"**{m['first_token_s']} s**, first words shown {m['first_words_s']} s, whole answer "
        f"{m['answer_s']} s.\n\n"
    )
    rows = "".join(
        f"- {r['question']} first token {r['first_token_s']} s, first words "
        f"{r['first_words_s']} s, answer {r['answer_s']} s, {r['llm_calls']} LLM calls, "
        f"load {r['load']}\n"
        for r in figures["questions"]
    )
    return head + rows


def write_chat_markdown(figures: dict[str, Any], path: Path) -> None:
    """Replace the chat block between its markers in ``path`` (appended when missing)."""
    block = f"{START}\n{render_chat(figures)}{END}"
    text = path.read_text() if path.is_file() else "# Benchmark\n"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


def chat_main(settings: Settings, out: Path | None, markdown: Path | None, progress=print) -> dict:
    """``affectlens bench --chat-only``: the chat figures alone, printed and written."""
    figures = chat_latency(settings, progress=progress)
    progress(render_chat(figures))
    if out is not None:
        import json

        out.write_text(json.dumps({"chat": figures}, indent=1))
    if markdown is not None:
        write_chat_markdown(figures, markdown)
    return figures
