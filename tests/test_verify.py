"""Deterministic verification and normalisation of readings against cues."""

from __future__ import annotations

import pytest

from affectlens.agent import lexicon
from affectlens.agent import reason as rs
from affectlens.agent import verify as vf
from affectlens.agent.citations import cited_ids
from affectlens.agent.schemas import Cue, EmotionReading
from affectlens.taxonomy import labels_in

CUES = [
    Cue(
        id="F1",
        modality="face",
        start=0,
        end=5,
        name="expression",
        value=0.62,
        unit="probability",
        scale="0-1",
        text="facial expression sadness 0.62, neutral 0.20",
    ),
    Cue(
        id="F2",
        modality="face",
        start=1.2,
        end=3.4,
        name="AU15",
        value=0.81,
        unit="intensity",
        scale="0-1",
        text="AU15 lip corner depressor, peak intensity 0.81 (0-1): lip corners down",
    ),
    Cue(
        id="V1",
        modality="voice",
        start=0,
        end=5,
        name="voice_arousal",
        value=-0.4,
        scale="-1..1",
        text="voice arousal -0.40 (-1..1): a calm, low-arousal voice",
    ),
]
ALL = {"face": True, "speech": False, "voice": True, "scene": False}


def reading(explanation, label="sad", dominant="sadness", secondary=None) -> EmotionReading:
    return EmotionReading(
        dominant=dominant, secondary=secondary, label=label, explanation=explanation
    )


GOOD = [
    "The face is mostly sad at 0.62 [F1] with lip corners down at 0.81 [F2].",
    "The voice is calm, arousal -0.40 [V1].",
    "Overall the person is sad.",
]


def kinds(problems):
    return {p.kind for p in problems}


def test_a_good_reading_passes():
    problems = vf.check(reading(GOOD), CUES, ALL)
    assert problems == [] and vf.grounded(problems)


def test_unknown_cue_is_reported_with_the_valid_ids():
    bad = ["The mouth area [F7] shows sadness [F1].", "Voice [V1] is calm, so sad."]
    problems = vf.check(reading(bad), CUES, ALL)
    assert kinds(problems) == {"unknown-cue"} and not vf.grounded(problems)
    assert "F7" in problems[0].message and "F1, F2, V1" in problems[0].message


def test_numbers_must_match_the_cited_cue():
    bad = ["Lip corners down at 0.95 [F2] and sadness 62% [F1].", "Voice [V1] calm: sad."]
    problems = vf.check(reading(bad), CUES, ALL)
    assert kinds(problems) == {"number"} and "0.95" in problems[0].message
    # the percentage (62% = 0.62) and an AU code are not flagged
    assert "62" not in problems[0].message and "15" not in problems[0].message


def test_uncited_sentence_and_missing_modality():
    bad = ["The face looks sad.", "Sadness is clear [F1]."]
    problems = vf.check(reading(bad), CUES, ALL)
    assert {"uncited", "modality"} <= kinds(problems)
    assert any("voice" in p.message for p in problems if p.kind == "modality")


def test_label_and_explanation_must_agree():
    problems = vf.check(
        reading(GOOD[:2] + ["So: happy."], label="happy", dominant="happiness"), CUES, ALL
    )
    assert "agreement" not in kinds(problems)
    problems = vf.check(reading(GOOD[:2], label="angry", dominant="anger"), CUES, ALL)
    assert "agreement" in kinds(problems)
    # CREMA-D 1001_DFA_HAP_XX without a repair round (2026-12-05): the words' claim named anger,
    # the conclusion happiness, and the stored label was "angry"
    words = "The voice reads as neutral, happiness and anger [V1]."
    happy_end = reading([GOOD[0], words, "The person is happy [F1]."], "angry", "anger")
    assert "agreement" in kinds(vf.check(happy_end, CUES, ALL))
    assert vf.concluded(happy_end)[-1].endswith("seems angry.")
    problems = vf.check(reading(GOOD, label="blorptastic", dominant="sadness"), CUES, ALL)
    assert "label" in kinds(problems)


