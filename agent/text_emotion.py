"""What was said, as an emotion witness: a 7-class distribution from the transcript.

The local LLM (embedded GGUF, any language it reads) is used as a classifier, not a writer: one
prompt asks for a one-word label and the next-token log-probabilities of the seven label words
are read from a single forward pass (no generation, so no free wording to parse). A small head
fitted on MELD (``text_emotion_head.json``: a temperature and per-class offsets, see
``scripts/train_text_emotion.py`` and ``docs/models/text-emotion.md``) turns them into a
calibrated distribution. The shared instruction prefix is evaluated once and kept in the KV cache,
so each line costs only its own tokens.

Output is an :class:`~tools.evidence.EmotionVote` (the fusion contract) whose reliability comes
from the ASR language probability and the amount of speech.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
from pydantic import BaseModel, Field

from affectlens.tools.evidence import BASIC_EMOTIONS, EmotionVote, SpeechEvidence

if TYPE_CHECKING:
    from llama_cpp import Llama

    from affectlens.agent.llm.prefix_state import SystemTurns

log = logging.getLogger(__name__)
HEAD_FILE = Path(__file__).with_name("text_emotion_head.json")
PROMPT_VERSION = "te-v2"  # the version the shipped head was fitted with

# The word the prompt offers for each basic emotion ("joy" is MELD's and a single common token).
WORDS: dict[str, str] = {
    "anger": "anger",
    "disgust": "disgust",
    "fear": "fear",
    "happiness": "joy",
    "sadness": "sadness",
    "surprise": "surprise",
    "neutral": "neutral",
}
SYSTEM = (
    "You classify the emotion a speaker expresses in one line of speech. The line may be in any "
    "language. Answer with exactly one word from this list: "
    + ", ".join(WORDS[e] for e in BASIC_EMOTIONS)
    + "."
)
# ChatML (the Qwen2.5 template); the line comes last so the prefix is shared by every call.
ASK = 'Which emotion does the speaker express?\nLine: "'
SUFFIX = '"<|im_end|>\n<|im_start|>assistant\n'
# te-v2: the same question after worked examples (written for this prompt, not from MELD; a few
# in other languages), so the model sees the answer format and everyday neutral lines.
EXAMPLES = [
    ("Can you pass me the salt?", "neutral"),
    ("Oh my God, you got the job? That's amazing!", "joy"),
    ("Get out of my apartment, right now!", "anger"),
    ("Wait, what? You're married?!", "surprise"),
    ("I miss her so much. I can't stop crying.", "sadness"),
    ("Ich treffe dich dann um acht am Bahnhof.", "neutral"),
    ("Eww, that's gross, I'm not touching that.", "disgust"),
    ("我好害怕，别离开我。", "fear"),
    ("Estoy tan feliz de verte otra vez.", "joy"),
    ("So, uh, how was work today?", "neutral"),
]
_SHOTS = "".join(
    f"<|im_start|>user\n{ASK}{line}{SUFFIX}{label}<|im_end|>\n" for line, label in EXAMPLES
)
_SYS = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
PREFIXES = {
    "te-v1": f"{_SYS}<|im_start|>user\n{ASK}",
    "te-v2": f"{_SYS}{_SHOTS}<|im_start|>user\n{ASK}",
}
MAX_CHARS = 600  # a whole-clip transcript is cut here (the prompt stays ~200 tokens)
FULL_SPEECH_WORDS = 8  # at this many words the text witness counts fully


def prompt(text: str, version: str = PROMPT_VERSION) -> str:
    text = " ".join(text.split())[:MAX_CHARS].replace('"', "'")
    return PREFIXES[version] + text + SUFFIX


def label_token_ids(tokenize) -> dict[str, list[int]]:
    """Per basic emotion, the first tokens of its word as the model may start the answer
    (lower/capitalised, with/without a leading space). Raises when two labels share one."""
    ids: dict[str, list[int]] = {}
    seen: dict[int, str] = {}
    for emo, word in WORDS.items():
        firsts = []
        for v in (word, word.capitalize(), " " + word, " " + word.capitalize()):
            t = tokenize(v)[0]
            if t in seen and seen[t] != emo:
                raise ValueError(f"label tokens collide: {emo!r} and {seen[t]!r} start with {t}")
            seen[t] = emo
            if t not in firsts:
                firsts.append(t)
        ids[emo] = firsts
    return ids


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = x - x.max(axis=axis, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=axis, keepdims=True))


class Head(BaseModel):
    """Calibration of the seven label log-probs: softmax(logp / temperature + offset)."""

    model: str = Field(description="The embedded LLM the log-probs come from.")
    prompt_version: str = PROMPT_VERSION
    labels: list[str] = list(BASIC_EMOTIONS)
    temperature: float = 1.0
    offsets: list[float] = [0.0] * len(BASIC_EMOTIONS)
    fit: dict = Field(default_factory=dict, description="Data, protocol and figures of the fit.")

    def apply(self, logp: np.ndarray) -> np.ndarray:
        """Probabilities (rows sum to 1) from label log-probs of shape (..., 7)."""
        z = np.asarray(logp, float) / self.temperature + np.asarray(self.offsets)
        return np.exp(log_softmax(z))

    @classmethod
    def load(cls, path: Path = HEAD_FILE) -> Head:
        return cls.model_validate_json(Path(path).read_text())


@lru_cache(maxsize=1)
def shipped_head() -> Head:
    """The head in the repo, read once (every clip with speech is scored with it)."""
    return Head.load()


@dataclass
class LabelScorer:
    """Reads the seven label log-probs for a line from a llama.cpp model (one forward pass)."""

    llama: Llama
    lock: threading.Lock
    saved: SystemTurns | None = None  # the model's saved states on disk (a fresh process)

    def __post_init__(self) -> None:
        tok = lambda s: self.llama.tokenize(s.encode(), add_bos=False, special=False)  # noqa: E731
        self.ids = label_token_ids(tok)
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        # Per prompt version: the instruction's tokens and the KV state after them (~15 MB for
        # the 1.5B), so a call after the reasoning LLM used the shared model reloads the state
        # instead of re-evaluating the few-shot instruction.
        self._prefix: dict[str, tuple[list[int], bytes]] = {}

    def logprobs(self, text: str, version: str = PROMPT_VERSION) -> np.ndarray:
        """log P(label | prompt) over the seven labels (renormalised), BASIC_EMOTIONS order."""
        p = prompt(text, version)
        if p in self._memo:
            return self._memo[p]
        from affectlens.agent.llm.prefix_state import get_state, set_state

        tokens = self.llama.tokenize(p.encode(), add_bos=False, special=True)
        with self.lock:
            llama = self.llama
            # Keep the longest already-evaluated prefix (the instruction), evaluate the rest.
            n = 0
            for a, b in zip(llama.input_ids[: llama.n_tokens].tolist(), tokens[:-1]):
                if a != b:
                    break
                n += 1
            pref, state = self._prefix.get(version, (None, None))
            if pref is None:
                # The last token of the instruction may merge with the line's first word.
                pref = self.llama.tokenize(PREFIXES[version].encode(), add_bos=False, special=True)[
                    :-1
                ]
            if tokens[: len(pref)] != pref:
                pref = []  # not a shared prefix after all: evaluate the whole prompt
            if pref and n < len(pref):
                if state is None and self.saved is not None:
                    # a fresh process: the instruction's state from disk (~3.5 s cold on 2
                    # cores for te-v2's few-shot instruction, docs/bench.md)
                    state = self.saved.saved(pref)
                    if state is not None:
                        self._prefix[version] = (pref, state)
                if state is not None:
                    set_state(llama, state)
                    llama.input_ids[: len(pref)] = pref
                else:
                    llama.n_tokens = n
                    llama.eval(pref[n:])
                    self._prefix[version] = (pref, get_state(llama))
                    if self.saved is not None:
                        self.saved.save(pref, self._prefix[version][1])
                n = len(pref)
            llama.n_tokens = n
            llama.eval(tokens[n:])
            # Only the last token's logits are computed (logits_all is off): output row 0.
            logits = np.ctypeslib.as_array(llama._ctx.get_logits(), shape=(llama.n_vocab(),))
            logits = logits.astype(np.float64)
        lp = log_softmax(logits)
        per = np.array([np.logaddexp.reduce(lp[self.ids[e]]) for e in BASIC_EMOTIONS])
        out = log_softmax(per)
        self._memo[p] = out
        if len(self._memo) > 256:
            self._memo.popitem(last=False)
        return out


class SegmentEmotion(BaseModel):
    start: float
    end: float
    text: str
    probs: dict[str, float]


class TextEmotion(BaseModel):
    """The transcript as a witness: the whole clip's vote and each segment's distribution."""

    clip: EmotionVote
    segments: list[SegmentEmotion] = []


def reliability(speech: SpeechEvidence) -> float:
    """How far to trust the words: the ASR language probability times the share of a full
    utterance heard (a two-word clip says little)."""
    words = len(speech.text.split()) if " " in speech.text.strip() else len(speech.text) / 2
    amount = min(1.0, words / FULL_SPEECH_WORDS)  # CJK has no spaces: ~2 characters a word
    lang = speech.language_probability if speech.language_probability is not None else 0.5
    return round(float(max(0.0, min(1.0, lang * amount))), 3)


def _dist(probs: np.ndarray) -> dict[str, float]:
    return {e: round(float(p), 4) for e, p in zip(BASIC_EMOTIONS, probs)}


_SCORERS: dict[int, LabelScorer] = {}
_SCORERS_LOCK = threading.Lock()


def get_scorer(settings, model: str) -> LabelScorer:
    """The scorer on the embedded GGUF ``model``: agent.llm's loaded instance and its lock (one
    copy of the weights, whatever the reasoning backend), with this module's token ids and
    cached instruction state."""
    from affectlens.agent.llm import EmbeddedLLM, get_llm

    embedded = settings.model_copy(update={"llm_backend": "embedded", "llm_model": model})
    llm = cast(EmbeddedLLM, get_llm(embedded))
    with _SCORERS_LOCK:
        key = id(llm._llama)
        if key not in _SCORERS or _SCORERS[key].llama is not llm._llama:
            _SCORERS.clear()  # the instance cache evicted the model: drop its stale state
            _SCORERS[key] = LabelScorer(llm._llama, llm._lock, llm.system_turns())
        return _SCORERS[key]


def score_text(text: str, settings, head: Head | None = None) -> dict[str, float]:
    """Calibrated distribution for one line of text."""
    head = head or shipped_head()
    return _dist(head.apply(get_scorer(settings, head.model).logprobs(text, head.prompt_version)))


def text_emotion(
    speech: SpeechEvidence | None, settings, head: Head | None = None, max_segments: int = 6
) -> TextEmotion | None:
    """Per-segment distributions and the whole clip's vote; None when nothing was said."""
    if speech is None or speech.status != "ok" or not speech.text.strip():
        return None
    head = head or shipped_head()
    scorer = get_scorer(settings, head.model)
    segs = [s for s in speech.segments if s.text.strip()]
    out = []
    if len(segs) > 1 and max_segments:
        for s in segs[:max_segments]:
            probs = _dist(head.apply(scorer.logprobs(s.text, head.prompt_version)))
            out.append(SegmentEmotion(start=s.start, end=s.end, text=s.text.strip(), probs=probs))
    clip = head.apply(scorer.logprobs(speech.text, head.prompt_version))
    vote = EmotionVote(
        probs=_dist(clip),
        reliability=reliability(speech),
        model=f"text-emotion {head.model} {head.prompt_version} (MELD head)",
    )
    if len(segs) == 1 and max_segments:
        s = segs[0]
        out.append(SegmentEmotion(start=s.start, end=s.end, text=s.text.strip(), probs=vote.probs))
    return TextEmotion(clip=vote, segments=out)


