"""The chat graph: ``route`` (the LLM fills ``ToolChoice``) -> ``act`` (the typed tool runs) ->
``respond`` (the LLM answers with the analysis and the tool result in context).

``route`` first classifies the question from its words; a contrastive, yes/no or when question
goes straight to ``respond`` and a counterfactual straight to the ``without`` tool (no router
call), and ``respond`` builds their answers by kind (``build_by_kind``: sides and verdict in
code, per-side claims from the LLM).

``graph`` is compiled without a checkpointer, for LangGraph's server (``langgraph.json``), which
supplies its own persistence; the app compiles ``build_graph`` with the SqliteSaver of its data
directory (``affectlens.agent.chat.store``). Imports are absolute: the server loads this file
by path.
"""

from __future__ import annotations

import re

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.config import get_stream_writer
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from affectlens import prompts
from affectlens.agent import verify as vf
from affectlens.agent.chat import replies
from affectlens.agent.chat.questions import ANSWERED_BY_SIDES, LEAVE_OUT, WHY, Asked, classify
from affectlens.agent.chat.state import (
    ChatAnswer,
    ChatContext,
    ChatMessage,
    ChatState,
    ChatStep,
    Decline,
    answer_schema,
    now,
    render,
)
from affectlens.agent.chat.tools import ToolChoice, ToolResult, modality_in, run_tool, times_in
from affectlens.agent.citations import cited_ids, replace_citations, split_sentences
from affectlens.agent.schemas import MODALITIES, AnalysisResult, Cue
from affectlens.agent.textualise import render_cues, ts

HISTORY_TURNS = 3  # earlier question/answer pairs the LLM sees
ROUTE_MAX_TOKENS = 96
FREE_TEXT_TOOLS = ("explain", "similar")  # answers about a term or other clips, not these cues
PROMPT_SYSTEM, PROMPT_ROUTE, PROMPT_ANSWER = "chat_system", "chat_route", "chat_answer"


def needs_claims(tool: str, question: str, cues: list[Cue]) -> bool:
    """Whether the answer must be the cited schema: always when there are cues to cite, unless
    a tool explained a term or listed other analyses (and the question is no why-question)."""
    return bool(cues) and (tool not in FREE_TEXT_TOOLS or bool(WHY.match(question)))


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
    asked = classify(state["question"], a.reading.dominant if a.reading else None)
    skip = {"asked": asked.model_dump(), "result": ToolResult(tool="answer").model_dump()}
    if asked.kind in ANSWERED_BY_SIDES:  # the kind decides: no router call, no tool
        return {**skip, "choice": ToolChoice(tool="answer").model_dump()}
    if asked.kind == "counterfactual":
        choice = ToolChoice(tool="without", modality=asked.modality or "any")
        return {**skip, "choice": choice.model_dump()}
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
            "asked": asked.model_dump(),
            "choice": choice.model_dump(),
            "result": ToolResult(
                tool="answer", ok=False, summary="", arguments={"route_error": str(exc)[:200]}
            ).model_dump(),
        }
    choice = overrule(choice, state["question"])
    return {**skip, "choice": choice.model_dump()}


def overrule(choice: ToolChoice, question: str) -> ToolChoice:
    """Where the question's own words decide the tool, they win over the router's pick:

    - a why-question asks for the evidence, never for what a term means (the 0.5B router sent
      "Why does the person look angry?" to explain('angry'), which cited no cue);
    - "ignore / without / leave out" + one named modality is the counterfactual;
    - a what-question with an explicit time is a lookup (unless the router chose a re-run).
    So the unambiguous questions route the same on every host, whatever the model picks."""
    why = bool(WHY.match(question))
    modality = modality_in(question)
    if LEAVE_OUT.search(question) and modality is not None and not why:
        return ToolChoice(tool="without", modality=modality)
    if times_in(question) and not why and choice.tool not in ("lookup", "rerun"):
        return ToolChoice(tool="lookup", modality=modality or "any")
    if choice.tool == "explain" and why:
        return ToolChoice(tool="answer")
    return choice