@pytest.mark.parametrize(
    "text, ids",
    [
        ("a [F1] b [F2, V1] c [S1][C2]", ["F1", "F2", "V1", "S1", "C2"]),
        ("no citation, just AU12 at 0.5", []),
    ],
)
def test_cited_ids(text, ids):
    assert cited_ids(text) == ids


def test_numbers_ignore_times_ids_and_au_codes():
    assert vf.numbers("AU12 at 00:01.2 peaks 0.81 [F2], 40% of 3 frames") == [0.81, 0.4, 3.0]
    assert vf.numbers("F2 1.2-3.4s AU15 peak 0.81 (0-1)") == [0.81, 0.0, 1.0]  # spans are times


def test_normalise_fixes_label_conflicts_and_probabilities():
    raw = rs.LLMReading(
        explanation=["Sad face [F1]. Calm voice [V1], so sad."],
        label="happily surprised",
        dominant="sadness",
        secondary="fear",
        valence=-0.5,
        arousal=-0.2,
        confidence=0.7,
        conflicts=["F2", "Z9"],
    )
    status = {
        "face": ("ok", ""),
        "speech": ("missing", "no audio"),
        "voice": ("ok", ""),
        "scene": ("failed", "boom"),
    }
    r, fixes = rs.normalise(raw, CUES, status, {"sadness": 0.6, "neutral": 0.4})
    assert r.label == "fearfully sad" and r.dominant == "sadness" and r.secondary == "fear"
    assert any("label" in f for f in fixes) and any("Z9" in f for f in fixes)
    assert r.conflicts == ["F2"] and len(r.explanation) == 2
    assert sum(r.probabilities.values()) == pytest.approx(1, abs=1e-3)
    assert max(r.probabilities, key=r.probabilities.get) == "sadness"
    acc = {a.modality: a for a in r.modalities}
    assert "[F1]" in acc["face"].summary and acc["scene"].status == "failed"
    assert "boom" in acc["scene"].summary and acc["speech"].status == "missing"


def test_normalise_keeps_an_agreeing_label_without_a_fix():
    raw = rs.LLMReading(
        explanation=["x [F1]."],
        label="Sadly angry",
        dominant="anger",
        secondary="sadness",
        valence=-0.6,
        arousal=0.5,
        confidence=0.5,
    )
    r, fixes = rs.normalise(raw, CUES, {"face": ("ok", "")}, {})
    assert r.label == "sadly angry" and fixes == []


def test_a_claim_of_several_sentences_cites_once_at_its_end():
    """The structured reading writes one claim as 'text [ids].'; when the text holds two
    sentences the ids cover both (a repair round for that cost a 1.5B model ~15 s)."""
    two = reading(
        [
            "The face is mostly sad at 0.62. The lip corners are down [F1][F2].",
            "The voice is calm [V1].",
            "Overall the person is sad.",
        ]
    )
    assert "uncited" not in kinds(vf.check(two, CUES, ALL))
    # A sentence after the last citation of its item is not covered.
    trailing = reading(
        [
            "The face is sad [F1]. The lips are down.",
            "The voice is calm [V1].",
            "Overall the person is sad.",
        ]
    )
    assert [p.kind for p in vf.check(trailing, CUES, ALL)].count("uncited") == 1
    # Numbers in the covered sentence are checked against the covering cues.
    wrong = reading(
        [
            "The face is sad at 0.75. The lips are down [F1][F2].",
            "The voice is calm [V1].",
            "Overall the person is sad.",
        ]
    )
    assert "number" in kinds(vf.check(wrong, CUES, ALL))


# -- what a claim names must be shown by the cues it cites (agent/lexicon) ----------------------
def test_every_au_name_and_gloss_in_the_repo_reads_as_that_au():
    """The lexicon is derived from the AU tables: each FACS name and each gloss, written in a
    claim, is read as a facial action that its own AU supports."""
    from affectlens.agent.textualise import AU_GLOSS
    from affectlens.tools.face_geometry import AU_NAMES

    for code, phrase in [*AU_NAMES.items(), *AU_GLOSS.items()]:
        found = [m for m in lexicon.mentions(f"The face shows {phrase}.") if m.kind == "face"]
        assert found and lexicon.au_code(code) in found[0].aus, (code, phrase, found)