def text_witness(
    speech: SpeechEvidence | None, settings, cues: list
) -> tuple[list, EmotionVote | None]:
    """The transcript as a witness: its whole-clip vote (for the fusion) and that vote as one
    speech cue (id after the transcript cues); ([], None) when nothing was said or the scorer
    cannot run (the analysis goes on without it)."""
    from affectlens.agent.schemas import Cue

    if speech is None:  # text_emotion() would say the same: nothing was said
        return [], None
    try:
        te = text_emotion(speech, settings, max_segments=0)
    except Exception as exc:  # noqa: BLE001 - a missing model must not stop the analysis
        log.warning("text emotion skipped: %s", exc)
        return [], None
    if te is None:
        return [], None
    ranked = sorted(te.clip.probs.items(), key=lambda kv: -kv[1])[:3]
    n = sum(1 for c in cues if c.modality == "speech") + 1
    listed = ", ".join(f"{e} {p:.2f}" for e, p in ranked)
    cue = Cue(
        id=f"S{n}",
        modality="speech",
        start=speech.segments[0].start,
        end=speech.segments[-1].end,
        name="text_emotion",
        value=round(ranked[0][1], 2),
        unit="probability",
        scale="0-1",
        text=f"the words alone read as {listed} (text-emotion scorer, 0-1; "
        f"reliability {te.clip.reliability:.2f})",
    )
    return [cue], te.clip
