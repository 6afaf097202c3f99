"""Citations and sentences: the one grammar of "[F1, V2]" and the one sentence splitter.

Every reader of an explanation (verifier, reasoner, chat, card, CLI, evals) parses citations
here, so the format changes in one place. The evals also score other systems' explanations
("[F1 and V2]", two-letter ids) and pass the loose patterns below explicitly.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

CITATION = re.compile(r"\[([A-Z]\d+(?:\s*[,;]\s*[A-Z]?\d+)*)\]")
CUE_ID = re.compile(r"[A-Z]\d+")
LOOSE_CITATION = re.compile(r"\[([^\[\]]+)\]")
LOOSE_CUE_ID = re.compile(r"\b([A-Z]{1,2}\d{1,3})\b")

# A claim ends at a stop followed by a capital or a citation ("0.5 s. The voice", not "e.g. a");
# plain text (transcripts, other systems' explanations) at any stop, CJK stops included.
CLAIM_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\[])")
PLAIN_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])")


def cited_ids(text: str, citation: re.Pattern = CITATION, cue_id: re.Pattern = CUE_ID) -> list[str]:
    """Ids cited in brackets, '[F1]', '[F1, V2]' or '[F1][S2]', in order, without repeats."""
    out: list[str] = []
    for group in citation.findall(text):
        for i in cue_id.findall(group):
            if i not in out:
                out.append(i)
    return out


def split_sentences(text: str | Iterable[str], boundary: re.Pattern = CLAIM_SENTENCE) -> list[str]:
    """Sentences of a text or of a list of items (a model may pack several into one item)."""
    items = [text] if isinstance(text, str) else text
    return [s.strip() for item in items for s in boundary.split(item.strip()) if s and s.strip()]


def strip_citations(text: str) -> str:
    """The text without its bracket citations, spaces collapsed."""
    return " ".join(CITATION.sub(" ", text).split())


def cite(text: str, ids: Iterable[str]) -> str:
    """``text`` without its bracket citations, citing ``ids`` (once each) before its final
    stop: "Sad face [F1]." (a claim as a reading stores it)."""
    body = re.sub(r"\s+([.,;:!?])", r"\1", strip_citations(text))
    stop = body[-1] if body and body[-1] in ".!?" else "."
    body = body.rstrip(".!?").rstrip()
    cites = "".join(f"[{i}]" for i in dict.fromkeys(ids))
    return f"{body} {cites}{stop}" if cites else f"{body}{stop}"


def replace_citations(text: str, by: Callable[[list[str]], str]) -> str:
    """Each bracket citation replaced by ``by(ids)`` (card chips, pruning unknown ids)."""
    return CITATION.sub(lambda m: by(CUE_ID.findall(m.group(1))), text)