@pytest.mark.parametrize(
    "text, named",
    [
        ("narrowed eyes and a raised chin", {"narrowed eyes": "AU07", "raised chin": "AU17"}),
        (
            "the brows are lowered, lip corners pulled down",
            {"brows are lowered": "AU04", "lip corners pulled down": "AU15"},
        ),
        ("she is not smiling; the jaw drops", {"jaw drops": "AU26"}),
        ("no frown, a wide smile", {"smile": "AU12"}),
    ],
)
def test_facial_actions_are_read_with_their_aus(text, named):
    found = {m.phrase: m.aus for m in lexicon.mentions(text) if m.kind == "face"}
    assert set(found) == set(named) and all(named[p] in found[p] for p in named)


def test_quoted_words_are_not_facial_claims_and_voice_words_need_a_voice_noun():
    ms = lexicon.mentions("The image matches 'a smiling person'; the face looks calm.")
    assert [m.kind for m in ms] == ["quote"]
    voice = [m for m in lexicon.mentions("A calm voice, speaking quickly at a high pitch.")]
    assert [(m.phrase, m.level) for m in voice] == [("calm", "low"), ("quickly", ""), ("pitch", "")]


def test_a_facial_action_the_cited_cues_do_not_show_is_sent_back():
    bad = reading(
        [
            "The face is sad at 0.62, with a smile [F1].",
            "The voice is calm [V1].",
            "Overall the person is sad.",
        ]
    )
    problems = vf.check(bad, CUES, ALL)
    assert kinds(problems) == {"content"} and not vf.grounded(problems)
    assert "'smile'" in problems[0].message and "F1" in problems[0].message
    # citing the cue that shows the action satisfies it; the message says which one does
    good = reading(
        [
            "The face is sad at 0.62, lip corners pulled down [F1][F2].",
            "The voice is calm [V1].",
            "Overall the person is sad.",
        ]
    )
    assert vf.check(good, CUES, ALL) == []
    moved = vf.check(
        reading(
            [
                "Lip corners pulled down [F1].",
                "The voice is calm [V1].",
                "Overall the person is sad.",
            ]
        ),
        CUES,
        ALL,
    )
    assert [p.kind for p in moved] == ["content"] and "F2 shows it" in moved[0].message


def test_a_voice_quality_must_be_measured_and_not_contradicted():
    loud = vf.check(
        reading(["Sad at 0.62 [F1][F2].", "The voice is loud [V1].", "Overall the person is sad."]),
        CUES,
        ALL,
    )
    assert [p.kind for p in loud] == ["content"] and "'loud'" in loud[0].message
    excited = vf.check(
        reading(["Sad at 0.62 [F1][F2].", "An agitated voice [V1].", "Overall the person is sad."]),
        CUES,
        ALL,
    )
    assert [p.kind for p in excited] == ["content"]  # V1 says low arousal


def test_a_claim_about_the_words_must_cite_what_was_said():
    """ "The words are neutral" citing face cues (the bundled sample's conclusion, 2026-12-04)
    names the spoken content, which only a speech cue shows."""
    said = Cue(
        id="S1",
        modality="speech",
        start=0,
        end=5,
        name="utterance",
        value="I am fine, really.",
        text='said: "I am fine, really."',
    )
    cues = [*CUES, said]
    every = {**ALL, "speech": True}
    bad = vf.check(
        reading(
            [
                "Sad at 0.62 [F1][F2], and the words are neutral [F1].",
                "The voice is calm [V1], as is what she says [S1].",
                "Overall the person is sad.",
            ]
        ),
        cues,
        every,
    )
    assert [(p.kind, p.sentence) for p in bad] == [("content", 1)], bad
    assert "'the words'" in bad[0].message and "S1 shows it" in bad[0].message
    fine = ["Sad at 0.62 [F1][F2]; the words are plain [S1].", "The voice is calm [V1]."]
    assert vf.check(reading([*fine, "Overall the person is sad."]), cues, every) == []
    assert lexicon.mentions("In other words, the face is sad.") == []


