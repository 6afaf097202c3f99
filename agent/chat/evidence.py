"""The cues for and against each side of a question, and the verdict they allow, in code.

A cue speaks about emotions in one of three ways, read from the fields and the fixed sentence
``agent.textualise`` writes (never from a model's text):

- a distribution (face expression, voice or text emotion model, speech-emotion model, scene
  emotion prompts): the probabilities it lists, by basic emotion (unlisted ones count as 0);
- an action unit event: its intensity, for the emotions whose prototype has that AU (EMFACS
  prototypes, Ekman & Friesen; Matsumoto et al. 2008);
- a voice arousal level (-1..1): for the emotions whose circumplex arousal it shares.

The verdict of a contrastive question comes from the fused probabilities (the reading's
ranking), shown with them; the verdict of a yes/no question from which cues bear on it.
"""

from __future__ import annotations

import re
from typing import Literal

from affectlens.agent.chat.questions import Target
from affectlens.agent.schemas import AnalysisResult, Cue
from affectlens.taxonomy import BASIC, CIRCUMPLEX, to_basic
from affectlens.tools.evidence import FaceEvidence

DISTRIBUTION_CUES = ("expression", "voice_emotion", "text_emotion", "ser", "scene_emotion")
AROUSAL_CUES = ("voice_arousal", "window_arousal")
PROTOTYPES: dict[str, frozenset[str]] = {
    "happiness": frozenset({"AU6", "AU12"}),
    "sadness": frozenset({"AU1", "AU4", "AU15", "AU17"}),
    "surprise": frozenset({"AU1", "AU2", "AU5", "AU26", "AU27"}),
    "fear": frozenset({"AU1", "AU2", "AU4", "AU5", "AU7", "AU20", "AU26"}),
    "anger": frozenset({"AU4", "AU5", "AU7", "AU23", "AU24"}),
    "disgust": frozenset({"AU9", "AU10", "AU15", "AU16"}),
}
MARGIN = 0.05  # a distribution favours one side when its probability is this much higher
ACTIVE = 0.3  # an AU intensity or |arousal| from which it counts as shown
SUPPORTS = 0.25  # a listed probability from which a distribution supports an emotion
OPPOSES_TOP = 0.4  # ... and against it when another emotion leads with this much
OPPOSES_MAX = 0.1  # ... while the asked one stays at most this
_PAIR = re.compile(r"(?:'([^']+)'|([A-Za-z]+)) (\d+(?:\.\d+)?)")

Verdict = Literal["yes", "no", "mixed", "cannot tell"]


def au_code(name: str) -> str | None:
    """'AU05' -> 'AU5'; None for a cue that is no action unit."""
    m = re.fullmatch(r"AU0*(\d{1,2})", name.strip(), re.I)
    return f"AU{m.group(1)}" if m else None


def listed(cue: Cue) -> dict[str, float]:
    """A distribution cue's probabilities by basic emotion, as its sentence lists them
    ("facial expression sadness 0.51, happiness 0.20 ..."); {} for any other cue."""
    if cue.name not in DISTRIBUTION_CUES:
        return {}
    out: dict[str, float] = {}
    for quoted, word, value in _PAIR.findall(cue.text):
        for w in (quoted or word).split():
            basic = to_basic(w)
            if basic in BASIC:
                out[basic] = max(out.get(basic, 0.0), float(value))
                break
    return out


def arousal_of(cue: Cue) -> float | None:
    if cue.name in AROUSAL_CUES and isinstance(cue.value, (int, float)):
        return float(cue.value)
    return None


def _au_strength(cue: Cue, emotion: str) -> float:
    code = au_code(cue.name)
    if code is None or code not in PROTOTYPES.get(emotion, ()):
        return 0.0
    return float(cue.value) if isinstance(cue.value, (int, float)) else 0.0


def favours(cue: Cue, x: str, y: str) -> str | None:
    """Which of two emotions a cue favours, or None when it does not tell them apart."""
    probs = listed(cue)
    if probs:
        px, py = probs.get(x, 0.0), probs.get(y, 0.0)
        return x if px - py >= MARGIN else (y if py - px >= MARGIN else None)
    if au_code(cue.name):
        sx, sy = _au_strength(cue, x), _au_strength(cue, y)
        if max(sx, sy) < ACTIVE or (sx and sy):
            return None
        return x if sx else y
    a = arousal_of(cue)
    if a is not None and abs(a) >= ACTIVE:
        dx, dy = abs(a - CIRCUMPLEX[x][1]), abs(a - CIRCUMPLEX[y][1])
        return x if dy - dx >= 2 * MARGIN else (y if dx - dy >= 2 * MARGIN else None)
    return None