_DOING = {
    "lookup": "Looking up the cues{span}",
    "rerun": "Measuring the {modality} again{span}",
    "without": "Reading the clip again without the {modality}",
    "explain": "Looking up what {term} means",
    "similar": "Searching similar analyses",
}


def step(node: str, state: dict) -> ChatStep:
    """The user's words for a node about to run on ``state`` (``ask_stream(steps=True)``)."""
    if node == "route":
        return ChatStep(node, "Reading the question")
    choice = state.get("choice") or {}
    if node == "act" and choice.get("tool") in _DOING:
        a, b = choice.get("start"), choice.get("end")
        span = f" at {ts(a)}-{ts(b)}" if a is not None and b is not None else ""
        modality = choice.get("modality") or "any"
        text = _DOING[choice["tool"]].format(
            span=span,
            modality="other modalities" if modality == "any" else modality,
            term=choice.get("term") or "the term",
        )
        return ChatStep(node, text)
    kind = (state.get("asked") or {}).get("kind")
    if node == "respond" and kind in ANSWERED_BY_SIDES:
        return ChatStep(node, "Weighing the cues for each side, then writing the answer")
    return ChatStep(node, "Writing the answer")


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
    asked = Asked.model_validate(state.get("asked") or {"kind": "other"})
    built = build_by_kind(asked, a, result, cues, ctx.llm)
    if built is not None:
        return _sides_answer(built, asked, result, cues, ctx.thread)
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
        kind=asked.kind,
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
        created=now(),
        cited=cited,
        tool=result.tool if result.tool != "answer" else None,
        tool_summary=result.summary or None,
    )
    return {"answer": answer.model_dump(mode="json"), "messages": [message.model_dump()]}


def build_by_kind(
    asked: Asked, a: AnalysisResult, result: ToolResult, cues: list[Cue], llm
) -> replies.Built | None:
    """The answer a question's kind fixes in code (None: the general cited answer)."""
    if asked.kind == "contrastive" and asked.first and asked.second:
        return replies.contrastive(asked, a, cues, llm)
    if asked.kind in ("yes_no", "when"):
        return replies.yes_no(asked, a, cues, llm)
    if result.tool == "without" and result.counterfactual is not None and result.without:
        return replies.counterfactual(
            a, cues, result.without, result.counterfactual, result.counterfactual_probs, llm
        )
    return None


def _sides_answer(
    built: replies.Built, asked: Asked, result: ToolResult, cues: list[Cue], thread: str
) -> dict:
    """The state update for an answer built by kind: the LLM's claims checked like any chat
    answer (numbers against the cited cues), the code's sentences cited as written."""
    by_id = {c.id: c for c in cues}
    cited = [i for i in cited_ids(built.text) if i in by_id]
    _, unknown, problems = check_answer(built.claims_text, cues)
    answer = ChatAnswer(
        text=built.text,
        cited=cited,
        cues=[by_id[i] for i in cited],
        tool=result.tool,
        kind=asked.kind,
        verdict=built.verdict,
        sides=built.sides,
        arguments=result.arguments,
        tool_summary=result.summary or None,
        counterfactual=result.counterfactual,
        without=result.without,
        unknown_cues=unknown,
        problems=[*built.problems, *problems],
        grounded=not unknown and not any("quotes" in p for p in problems),
        declined=built.verdict == "cannot tell",
        thread=thread,
    )
    message = ChatMessage(
        role="assistant",
        content=built.text,
        created=now(),
        cited=cited,
        tool=result.tool if result.tool != "answer" else None,
        tool_summary=result.summary or None,
    )
    return {"answer": answer.model_dump(mode="json"), "messages": [message.model_dump()]}


def build_graph(checkpointer: BaseCheckpointSaver | None = None):
    """The chat graph, compiled with ``checkpointer`` (None: the caller persists threads)."""
    g = StateGraph(ChatState, context_schema=ChatContext)
    g.add_node("route", route)
    g.add_node("act", act)
    g.add_node("respond", respond)
    g.add_edge(START, "route")
    g.add_conditional_edges("route", after_route, {"act": "act", "respond": "respond"})
    g.add_edge("act", "respond")
    g.add_edge("respond", END)
    return g.compile(checkpointer=checkpointer, name="affectlens-chat")


graph = build_graph()