def test_prune_cuts_the_offending_clause_and_keeps_the_conclusion():
    r = reading(
        [
            "The face is sad at 0.62 [F1].",
            "The voice is calm [V1].",
            "The person is sad, with a smile and a raised chin [F1][F2].",
        ]
    )
    kept, dropped = vf.prune(r, CUES)
    assert kept[:2] == r.explanation[:2] and kept[2] == "The person is sad [F1][F2]."
    assert len(dropped) == 1 and dropped[0].kept == kept[2] and len(dropped[0].reasons) == 2
    assert not any(p.kind == "content" for p in vf.check(reading(kept), CUES, ALL))


def test_a_cut_never_splits_a_bracket():
    """The 1.5B's "(widened eyes, lips pulled down)": the bracket is one clause, so cutting the
    chin in it takes the bracket whole instead of leaving "lips down)" behind."""
    r = reading(
        [
            "The face is sad at 0.62 [F1].",
            "The voice is calm [V1].",
            "The person is sad, as the face shows (a raised chin, lips down), and the voice (calm) "
            "[F1][F2][V1].",
        ]
    )
    kept, dropped = vf.prune(r, CUES)
    assert kept[2] == "The person is sad, and the voice (calm) [F1][F2][V1]."
    assert kept[2].count("(") == kept[2].count(")") and len(dropped) == 1


def test_prune_states_the_conclusion_when_its_whole_claim_goes():
    r = reading(
        [
            "Lip corners down at 0.81 [F2].",
            "The voice is calm [V1].",
            "A smile and a raised chin [F1]: sad.",
        ],
        label="sad",
        dominant="sadness",
    )
    kept, dropped = vf.prune(r, CUES)
    assert len(dropped) == 1 and dropped[0].kept is None
    assert kept[-1] == "Overall the person seems sad [F1]."
    assert vf.check(reading(kept), CUES, ALL) == []


def test_a_cut_reads_whole_only_when_it_kept_the_sentences_opening():
    """What decides a cut with no repair round (settings.verify_prune_first); the sentences are
    shaped like the 1.5B's on the bench cuts (2026-12-05: "Indicating disgust [F1].")."""
    whole = reading(["The face is sad at 0.62 [F1].", "The person looks sad, with a frown [F1]."])
    (cut,) = vf.prune(whole, CUES)[1]
    assert cut.kept == "The person looks sad [F1]." and vf.reads_whole(cut)
    # the opening clause goes, its subject and verb stay with the action that follows it
    both = reading(["The person is frowning and looking down, indicating sadness [F1].", "x."])
    (cut,) = vf.prune(both, CUES)[1]
    assert cut.kept == "The person is looking down, indicating sadness [F1]." and vf.reads_whole(
        cut
    )
    fragment = reading(
        ["The person is frowning, indicating sadness [F1].", "The voice is calm [V1]."]
    )
    (cut,) = vf.prune(fragment, CUES)[1]
    assert cut.kept == "Indicating sadness [F1]." and not vf.reads_whole(cut)
    assert not vf.reads_whole(cut.model_copy(update={"kept": None}))


def after_one_round(r: EmotionReading, **settings):
    """The graph state after one reasoning round, and a runtime allowing one repair."""
    from types import SimpleNamespace

    from affectlens.settings import Settings

    state = {
        "reading": r,
        "cues": CUES,
        "rounds": 1,
        "status": {m: ("ok" if ok else "missing", "") for m, ok in ALL.items()},
    }
    runtime = SimpleNamespace(
        context=SimpleNamespace(settings=Settings(verify_max_rounds=1, **settings))
    )
    return state, runtime


