"""Transcript emotion scorer: the fitted head, its reproducibility, real lines in three languages.

The slow tests run the embedded LLM the head was fitted for (label log-probs, one forward pass)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from affectlens.agent.text_emotion import Head, prompt, reliability, text_emotion
from affectlens.tools.evidence import BASIC_EMOTIONS, EmotionVote, Segment, SpeechEvidence

ROOT = Path(__file__).resolve().parents[1]


def _train_module():
    spec = importlib.util.spec_from_file_location(
        "train_text_emotion", ROOT / "scripts" / "train_text_emotion.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_head_file_loads_and_says_what_it_was_fitted_on():
    head = Head.load()
    assert head.labels == list(BASIC_EMOTIONS)
    assert head.temperature > 0 and len(head.offsets) == len(BASIC_EMOTIONS)
    assert "MELD" in head.fit["data"] and head.fit["test_rows"] > 0
    p = head.apply(np.log(np.full((2, 7), 1 / 7)))
    assert np.allclose(p.sum(1), 1.0)


def test_head_reproduces_its_fit_from_cached_rows(shared_data):
    """Refitting on the cached log-probs of the same seeded sample gives the shipped head and
    its test figure (the LLM is not needed; skipped when this machine never scored the rows)."""
    tr = _train_module()
    head = Head.load()
    fit, test = tr.used(
        *tr.samples(head.fit["fit_rows"], head.fit["test_rows"], shared_data / "meld"),
        head.fit["fit_use"],
        head.fit["test_use"],
    )
    lp_fit = tr.cached_logprobs(head.model, fit["text"], head.prompt_version)
    lp_test = tr.cached_logprobs(head.model, test["text"], head.prompt_version)
    if lp_fit is None or lp_test is None:
        pytest.skip("per-row log-probs not cached here: run scripts/train_text_emotion.py")
    t, b = tr.fit_head(lp_fit, tr.labels_of(fit), offsets=head.fit["offsets_fitted"])
    assert t == pytest.approx(head.temperature, abs=2e-3)
    assert np.allclose(b, head.offsets, atol=2e-3)
    m = tr.metrics(tr.labels_of(test), head.apply(lp_test).argmax(1), boot=1)
    assert m["weighted_f1"] == pytest.approx(head.fit["test_head"]["weighted_f1"], abs=1e-4)


def test_prompt_keeps_the_line_inside_its_quotes():
    p = prompt('He said "ignore that"\n and left')
    line = p.rsplit('Line: "', 1)[1].split('"<|im_end|>', 1)[0]  # the last (scored) line
    assert line == "He said 'ignore that' and left"


def test_reliability_grows_with_speech_and_language_certainty():
    def ev(text, prob):
        return SpeechEvidence(
            language="en", language_probability=prob, segments=[Segment(start=0, end=1, text=text)]
        )

    short, full = ev("yes", 0.99), ev("I really cannot believe you did that to me today", 0.99)
    unsure = ev("I really cannot believe you did that to me today", 0.4)
    assert reliability(short) < reliability(full) <= 1
    assert reliability(unsure) < reliability(full)
    assert reliability(ev("我喜欢你现在的样子", 0.9)) > reliability(ev("好", 0.9))


@pytest.fixture(scope="module")
def te_settings():
    from affectlens.settings import Settings

    return Settings()


def _probs(text: str, settings, language: str = "en", prob: float = 0.95) -> EmotionVote:
    speech = SpeechEvidence(
        language=language,
        language_probability=prob,
        segments=[Segment(start=0.0, end=2.0, text=text)],
    )
    return text_emotion(speech, settings).clip


@pytest.mark.slow
def test_meld_joy_line_scores_joy(shared_data, te_settings):
    import pandas as pd

    d = pd.read_csv(shared_data / "meld" / "test_sent_emo.csv")
    row = d[d["Sr No."] == 76].iloc[0]
    assert row.Emotion == "joy"  # "Well, that makes me feel so good."
    vote = _probs(row.Utterance, te_settings)
    assert max(vote.probs, key=vote.probs.get) == "happiness"
    assert sum(vote.probs.values()) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.slow
def test_mandarin_warm_line_is_not_sad(te_settings):
    vote = _probs("我喜欢你现在的样子", te_settings, language="zh", prob=0.9)
    p = vote.probs
    assert p["sadness"] < 0.15
    assert max(p, key=p.get) == "happiness"
    assert 0 < vote.reliability <= 0.9


@pytest.mark.slow
def test_german_angry_line_scores_anger(te_settings):
    vote = _probs(
        "Ihr seid alle zu nichts zu gebrauchen! Raus hier, sofort!", te_settings, language="de"
    )
    assert max(vote.probs, key=vote.probs.get) == "anger"


@pytest.mark.slow
def test_segments_and_cue(te_settings):
    from affectlens.agent.text_emotion import text_witness

    speech = SpeechEvidence(
        language="en",
        language_probability=0.98,
        segments=[
            Segment(start=0.0, end=2.0, text="Well, that makes me feel so good."),
            Segment(start=2.0, end=4.0, text="Ihr seid alle zu nichts zu gebrauchen! Raus hier!"),
        ],
    )
    te = text_emotion(speech, te_settings)
    assert [max(s.probs, key=s.probs.get) for s in te.segments] == ["happiness", "anger"]
    (cue,), vote = text_witness(speech, te_settings, [])
    assert vote == te.clip
    assert cue.id == "S1" and cue.name == "text_emotion" and cue.modality == "speech"


@pytest.mark.slow
def test_a_fresh_scorer_loads_the_instruction_state_instead_of_evaluating_it(
    te_settings, tmp_path, monkeypatch
):
    """The few-shot instruction (~330 tokens, ~3.5 s cold on 2 cores) is evaluated once and
    saved with the model's other states; a new process's scorer loads it and evaluates only
    the line, with the same log-probs."""
    import numpy as np

    from affectlens.agent.llm import get_llm
    from affectlens.agent.llm.prefix_state import SystemTurns
    from affectlens.agent.text_emotion import LabelScorer, shipped_head

    head = shipped_head()
    llm = get_llm(
        te_settings.model_copy(update={"llm_backend": "embedded", "llm_model": head.model})
    )
    store = SystemTurns(llm._llama, llm.system_turns().identity, tmp_path)
    line = "Well, that makes me feel so good."
    llm._llama.reset()  # the instruction is not in the context (an earlier test's scorer)
    before = LabelScorer(llm._llama, llm._lock, store).logprobs(line, head.prompt_version)
    assert len(list(tmp_path.glob("*.state"))) == 1
    llm._llama.reset()  # an empty context, as in a new process
    evaluated: list[int] = []
    step = llm._llama.eval
    monkeypatch.setattr(llm._llama, "eval", lambda t: evaluated.append(len(t)) or step(t))
    after = LabelScorer(llm._llama, llm._lock, store).logprobs(line, head.prompt_version)
    assert evaluated and max(evaluated) < 40  # the line's tokens only, not the instruction
    assert np.allclose(before, after, atol=1e-5)
