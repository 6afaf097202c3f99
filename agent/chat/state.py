"""The chat graph's state and run context, the turn and answer records, and the cited-answer
schema with its renderer.

``ChatState`` is what the checkpointer keeps per thread (plain dicts, so a thread reloads
without the code's classes); ``ChatContext`` is the per-call, non-serialisable part (settings,
the analysis, the LLM), passed as LangGraph's ``context``.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypedDict

from pydantic import BaseModel, Field, RootModel, create_model

from affectlens.agent.citations import split_sentences, strip_citations
from affectlens.agent.reason import SENTENCE_CHARS, Claim
from affectlens.agent.schemas import AnalysisResult, Cue, EmotionReading
from affectlens.settings import Settings

DEFAULT_THREAD = "default"
MAX_CLAIMS = 4
MAX_CLAIM_CUES = 3
REASON_CHARS = 200


class ChatError(ValueError):
    """A question the chat cannot take: empty, too long, or a bad thread name."""


def now() -> str:
    """A turn's timestamp (UTC, seconds)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


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
    kind: str = Field(
        default="other",
        description="The question's kind (agent.chat.questions): contrastive, yes_no, when, "
        "counterfactual, why or other.",
    )
    verdict: str | None = Field(
        default=None,
        description="Decided in code: the higher-ranked emotion (contrastive), yes / no / mixed "
        "/ cannot tell (yes_no, when), changed or unchanged and the new label (counterfactual).",
    )
    sides: dict[str, list[str]] = Field(
        default_factory=dict, description="Cue ids on each side of the verdict."
    )
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
    declined: bool = Field(
        default=False,
        description="The cues cannot answer: the LLM declined, or (yes/no, when) nothing "
        "measured bears on the question.",
    )
    thread: str = DEFAULT_THREAD
    error: str | None = None


class ChatState(TypedDict, total=False):
    analysis_id: str
    messages: Annotated[list[dict], operator.add]  # ChatMessage dumps
    thread_cues: Annotated[list[dict], operator.add]  # X cues measured in this thread
    question: str
    asked: dict  # Asked dump: the question's kind, decided from its words
    choice: dict  # ToolChoice dump
    result: dict  # ToolResult dump
    answer: dict  # ChatAnswer dump


@dataclass(frozen=True)
class ChatStep:
    """What the chat is doing now (a node starting), in a user's words: shown while the first
    token is still to come, so a slow CPU never looks like a hung page."""

    node: str
    text: str


@dataclass
class ChatContext:
    """Per-call, non-serialisable things (LangGraph's run context)."""

    settings: Settings
    analysis: AnalysisResult
    llm: Any
    thread: str
    stream: bool = False


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
            list[claim],  # type: ignore[valid-type]  # a model built for this analysis
            Field(
                min_length=1,
                max_length=MAX_CLAIMS,
                description="1-4 sentences, each with the cue ids it rests on",
            ),
        ),
    )
    return RootModel[answer | Decline]  # type: ignore[valid-type]


def render(reply: BaseModel) -> tuple[str, list[str]]:
    """(text, cited ids in order) of a reply: every sentence of a claim followed by the claim's
    ids in brackets, written here, not by the model (brackets it wrote itself are dropped)."""
    value: Any = getattr(reply, "root", reply)  # a per-analysis Answer model, or Decline
    if isinstance(value, Decline):
        reason = strip_citations(value.reason)
        return re.sub(r"\s+([.,;:!?])", r"\1", reason), []
    sentences = []
    for claim in value.claims:  # a claim of several sentences cites each of them
        pieces = [p for p in split_sentences(claim.text) if strip_citations(p)]
        sentences += [Claim(text=p, cues=claim.cues).sentence for p in pieces or [claim.text]]
    cited = list(dict.fromkeys(i for c in value.claims for i in c.cues))
    return " ".join(sentences), cited