RAISED_CHIN = [
    "The face is sad at 0.62 [F1].",
    "The voice is calm [V1].",
    "The person is sad, with a raised chin [F1][F2].",
]


def test_verify_node_cuts_a_clean_cut_at_once():
    """verify_prune_first (the default): a cut that leaves every sentence reading whole and the
    reading passing is made at once, no repair round; one that leaves a fragment goes back."""
    from affectlens.agent import nodes

    state, runtime = after_one_round(reading(RAISED_CHIN))
    now = nodes.verify_node(state, runtime)
    assert now["reading"].explanation[-1] == "The person is sad [F1][F2]." and not now["problems"]
    assert [d.text for d in now["verification"].dropped_claims] == [RAISED_CHIN[-1]]
    assert now["verification"].grounded and nodes.after_verify({**state, **now}, runtime) == "store"
    fragment = reading([*RAISED_CHIN[:2], "The person is frowning, indicating sadness [F1]."])
    state, runtime = after_one_round(fragment)
    early = nodes.verify_node(state, runtime)
    assert "reading" not in early and early["verification"].dropped_claims == []
    assert nodes.after_verify({**state, **early}, runtime) == "reason"


def test_verify_node_cuts_only_after_the_last_round():
    """verify_prune_first off: rounds left, the content problem goes back to reason. None left:
    the stored reading loses the clause, keeps its conclusion, and the report lists the cut."""
    from affectlens.agent import nodes

    bad = reading(RAISED_CHIN)
    state, runtime = after_one_round(bad, verify_prune_first=False)
    early = nodes.verify_node(state, runtime)
    assert "reading" not in early and early["verification"].dropped_claims == []
    assert any("raised chin" in p for p in early["problems"])
    assert nodes.after_verify({**state, **early}, runtime) == "reason"
    late = nodes.verify_node({**state, "rounds": 2}, runtime)
    stored = late["reading"]
    assert stored.explanation[-1] == "The person is sad [F1][F2]." and late["problems"] == []
    assert [d.text for d in late["verification"].dropped_claims] == [bad.explanation[-1]]
    assert late["verification"].grounded
    assert not any("raised chin" in a.summary for a in stored.modalities)


def test_a_decision_the_llm_never_explains_is_still_named_after_the_last_round():
    """The fused witnesses decided disgust; the LLM's repair still argued sadness (the sample,
    2026-12-05). Rounds left: the agreement problem goes back. None left: the stored explanation
    closes on the decided emotion, and nothing the LLM wrote is lost."""
    from affectlens.agent import nodes

    argued = reading(
        GOOD[:2] + ["The person looks sad [F1]."], label="disgusted", dominant="disgust"
    )
    state, runtime = after_one_round(argued)
    early = nodes.verify_node(state, runtime)
    assert "reading" not in early and kinds(vf.check(argued, CUES, ALL)) == {"agreement"}
    assert nodes.after_verify({**state, **early}, runtime) == "reason"
    late = nodes.verify_node({**state, "rounds": 2}, runtime)
    stored = late["reading"]
    assert stored.explanation[:-1] == argued.explanation and late["problems"] == []
    assert labels_in(stored.explanation[-1]) == ["disgust"]
    assert late["verification"].grounded and late["verification"].fixed
    # an explanation that already names the decision is stored as written
    assert vf.concluded(reading(GOOD)) == GOOD


def test_problems_name_the_sentence_a_repair_round_writes_again():
    """A sentence's problem names that sentence, so a repair rewrites it (and the conclusion)
    and leaves the others; a problem of the whole reading rewrites all of it."""
    bad = [GOOD[0], "The voice is calm, arousal -0.90 [V1].", GOOD[2]]
    problems = vf.check(reading(bad), CUES, ALL)
    assert kinds(problems) == {"number"} and vf.sentences_to_redo(problems) == [2]
    named_late = vf.check(reading(GOOD[:2], label="angry", dominant="anger"), CUES, ALL)
    assert kinds(named_late) == {"agreement"} and vf.sentences_to_redo(named_late) == []
    left_out = vf.check(reading(["Sadness is clear [F1]."]), CUES, ALL)
    assert "modality" in kinds(left_out) and vf.sentences_to_redo(left_out) is None


