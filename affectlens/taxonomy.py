"""Emotion taxonomy: basic emotions, compound labels, open-vocabulary synonyms, dimensions.

- Basic: Ekman's six plus neutral.
- Compound: (dominant, secondary) pairs of basic emotions named adverb + adjective, dominant
  expressed by the adjective's sense as the *main* state ("happily surprised" = surprise
  dominant, happiness secondary, as in C-EXPR-DB and RAF-DB compound naming).
- Open vocabulary: a synonym table maps free words onto basic emotions, and Plutchik's wheel
  (eight petals, dyads as two petals) groups them for open-vocabulary scoring.
- Dimensional: prototypical valence and arousal in [-1, 1] per basic emotion (Russell's
  circumplex placements, rounded).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# The basic emotions every witness votes over (tools.evidence.BASIC_EMOTIONS is this tuple).
BASIC: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")

ADJECTIVE = {
    "anger": "angry",
    "disgust": "disgusted",
    "fear": "fearful",
    "happiness": "happy",
    "sadness": "sad",
    "surprise": "surprised",
    "neutral": "neutral",
}
ADVERB = {
    "anger": "angrily",
    "disgust": "disgustedly",
    "fear": "fearfully",
    "happiness": "happily",
    "sadness": "sadly",
    "surprise": "surprisedly",
    "neutral": "neutrally",
}

# (valence, arousal) prototypes on the circumplex.
CIRCUMPLEX: dict[str, tuple[float, float]] = {
    "anger": (-0.6, 0.7),
    "disgust": (-0.7, 0.3),
    "fear": (-0.7, 0.6),
    "happiness": (0.8, 0.5),
    "sadness": (-0.7, -0.4),
    "surprise": (0.2, 0.8),
    "neutral": (0.0, 0.0),
}


def circumplex_point(probs: dict[str, float]) -> tuple[float, float]:
    """(valence, arousal) of a distribution over the basic emotions: each emotion's circumplex
    position weighted by its probability (an emotion outside ``CIRCUMPLEX`` counts as neutral)."""
    total = sum(probs.values()) or 1.0
    valence = sum(p * CIRCUMPLEX.get(k, (0.0, 0.0))[0] for k, p in probs.items()) / total
    arousal = sum(p * CIRCUMPLEX.get(k, (0.0, 0.0))[1] for k, p in probs.items()) / total
    return round(valence, 3), round(arousal, 3)


class Compound(NamedTuple):
    """A compound emotion: ``secondary`` qualifies ``dominant`` ("happily surprised")."""

    dominant: str
    secondary: str | None

    @property
    def label(self) -> str:
        return compound_label(self.dominant, self.secondary)


# The 7 C-EXPR-DB classes (ABAW compound-expression challenge), in its order.
C_EXPR_DB_NAMES: dict[str, Compound] = {
    "fearfully surprised": Compound("surprise", "fear"),
    "happily surprised": Compound("surprise", "happiness"),
    "sadly surprised": Compound("surprise", "sadness"),
    "disgustedly surprised": Compound("surprise", "disgust"),
    "angrily surprised": Compound("surprise", "anger"),
    "sadly fearful": Compound("fear", "sadness"),
    "sadly angry": Compound("anger", "sadness"),
}
C_EXPR_DB = tuple(C_EXPR_DB_NAMES.values())

# Free word -> basic emotion. Adjectives, nouns and common open-vocabulary labels (EMER, MER).
SYNONYMS: dict[str, str] = {}
_GROUPS: dict[str, list[str]] = {
    "anger": (
        "anger angry angrily mad furious fury rage raging irritated irritation annoyed annoyance "
        "frustrated frustration hostile hostility resentful resentment indignant outraged "
        "aggressive exasperated agitated irate cross grumpy bitter impatient dissatisfied "
        "dissatisfaction provoked enraged"
    ).split(),
    "disgust": (
        "disgust disgusted disgustedly revulsion revolted repulsed contempt contemptuous "
        "disdain disdainful loathing aversion distaste scornful scorn sneering dislike"
    ).split(),
    "fear": (
        "fear fearful fearfully afraid scared frightened terrified terror anxious anxiety "
        "worried worry nervous nervousness panic panicked alarmed apprehensive uneasy "
        "tense tension insecure dread horrified timid threatened concerned concern"
    ).split(),
    "happiness": (
        "happiness happy happily joy joyful glad pleased delighted cheerful content "
        "contentment satisfied satisfaction amused amusement excited excitement elated "
        "grateful gratitude proud pride relieved relief love loving hopeful hope "
        "enthusiastic playful smiling laughing pleasure friendly affectionate confident "
        "anticipation eager optimistic triumphant"
    ).split(),
    "sadness": (
        "sadness sad sadly unhappy sorrow sorrowful grief grieving depressed depression "
        "disappointed disappointment hurt heartbroken melancholy gloomy lonely "
        "helpless hopeless regret regretful upset miserable despair wistful guilty guilt "
        "ashamed shame tired weary reluctant reluctance helplessness dejected crying"
    ).split(),
    "surprise": (
        "surprise surprised surprisedly astonished astonishment amazed amazement shocked "
        "shock startled stunned unexpected wonder awe curious curiosity confused "
        "confusion puzzled bewildered incredulous disbelief doubt doubtful"
    ).split(),
    "neutral": "neutral calm composed indifferent bored serious flat plain none".split(),
}
for _basic, _words in _GROUPS.items():
    for _w in _words:
        SYNONYMS.setdefault(_w, _basic)
for _basic in BASIC:
    SYNONYMS[ADJECTIVE[_basic]] = _basic
    SYNONYMS[ADVERB[_basic]] = _basic
    SYNONYMS[_basic] = _basic

# Plutchik's wheel of emotions (Plutchik 1980, "Emotion: A Psychoevolutionary Synthesis";
# Plutchik 2001, American Scientist 89(4)) for open-vocabulary scoring. Eight petals, each with
# a mild, basic and intense word; a dyad (two adjacent or near petals mixed) counts as both of
# its petals. Neutral is not on the wheel and stays a group of its own. A word the table does
# not name takes the petal of its basic emotion (happiness -> joy, the others keep their name).
# Unlike the basic-emotion map, trust and anticipation are petals of their own ("hopeful" and
# "happy" are different groups) and boredom is the mild end of disgust, as on the wheel.
WHEEL_PETALS: tuple[str, ...] = (
    "joy",
    "trust",
    "fear",
    "surprise",
    "sadness",
    "disgust",
    "anger",
    "anticipation",
)
_PETAL_WORDS: dict[str, str] = {
    "joy": "serenity serene joy joyful joyous ecstasy ecstatic",
    "trust": "acceptance accepting trust trusting trustful admiration admiring admire",
    "fear": "apprehension apprehensive fear fearful terror terrified",
    "surprise": "distraction distracted surprise surprised amazement amazed",
    "sadness": "pensiveness pensive sadness sad grief grieving",
    "disgust": "boredom bored disgust disgusted loathing",
    "anger": "annoyance annoyed anger angry rage",
    "anticipation": "interest interested anticipation anticipating vigilance vigilant "
    "expectant expectation eager eagerness",
}
_DYADS: dict[str, tuple[str, str]] = {
    # primary dyads (adjacent petals)
    "love": ("joy", "trust"),
    "loving": ("joy", "trust"),
    "submission": ("trust", "fear"),
    "submissive": ("trust", "fear"),
    "awe": ("fear", "surprise"),
    "disapproval": ("surprise", "sadness"),
    "disapproving": ("surprise", "sadness"),
    "remorse": ("sadness", "disgust"),
    "remorseful": ("sadness", "disgust"),
    "contempt": ("disgust", "anger"),
    "contemptuous": ("disgust", "anger"),
    "aggressiveness": ("anger", "anticipation"),
    "aggressive": ("anger", "anticipation"),
    "optimism": ("anticipation", "joy"),
    "optimistic": ("anticipation", "joy"),
    # secondary dyads (one petal apart)
    "guilt": ("joy", "fear"),
    "guilty": ("joy", "fear"),
    "curiosity": ("trust", "surprise"),
    "curious": ("trust", "surprise"),
    "despair": ("fear", "sadness"),
    "desperate": ("fear", "sadness"),
    "unbelief": ("surprise", "disgust"),
    "disbelief": ("surprise", "disgust"),
    "envy": ("sadness", "anger"),
    "envious": ("sadness", "anger"),
    "cynicism": ("disgust", "anticipation"),
    "cynical": ("disgust", "anticipation"),
    "pride": ("anger", "joy"),
    "proud": ("anger", "joy"),
    "hope": ("anticipation", "trust"),
    "hopeful": ("anticipation", "trust"),
    # tertiary dyads (two petals apart)
    "delight": ("joy", "surprise"),
    "delighted": ("joy", "surprise"),
    "sentimentality": ("trust", "sadness"),
    "sentimental": ("trust", "sadness"),
    "shame": ("fear", "disgust"),
    "ashamed": ("fear", "disgust"),
    "outrage": ("surprise", "anger"),
    "outraged": ("surprise", "anger"),
    "pessimism": ("sadness", "anticipation"),
    "pessimistic": ("sadness", "anticipation"),
    "morbidness": ("disgust", "joy"),
    "morbid": ("disgust", "joy"),
    "dominance": ("anger", "trust"),
    "dominant": ("anger", "trust"),
    "anxiety": ("anticipation", "fear"),
    "anxious": ("anticipation", "fear"),
}
_BASIC_PETAL = {"happiness": "joy", "neutral": "neutral"}
WHEEL_GROUP: dict[str, tuple[str, ...]] = {
    w: (_BASIC_PETAL.get(b, b),) for w, b in SYNONYMS.items()
}
WHEEL_GROUP.update({w: (p,) for p, words in _PETAL_WORDS.items() for w in words.split()})
WHEEL_GROUP.update(_DYADS)


def wheel_petals(word: str) -> tuple[str, ...]:
    """'hopeful' -> ('anticipation', 'trust'); 'furious' -> ('anger',); unknown -> ()."""
    w = word.strip().lower()
    if w in WHEEL_GROUP:
        return WHEEL_GROUP[w]
    basic = to_basic(w)
    return (_BASIC_PETAL.get(basic, basic),) if basic else ()


_WORD = re.compile(r"[a-z]+(?:-[a-z]+)?")


def to_basic(word: str) -> str | None:
    """Map one free word ("furious", "Happily") onto a basic emotion, or None if unknown."""
    w = word.strip().lower()
    if w in SYNONYMS:
        return SYNONYMS[w]
    for suffix in ("ly", "ed", "ness", "s"):
        if w.endswith(suffix) and w[: -len(suffix)] in SYNONYMS:
            return SYNONYMS[w[: -len(suffix)]]
    return None


def compound_label(dominant: str, secondary: str | None) -> str:
    """(surprise, happiness) -> "happily surprised"; no or equal secondary -> "surprised"."""
    if dominant not in BASIC:
        raise ValueError(f"not a basic emotion: {dominant!r}")
    if not secondary or secondary == dominant or secondary == "neutral" or dominant == "neutral":
        return ADJECTIVE[dominant]
    if secondary not in BASIC:
        raise ValueError(f"not a basic emotion: {secondary!r}")
    return f"{ADVERB[secondary]} {ADJECTIVE[dominant]}"


def parse_label(label: str) -> Compound | None:
    """Read a compound or open-vocabulary label into (dominant, secondary).

    "sadly angry" -> (anger, sadness); "frustrated" -> (anger, None); two words without an
    adverb ("happy, surprised") -> first is dominant. None when no word maps.
    """
    words = _WORD.findall(label.lower())
    mapped = [(w, b) for w in words if (b := to_basic(w))]
    if not mapped:
        return None
    if len(mapped) == 1:
        return Compound(mapped[0][1], None)
    adverbs = [b for w, b in mapped if w.endswith("ly")]
    others = [b for w, b in mapped if not w.endswith("ly")]
    if adverbs and others:
        dominant, secondary = others[0], adverbs[0]
    else:
        dominant, secondary = mapped[0][1], mapped[1][1]
    return Compound(dominant, None if secondary == dominant else secondary)


def labels_in(text: str) -> list[str]:
    """All basic emotions named in a free text, in order of first mention, without repeats."""
    seen: list[str] = []
    for w in _WORD.findall(text.lower()):
        b = to_basic(w)
        if b and b not in seen:
            seen.append(b)
    return seen


def c_expr_class(compound: Compound) -> str | None:
    """The C-EXPR-DB class name of a compound, or None when it is not one of the 7."""
    for name, pair in C_EXPR_DB_NAMES.items():
        if pair == compound:
            return name
    return None
