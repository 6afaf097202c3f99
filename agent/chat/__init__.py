"""Chat about why: follow-up questions grounded in one stored analysis.

A small LangGraph graph per question -- ``route`` (the LLM fills ``ToolChoice``) -> ``act``
(the typed tool runs) -> ``respond`` (the LLM answers with the analysis and the tool result in
context). Answers that explain cite by construction, as the analysis does: the LLM fills
``answer_schema(cues)``, whose claims each carry 1-3 ids from an enum of this thread's cues (or
it declines with a reason), and ``render`` writes the text with the citations appended by code.
Only a term explanation or a list of similar analyses (not about this clip's cues) is free
text, streamed. Threads
are checkpointed in ``settings.data_dir / "chat.sqlite"`` (LangGraph's SqliteSaver), thread id
``f"{analysis_id}:{thread}"``, so a conversation survives a restart.

A contrastive, yes/no, when or counterfactual question (``questions.classify``, from its
words) skips the router: code gathers the cues for and against each side and decides the
verdict (``evidence``), and the LLM only writes claims per side over that side's ids
(``replies``).

Modules: ``state`` (state, context, records, the answer schema), ``tools`` (the typed tools),
``questions`` (the question's kind), ``evidence`` (sides and verdicts), ``replies`` (the
per-side schema and the answers built from it), ``graph`` (nodes and the compiled graph),
``store`` (the checkpointer and its threads); this package is the public API.

>>> answer = ask("20261130-102813-sample-7b4b2c", "Why sad?", settings)
>>> answer.text, answer.cited
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from affectlens.agent.chat.graph import step
from affectlens.agent.chat.state import (
    DEFAULT_THREAD,
    ChatAnswer,
    ChatContext,
    ChatError,
    ChatMessage,
    ChatStep,
    Decline,
    answer_schema,
    now,
    render,
)
from affectlens.agent.chat.store import (
    all_threads,
    delete_threads,
    history,
    persistent_graph,
    thread_config,
    thread_id,
    threads,
)
from affectlens.agent.store import AnalysisNotFound, AnalysisStore, StoredAnalysis
from affectlens.settings import Settings, get_settings

MAX_QUESTION_CHARS = 2000


def _prepare(
    analysis_id: str, question: str, settings: Settings | None, thread: str, llm: Any
) -> tuple[Settings, ChatContext, dict]:
    settings = settings or get_settings()
    if not isinstance(question, str) or not question.strip():
        raise ChatError("the question is empty")
    if len(question) > MAX_QUESTION_CHARS:
        raise ChatError(f"the question is longer than {MAX_QUESTION_CHARS} characters")
    thread_id(analysis_id, thread)  # validates the thread name
    analysis = AnalysisStore(settings, index=False).get(analysis_id)  # AnalysisNotFound
    if llm is None:
        from affectlens.agent.llm import get_llm

        llm = get_llm(settings, role="reason")
    ctx = ChatContext(settings=settings, analysis=analysis, llm=llm, thread=thread)
    question = question.strip()
    user = ChatMessage(role="user", content=question, created=now())
    return (
        settings,
        ctx,
        {"analysis_id": analysis_id, "question": question, "messages": [user.model_dump()]},
    )


def ask(
    analysis_id: str,
    question: str,
    settings: Settings | None = None,
    *,
    thread: str = DEFAULT_THREAD,
    llm: Any = None,
) -> ChatAnswer:
    """Answer one question about a stored analysis; the turn is added to the thread.

    Raises ``AnalysisNotFound`` for an unknown id and ``ChatError`` for an empty or too long
    question or a bad thread name; an LLM failure is an answer with ``error`` set."""
    settings, ctx, state = _prepare(analysis_id, question, settings, thread, llm)
    final = persistent_graph(settings).invoke(
        state, thread_config(analysis_id, thread), context=ctx, durability="sync"
    )
    return ChatAnswer.model_validate(final["answer"])


def ask_stream(
    analysis_id: str,
    question: str,
    settings: Settings | None = None,
    *,
    thread: str = DEFAULT_THREAD,
    llm: Any = None,
    steps: bool = False,
) -> Iterator[str | ChatStep | ChatAnswer]:
    """Like ``ask``, but yields a free-text answer's chunks as the LLM writes it, then the final
    ``ChatAnswer`` (whose text may differ: unknown citations removed). A cited answer is
    structured, so it comes whole, as the final ``ChatAnswer`` only. With ``steps``, a
    ``ChatStep`` (what the chat is doing, in words) comes as each node starts."""
    settings, ctx, state = _prepare(analysis_id, question, settings, thread, llm)
    ctx.stream = True
    final: dict = dict(state)
    modes = ["custom", "values", *(["tasks"] if steps else [])]
    for mode, data in persistent_graph(settings).stream(
        state,
        thread_config(analysis_id, thread),
        context=ctx,
        stream_mode=modes,
        durability="sync",
    ):
        if mode == "custom" and isinstance(data, dict) and "chunk" in data:
            yield data["chunk"]
        elif mode == "tasks" and "input" in data:  # a node starts (its end has "result")
            yield step(data["name"], {**final, **(data["input"] or {})})
        elif mode == "values":
            final = data
    yield ChatAnswer.model_validate(final["answer"])


def analyses(settings: Settings | None = None) -> list[StoredAnalysis]:
    """Stored analyses, newest first (what ``affectlens history`` lists)."""
    return AnalysisStore(settings or get_settings(), index=False).list()


__all__ = [
    "AnalysisNotFound",
    "ChatAnswer",
    "ChatError",
    "ChatMessage",
    "ChatStep",
    "Decline",
    "all_threads",
    "analyses",
    "answer_schema",
    "ask",
    "ask_stream",
    "delete_threads",
    "history",
    "render",
    "threads",
]