SPOKEN = [
    *CUES,
    Cue(id="S1", modality="speech", start=0.0, end=3.4, name="transcript",
        value="for you, ask what you can do for your country.",
        text='said: "for you, ask what you can do for your country."'),
    Cue(id="S2", modality="speech", start=0.0, end=3.4, name="text_emotion", value=0.61,
        text="the words alone read as neutral 0.61, happiness 0.21, anger 0.05 "
        "(text-emotion scorer, 0-1; reliability 0.95)"),
]  # fmt: skip
QUOTED = [
    "The face is sad at 0.62 [F1].",
    "The words 'for you, ask what you can do for your country' are neutral [S2].",
    "The voice is calm [V1].",
    "Overall the person is sad [F1].",
]


def test_a_right_quote_cited_to_the_wrong_cue_is_cited_to_the_cue_that_holds_it():
    """The bench's last repair rounds: the transcript quoted word for word, the words' emotion
    scores (S2) cited instead of the transcript (S1). The verifier adds S1 itself, with no
    repair round; a quote that no cue holds is still sent back."""
    from affectlens.agent import nodes

    spoken = {**ALL, "speech": True}
    r = reading(QUOTED)
    assert any("cite S1" in p.message for p in vf.check(r, SPOKEN, spoken))
    mended, notes = vf.recite(r.explanation, SPOKEN)
    assert mended[1] == (
        "The words 'for you, ask what you can do for your country' are neutral [S2][S1]."
    )
    assert mended[:1] + mended[2:] == QUOTED[:1] + QUOTED[2:] and len(notes) == 1
    assert not vf.check(reading(mended), SPOKEN, spoken)

    state, runtime = after_one_round(r)
    state = {**state, "cues": SPOKEN, "status": {m: ("ok", "") for m in spoken}}
    now = nodes.verify_node(state, runtime)
    assert now["reading"].explanation == mended and not now["problems"]
    assert notes[0] in now["verification"].fixed
    assert nodes.after_verify({**state, **now}, runtime) == "store"

    misquoted = reading([*QUOTED[:1], "The words 'ask not' are neutral [S2].", *QUOTED[2:]])
    assert vf.recite(misquoted.explanation, SPOKEN) == (misquoted.explanation, [])
    later = nodes.verify_node({**state, "reading": misquoted}, runtime)
    assert nodes.after_verify({**state, **later}, runtime) == "reason"


def test_a_rambling_second_sentence_goes_at_once_a_whole_claim_does_not():
    """A claim's second sentence naming what no cue shows is dropped whole without a repair
    round when the claim keeps its first; a claim or a conclusion cut to nothing is not."""
    from affectlens.agent import nodes

    ramble = [
        "The face is sad at 0.62 [F1].",
        "The voice is calm. The AU cue for brow lowerer (AU4) is present [V1].",
        "Overall the person is sad [F1].",
    ]
    explanation, cut = vf.prune(reading(ramble), CUES)
    assert [d.kept for d in cut] == [None] and explanation[1] == "The voice is calm [V1]."
    assert vf.clean_cut(ramble, cut)
    state, runtime = after_one_round(reading(ramble))
    now = nodes.verify_node(state, runtime)
    assert now["reading"].explanation == explanation and not now["problems"]
    assert nodes.after_verify({**state, **now}, runtime) == "store"

    alone = [*ramble[:1], "The AU cue for brow lowerer (AU4) is present [V1].", ramble[2]]
    assert not vf.clean_cut(alone, vf.prune(reading(alone), CUES)[1])
    ending = [*ramble[:1], "The voice is calm [V1].", "The brows are lowered (AU4) [F1]."]
    assert not vf.clean_cut(ending, vf.prune(reading(ending), CUES)[1])