def contrast(cues: list[Cue], x: str, y: str) -> tuple[list[Cue], list[Cue]]:
    """(cues favouring x over y, cues favouring y over x)."""
    sides = [favours(c, x, y) for c in cues]
    return [c for c, s in zip(cues, sides) if s == x], [c for c, s in zip(cues, sides) if s == y]


def bears(cue: Cue, target: Target) -> Literal["for", "against"] | None:
    """Whether a cue shows the target, speaks against it, or says nothing about it."""
    code = au_code(cue.name)
    if code is not None:
        strength = float(cue.value) if isinstance(cue.value, (int, float)) else 0.0
        shown = (
            code in target.aus
            if target.aus
            else any(code in PROTOTYPES.get(e, ()) for e in target.emotions)
        )
        return "for" if shown and strength >= ACTIVE else None  # an absent AU is not measured
    probs = listed(cue)
    if probs and target.emotions:
        if any(probs.get(e, 0.0) >= SUPPORTS for e in target.emotions):
            return "for"
        lead = max(probs.values())
        if lead >= OPPOSES_TOP and all(probs.get(e, 0.0) <= OPPOSES_MAX for e in target.emotions):
            return "against"
        return None
    a = arousal_of(cue)
    if a is None or abs(a) < ACTIVE:
        return None
    levels = [target.arousal] if target.arousal else []
    levels += [
        "high" if CIRCUMPLEX[e][1] >= ACTIVE else "low"
        for e in target.emotions
        if abs(CIRCUMPLEX[e][1]) >= ACTIVE
    ]
    if not levels:
        return None
    level = "high" if a > 0 else "low"
    return "for" if level in levels else "against"


def overlaps(cue: Cue, span: tuple[float, float] | None, tolerance: float = 0.5) -> bool:
    return span is None or (cue.start <= span[1] + tolerance and cue.end >= span[0] - tolerance)


def weigh(
    cues: list[Cue], target: Target | None, span: tuple[float, float] | None = None
) -> tuple[list[Cue], list[Cue]]:
    """(cues that show the target, cues against it) within the asked time span."""
    if target is None:
        return [], []
    marks = [
        (c, bears(c, target)) for c in cues if c.modality in target.modalities and overlaps(c, span)
    ]
    return [c for c, m in marks if m == "for"], [c for c, m in marks if m == "against"]


def frame_spans(
    face: FaceEvidence | None, emotions: list[str], span: tuple[float, float] | None = None
) -> list[tuple[float, float]]:
    """Runs of face frames whose top expression is one of ``emotions`` (first and last frame
    time of each run): the "when" inside a clip-wide expression cue."""
    if face is None or face.status != "ok" or not emotions:
        return []
    runs: list[tuple[float, float]] = []
    open_run: tuple[float, float] | None = None
    for fr in face.frames:
        inside = span is None or span[0] - 0.5 <= fr.t <= span[1] + 0.5
        top = max(fr.expressions, key=lambda k: fr.expressions[k]) if fr.expressions else None
        hit = inside and fr.faces > 0 and top is not None and to_basic(top) in emotions
        if hit:
            open_run = (open_run[0], fr.t) if open_run else (fr.t, fr.t)
        elif open_run:
            runs.append(open_run)
            open_run = None
    return [*runs, open_run] if open_run else runs


def verdict(shown: list[Cue], against: list[Cue]) -> Verdict:
    if shown and against:
        return "mixed"
    return "yes" if shown else ("no" if against else "cannot tell")


def ranking(analysis: AnalysisResult) -> tuple[dict[str, float], str]:
    """(probabilities by emotion, what they are): the fused witnesses' when the analysis has
    them, else the reading's; ({}, '') with neither."""
    if analysis.fusion is not None and analysis.fusion.probs:
        return dict(analysis.fusion.probs), "fused probability"
    if analysis.reading is not None and analysis.reading.probabilities:
        return dict(analysis.reading.probabilities), "reading's probability"
    return {}, ""


def contrast_verdict(analysis: AnalysisResult, x: str, y: str) -> tuple[str | None, str]:
    """(the emotion that ranks higher or None, the sentence that says so with the numbers)."""
    probs, what = ranking(analysis)
    if not probs:
        return None, f"The analysis has no probabilities to rank {x} against {y}."
    px, py = probs.get(x, 0.0), probs.get(y, 0.0)
    if abs(px - py) < 0.005:
        return None, f"Verdict: {x} and {y} are level ({what} {px:.2f} each)."
    (win, pw), (lose, pl) = ((x, px), (y, py)) if px > py else ((y, py), (x, px))
    return win, (f"Verdict: {win} over {lose}, {what} {pw:.2f} against {pl:.2f}.")
