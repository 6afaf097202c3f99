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

>>> answer = ask("20261130-102813-sample-7b4b2c", "Why sad?", settings)
>>> answer.text, answer.cited
"""

from __future__ import annotations

import operator
import re
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from pydantic import BaseModel, Field, RootModel, create_model

from affectlens import prompts
from affectlens.agent import verify as vf
from affectlens.agent.chat_tools import ToolChoice, ToolResult, modality_in, run_tool, times_in
from affectlens.agent.citations import (
    cited_ids,
    replace_citations,
    split_sentences,
    strip_citations,
)
from affectlens.agent.reason import SENTENCE_CHARS, Claim
from affectlens.agent.schemas import MODALITIES, AnalysisResult, Cue, EmotionReading
from affectlens.agent.store import AnalysisNotFound, AnalysisStore, StoredAnalysis
from affectlens.agent.textualise import render_cues
from affectlens.settings import Settings, get_settings

DB_NAME = "chat.sqlite"
DEFAULT_THREAD = "default"
MAX_QUESTION_CHARS = 2000
HISTORY_TURNS = 3  # earlier question/answer pairs the LLM sees
ROUTE_MAX_TOKENS = 96
MAX_CLAIMS = 4
MAX_CLAIM_CUES = 3
REASON_CHARS = 200
FREE_TEXT_TOOLS = ("explain", "similar")  # answers about a term or other clips, not these cues
_THREAD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_WHY = re.compile(r"^\W*(why|how come|what makes you)\b", re.I)
_LEAVE_OUT = re.compile(r"\b(ignore|ignoring|without|leave out|leaving out|left out)\b", re.I)
PROMPT_SYSTEM, PROMPT_ROUTE, PROMPT_ANSWER = "chat_system", "chat_route", "chat_answer"


class ChatError(ValueError):
    """A question the chat cannot take: empty, too long, or a bad thread name."""


class ChatMessage(BaseModel):
    """One turn as stored in the thread and shown by the UI."""

    role: str  # "user" | "assistant"
    content: str
    created: str = ""
    cited: list[str] = Field(default_factory=list)
    tool: str | None = None
    tool_summary: str | None = None


class ChatAnswer(BaseModel):
    """The answer to one question, with what it rests on."""

    text: str
    cited: list[str] = Field(default_factory=list, description="Cue ids cited, in order.")
    cues: list[Cue] = Field(default_factory=list, description="The cited cues themselves.")
    tool: str = "answer"
    arguments: dict[str, Any] = Field(default_factory=dict)
    tool_summary: str | None = None
    new_cues: list[Cue] = Field(default_factory=list, description="Cues measured by a re-run.")
    counterfactual: EmotionReading | None = None
    without: str | None = Field(default=None, description="Modality the counterfactual left out.")
    unknown_cues: list[str] = Field(
        default_factory=list, description="Ids the LLM cited that do not exist (removed)."
    )
    problems: list[str] = Field(default_factory=list)
    grounded: bool = True
    declined: bool = Field(default=False, description="The LLM said the cues cannot answer.")
    thread: str = DEFAULT_THREAD
    error: str | None = None


# structured answer -------------------------------------------------------------------------------
class Decline(BaseModel):
    """The cues cannot answer (or the question is off topic): said so, no claim made."""

    answerable: Literal[False]
    reason: str = Field(min_length=1, max_length=REASON_CHARS)


class CitedAnswer(BaseModel):
    """Base of the per-analysis answer: 1..MAX_CLAIMS claims, each citing its cues."""

    answerable: Literal[True]
    claims: list[Claim]


def answer_schema(cues: list[Cue]) -> type[RootModel]:
    """The reply schema for one thread: either claims whose ``cues`` are 1-3 ids from an enum
    of ``cues`` (so an uncited or mis-cited claim does not validate, and the grammar cannot
    produce one), or an explicit decline. Raises ``ValueError`` without cues: nothing to cite."""
    ids = tuple(dict.fromkeys(c.id for c in cues))
    if not ids:
        raise ValueError("no cues to cite")
    Ref = Literal[ids]  # type: ignore[valid-type]
    claim = create_model(
        "ChatClaim",
        __base__=Claim,
        text=(str, Field(min_length=1, max_length=SENTENCE_CHARS)),
        cues=(list[Ref], Field(min_length=1, max_length=MAX_CLAIM_CUES)),
    )
    answer = create_model(
        "Answer",
        __base__=CitedAnswer,
        claims=(
            list[claim],
            Field(
                min_length=1,
                max_length=MAX_CLAIMS,
                description="1-4 sentences, each with the cue ids it rests on",
            ),
        ),
    )
    return RootModel[answer | Decline]  # type: ignore[valid-type, return-value]


def render(reply: BaseModel) -> tuple[str, list[str]]:
    """(text, cited ids in order) of a reply: every sentence of a claim followed by the claim's
    ids in brackets, written here, not by the model (brackets it wrote itself are dropped)."""
    value = getattr(reply, "root", reply)
    if isinstance(value, Decline):
        reason = strip_citations(value.reason)
        return re.sub(r"\s+([.,;:!?])", r"\1", reason), []
    sentences = []
    for claim in value.claims:  # a claim of several sentences cites each of them
        pieces = [p for p in split_sentences(claim.text) if strip_citations(p)]
        sentences += [Claim(text=p, cues=claim.cues).sentence for p in pieces or [claim.text]]
    cited = list(dict.fromkeys(i for c in value.claims for i in c.cues))
    return " ".join(sentences), cited


def needs_claims(tool: str, question: str, cues: list[Cue]) -> bool:
    """Whether the answer must be the cited schema: always when there are cues to cite, unless
    a tool explained a term or listed other analyses (and the question is no why-question)."""
    return bool(cues) and (tool not in FREE_TEXT_TOOLS or bool(_WHY.match(question)))


# graph -------------------------------------------------------------------------------------------
class ChatState(TypedDict, total=False):
    analysis_id: str
    messages: Annotated[list[dict], operator.add]  # ChatMessage dumps
    thread_cues: Annotated[list[dict], operator.add]  # X cues measured in this thread
    question: str
    choice: dict
    result: dict  # ToolResult dump
    answer: dict  # ChatAnswer dump


@dataclass
class ChatContext:
    """Per-call, non-serialisable things (LangGraph's run context)."""

    settings: Settings
    analysis: AnalysisResult
    llm: Any
    thread: str
    stream: bool = False


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _system(analysis: AnalysisResult, thread_cues: list[Cue]) -> dict:
    r = analysis.reading
    v = analysis.verification
    verification = ("grounded" if v.grounded else "not fully grounded") + (
        f"; open problems: {'; '.join(v.problems[:2])}" if v.problems else ""
    )
    from affectlens.agent.textualise import header, modality_status, neutralise

    evidence = {m: getattr(analysis, m) for m in MODALITIES}
    status = modality_status(evidence, without=analysis.settings.get("without") or [])
    kind = (
        "photo"
        if analysis.media.is_image
        else ("clip" if analysis.media.has_video else "audio recording")
    )
    head = header(
        status, analysis.cues, 0.0 if analysis.media.is_image else analysis.media.duration_s, kind
    )
    return {
        "role": "system",
        "content": prompts.render(
            PROMPT_SYSTEM,
            header=head,
            cues=render_cues([*analysis.cues, *thread_cues]),
            label=neutralise(r.label) if r else f"none ({analysis.error or 'no reading'})",
            explanation=[neutralise(e) for e in r.explanation] if r else [],  # LLM text: inert
            verification=verification,
        ),
    }


def _history(state: ChatState) -> list[dict]:
    """The last turns before the current question, as plain chat messages."""
    past = (state.get("messages") or [])[:-1]  # the last one is the current question
    turns = [m for m in past if m.get("role") in ("user", "assistant")]
    return [{"role": m["role"], "content": m["content"]} for m in turns[-2 * HISTORY_TURNS :]]


def _thread_cues(state: ChatState) -> list[Cue]:
    return [Cue.model_validate(c) for c in state.get("thread_cues") or []]


def route(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    """The LLM picks a tool through the ``ToolChoice`` schema; a failure means "answer"."""
    ctx = runtime.context
    a = ctx.analysis
    present = sorted({c.modality for c in a.cues}, key=MODALITIES.index)
    # A short prompt of its own (no cues): small models route far better without the context.
    msgs = [
        {
            "role": "system",
            "content": prompts.render(
                PROMPT_ROUTE, duration=a.media.duration_s, modalities=", ".join(present) or "none"
            ),
        },
        {"role": "user", "content": state["question"]},
    ]
    try:
        choice = ctx.llm.chat(msgs, ToolChoice, max_tokens=ROUTE_MAX_TOKENS)
    except Exception as exc:  # noqa: BLE001 - LLMError: answer without a tool
        choice = ToolChoice(tool="answer")
        return {
            "choice": choice.model_dump(),
            "result": ToolResult(
                tool="answer", ok=False, summary="", arguments={"route_error": str(exc)[:200]}
            ).model_dump(),
        }
    choice = overrule(choice, state["question"])
    return {"choice": choice.model_dump(), "result": ToolResult(tool="answer").model_dump()}


def overrule(choice: ToolChoice, question: str) -> ToolChoice:
    """Where the question's own words decide the tool, they win over the router's pick:

    - a why-question asks for the evidence, never for what a term means (the 0.5B router sent
      "Why does the person look angry?" to explain('angry'), which cited no cue);
    - "ignore / without / leave out" + one named modality is the counterfactual;
    - a what-question with an explicit time is a lookup (unless the router chose a re-run).
    So the unambiguous questions route the same on every host, whatever the model picks."""
    why = bool(_WHY.match(question))
    modality = modality_in(question)
    if _LEAVE_OUT.search(question) and modality is not None and not why:
        return ToolChoice(tool="without", modality=modality)
    if times_in(question) and not why and choice.tool not in ("lookup", "rerun"):
        return ToolChoice(tool="lookup", modality=modality or "any")
    if choice.tool == "explain" and why:
        return ToolChoice(tool="answer")
    return choice


def after_route(state: ChatState) -> str:
    return "respond" if state["choice"]["tool"] == "answer" else "act"


def act(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    ctx = runtime.context
    result = run_tool(
        ToolChoice.model_validate(state["choice"]),
        state["question"],
        ctx.analysis,
        ctx.settings,
        _thread_cues(state),
        llm=ctx.llm,
    )
    update: dict = {"result": result.model_dump()}
    if result.new_cues:
        update["thread_cues"] = [c.model_dump() for c in result.cues]
    return update


def check_answer(text: str, cues: list[Cue]) -> tuple[list[str], list[str], list[str]]:
    """(cited ids that exist, unknown ids, problems): the verifier's citation and number checks
    applied to a chat answer."""
    by_id = {c.id: c for c in cues}
    cited, unknown, problems = [], [], []
    for n, sentence in enumerate(split_sentences(text), start=1):
        ids = cited_ids(sentence)
        unknown += [i for i in ids if i not in by_id and i not in unknown]
        known = [by_id[i] for i in ids if i in by_id]
        cited += [c.id for c in known if c.id not in cited]
        if known:
            allowed = [x for c in known for x in vf.numbers(f"{c.start} {c.end} {c.text}")]
            wrong = [x for x in vf.numbers(sentence) if not vf.matches(x, allowed)]
            if wrong:
                problems.append(
                    f"sentence {n} quotes {', '.join(f'{w:g}' for w in wrong)}, "
                    f"not in {', '.join(c.id for c in known)}"
                )
    if unknown:
        problems.insert(0, f"cites {', '.join(unknown)}, which do not exist")
    return cited, unknown, problems


def strip_unknown(text: str, unknown: list[str]) -> str:
    """Remove unknown ids from bracket citations ('[F1, Z9]' -> '[F1]', '[Z9]' -> '')."""
    if not unknown:
        return text

    def keep(ids: list[str]) -> str:
        kept = [i for i in ids if i not in unknown]
        return f"[{', '.join(kept)}]" if kept else ""

    out = replace_citations(text, keep)
    return re.sub(r"\s+([.,;!?])", r"\1", re.sub(r"[ \t]{2,}", " ", out)).strip()


def respond(state: ChatState, runtime: Runtime[ChatContext]) -> dict:
    """The LLM's answer: claims through ``answer_schema`` (rendered with their citations), or,
    after ``explain``/``similar``, free text (streamed when asked) whose unknown ids are removed
    and reported. Numbers are checked against the cited cues either way."""
    ctx = runtime.context
    a = ctx.analysis
    result = ToolResult.model_validate(state["result"])
    thread_cues = _thread_cues(state)
    cues = [*a.cues, *thread_cues]
    structured = needs_claims(result.tool, state["question"], cues)
    msgs = [
        _system(a, thread_cues),
        *_history(state),
        {
            "role": "user",
            "content": prompts.render(
                PROMPT_ANSWER,
                question=state["question"],
                tool=result.tool,
                summary=result.summary,
                structured=structured,
            ),
        },
    ]
    error, declined = None, False
    try:
        if structured:
            reply = ctx.llm.chat(msgs, answer_schema(cues), max_tokens=ctx.settings.llm_max_tokens)
            text, _ = render(reply)
            declined = isinstance(reply.root, Decline)
        elif ctx.stream:
            write = get_stream_writer()
            pieces = []
            for piece in ctx.llm.stream(msgs, max_tokens=ctx.settings.llm_max_tokens):
                pieces.append(piece)
                write({"chunk": piece})
            text = "".join(pieces).strip()
        else:
            text = str(ctx.llm.chat(msgs, max_tokens=ctx.settings.llm_max_tokens)).strip()
    except Exception as exc:  # noqa: BLE001 - LLMError: a typed, stored failure
        text, error = "", f"{type(exc).__name__}: {exc}"[:300]
    cited, unknown, problems = check_answer(text, cues)
    if unknown:  # only free text can cite an unknown id; a claim's ids come from the enum
        text = strip_unknown(text, unknown)
    if declined:
        problems.append("declined: the cues do not answer this question")
    if error:  # the details stay in ``error``: a rejected reply's text is never shown
        text = f"Sorry, no answer could be generated ({error.split(':')[0]})."
    grounded = not error and not unknown and not any("quotes" in p for p in problems)
    by_id = {c.id: c for c in cues}
    answer = ChatAnswer(
        text=text,
        cited=cited,
        cues=[by_id[i] for i in cited],
        tool=result.tool,
        arguments=result.arguments,
        tool_summary=result.summary or None,
        new_cues=result.cues if result.new_cues else [],
        counterfactual=result.counterfactual,
        without=result.without,
        unknown_cues=unknown,
        problems=problems,
        grounded=grounded,
        declined=declined,
        thread=ctx.thread,
        error=error,
    )
    message = ChatMessage(
        role="assistant",
        content=text,
        created=_now(),
        cited=cited,
        tool=result.tool if result.tool != "answer" else None,
        tool_summary=result.summary or None,
    )
    return {"answer": answer.model_dump(mode="json"), "messages": [message.model_dump()]}


def build_graph(checkpointer: SqliteSaver):
    g = StateGraph(ChatState, context_schema=ChatContext)
    g.add_node("route", route)
    g.add_node("act", act)
    g.add_node("respond", respond)
    g.add_edge(START, "route")
    g.add_conditional_edges("route", after_route, {"act": "act", "respond": "respond"})
    g.add_edge("act", "respond")
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer, name="affectlens-chat")


# storage -----------------------------------------------------------------------------------------
_lock = threading.Lock()


@lru_cache(maxsize=4)
def _saver(db: str) -> SqliteSaver:
    conn = sqlite3.connect(db, check_same_thread=False)
    saver = SqliteSaver(conn)
    saver.setup()
    return saver


def saver(settings: Settings) -> SqliteSaver:
    """The process-wide checkpointer of this data directory."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with _lock:
        return _saver(str(settings.data_dir / DB_NAME))


@lru_cache(maxsize=4)
def _graph(db: str):
    return build_graph(_saver(db))


def graph(settings: Settings):
    saver(settings)
    return _graph(str(settings.data_dir / DB_NAME))


def thread_id(analysis_id: str, thread: str = DEFAULT_THREAD) -> str:
    if not isinstance(thread, str) or not _THREAD.match(thread):
        raise ChatError(f"not a valid thread name: {thread!r} (letters, digits, _ . -)")
    return f"{analysis_id}:{thread}"


def _config(analysis_id: str, thread: str) -> dict:
    return {"configurable": {"thread_id": thread_id(analysis_id, thread)}}


# public API --------------------------------------------------------------------------------------
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
    user = ChatMessage(role="user", content=question, created=_now())
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
    final = graph(settings).invoke(
        state, _config(analysis_id, thread), context=ctx, durability="sync"
    )
    return ChatAnswer.model_validate(final["answer"])


def ask_stream(
    analysis_id: str,
    question: str,
    settings: Settings | None = None,
    *,
    thread: str = DEFAULT_THREAD,
    llm: Any = None,
) -> Iterator[str | ChatAnswer]:
    """Like ``ask``, but yields a free-text answer's chunks as the LLM writes it, then the final
    ``ChatAnswer`` (whose text may differ: unknown citations removed). A cited answer is
    structured, so it comes whole, as the final ``ChatAnswer`` only."""
    settings, ctx, state = _prepare(analysis_id, question, settings, thread, llm)
    ctx.stream = True
    final: dict = {}
    for mode, data in graph(settings).stream(
        state,
        _config(analysis_id, thread),
        context=ctx,
        stream_mode=["custom", "values"],
        durability="sync",
    ):
        if mode == "custom" and isinstance(data, dict) and "chunk" in data:
            yield data["chunk"]
        elif mode == "values":
            final = data
    yield ChatAnswer.model_validate(final["answer"])


def history(
    analysis_id: str, thread: str = DEFAULT_THREAD, settings: Settings | None = None
) -> list[ChatMessage]:
    """The thread's messages in order (empty for a thread never used)."""
    settings = settings or get_settings()
    snapshot = graph(settings).get_state(_config(analysis_id, thread))
    return [ChatMessage.model_validate(m) for m in (snapshot.values or {}).get("messages", [])]


def threads(analysis_id: str, settings: Settings | None = None) -> list[str]:
    """Names of the analysis's chat threads, oldest first."""
    settings = settings or get_settings()
    conn = saver(settings).conn
    prefix = f"{analysis_id}:"
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with saver(settings).lock:
        rows = conn.execute(
            "SELECT thread_id, MIN(rowid) FROM checkpoints WHERE thread_id LIKE ? ESCAPE '\\' "
            "GROUP BY thread_id ORDER BY MIN(rowid)",
            (escaped + "%",),
        ).fetchall()
    return [r[0][len(prefix) :] for r in rows]


def delete_threads(analysis_id: str, settings: Settings | None = None) -> int:
    """Forget every thread of an analysis (when the analysis is deleted); returns how many."""
    settings = settings or get_settings()
    names = threads(analysis_id, settings)
    for name in names:
        saver(settings).delete_thread(f"{analysis_id}:{name}")
    return len(names)


def analyses(settings: Settings | None = None) -> list[StoredAnalysis]:
    """Stored analyses, newest first (what ``affectlens history`` lists)."""
    return AnalysisStore(settings or get_settings(), index=False).list()


__all__ = [
    "AnalysisNotFound",
    "ChatAnswer",
    "ChatError",
    "ChatMessage",
    "Decline",
    "analyses",
    "answer_schema",
    "ask",
    "ask_stream",
    "delete_threads",
    "history",
    "render",
    "threads",
]
