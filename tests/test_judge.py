"""The judge: its parser rejects anything but two integers in 1-10, failures are recorded with
their raw reply, and the real embedded judge (0.5B, for speed) scores an EMER pair in bounds."""

from __future__ import annotations

import os

import pytest

from affectlens.evals.datasets import load_emer
from affectlens.evals.judge import Judge, JudgeError, JudgeScores, parse_judgement, prompt_info
from affectlens.settings import load_settings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def test_parser_accepts_valid_scores():
    assert parse_judgement('{"clue_overlap": 7, "label_overlap": 10}') == JudgeScores(
        clue_overlap=7, label_overlap=10
    )
    # prose around the object is tolerated, the object is what counts
    assert parse_judgement('Scores: {"clue_overlap": 1, "label_overlap": 1} done').clue_overlap == 1
    assert parse_judgement({"clue_overlap": 5, "label_overlap": 6}).label_overlap == 6


@pytest.mark.parametrize(
    "reply",
    [
        '{"clue_overlap": 11, "label_overlap": 5}',  # above 10
        '{"clue_overlap": 0, "label_overlap": 5}',  # below 1
        '{"clue_overlap": 7.5, "label_overlap": 5}',  # not an integer
        '{"clue_overlap": "7", "label_overlap": 5}',  # a string
        '{"clue_overlap": 7}',  # missing field
        "seven out of ten",  # no JSON
        '{"clue_overlap": 7, "label_overlap": ',  # cut off
        "[7, 5]",  # not an object
    ],
)
def test_parser_rejects_invalid_replies(reply):
    with pytest.raises(JudgeError):
        parse_judgement(reply)


class _FixedLLM:
    """A stand-in *server reply* (not the component under test: the parser and the failure
    recording are), returning what a misbehaving judge model could return."""

    model_id = "fixed-reply"

    def __init__(self, reply):
        self.reply = reply

    def chat(self, messages, schema=None, **kwargs):
        if isinstance(self.reply, Exception):
            raise self.reply
        return schema.model_validate(self.reply)


def test_out_of_range_reply_is_a_recorded_failure_not_a_default():
    judge = Judge(load_settings(), llm=_FixedLLM({"clue_overlap": 12, "label_overlap": 3}))
    r = judge.score("He frowns [F1].", "He frowns and shouts.", ["angry"], "angry")
    assert not r.ok and r.scores is None
    assert "clue_overlap" in r.error and '"clue_overlap":12' in r.raw
    assert r.model == "fixed-reply" and r.prompt == "judge.v1" and len(r.prompt_sha256) == 64
    failing = Judge(load_settings(), llm=_FixedLLM(RuntimeError("server down")))
    r = failing.score("x", "y", ["sad"])
    assert not r.ok and "server down" in r.error


def test_prompt_is_versioned_and_hashed():
    info = prompt_info()
    assert info["prompt"] == "judge.v1"
    judge = Judge(load_settings(), llm=_FixedLLM({"clue_overlap": 1, "label_overlap": 1}))
    text = judge.messages("EXPL", "REF", ["happy", "shy"], "happy")[0]["content"]
    assert "EXPL" in text and "REF" in text and "happy, shy" in text


@pytest.mark.slow
def test_real_embedded_judge_scores_an_emer_pair_in_bounds(emer_csv):
    rows = load_emer(emer_csv).samples
    settings = load_settings(judge_model="qwen2.5-0.5b")
    judge = Judge(settings)
    ref, pred = rows[0], rows[7]  # two "angry" reasons written by the annotators
    r = judge.score(pred.reference, ref.reference, ref.labels, pred.labels[0])
    assert r.ok, r.error
    assert 1 <= r.scores.clue_overlap <= 10 and 1 <= r.scores.label_overlap <= 10
    assert r.model.startswith("qwen2.5-0.5b") and r.prompt == "judge.v1"
    # temperature 0 and a fixed seed: the same pair gets the same scores again
    assert judge.score(pred.reference, ref.reference, ref.labels, pred.labels[0]).scores == r.scores
