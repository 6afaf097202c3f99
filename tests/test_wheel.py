"""Open-vocabulary scoring groups labels on Plutchik's wheel, not on the basic emotions: checked
on EMER's real reference explanations, whose conclusions name wheel emotions (anticipation,
curiosity) that the basic-emotion map folds into happiness or surprise."""

from __future__ import annotations

import pytest

from affectlens.evals import metrics as M
from affectlens.evals.datasets import load_emer
from affectlens.taxonomy import WHEEL_PETALS


@pytest.fixture(scope="module")
def emer(shared_data):
    return {s.id: s for s in load_emer(shared_data / "emer" / "emer_v1_gt_eng.csv").samples}


def test_anticipation_is_its_own_petal_not_happiness(emer):
    s = emer["sample_00000927"]  # gold "happy"; reference: "anticipation and happiness"
    said = M.conclusion(s.reference)
    assert M.wheel_groups([said]) == {"anticipation", "joy"}
    out = M.open_vocab([s.labels], [[said]])
    assert out["precision"] == pytest.approx(0.5) and out["recall"] == pytest.approx(1.0)


def test_a_dyad_counts_as_both_of_its_petals(emer):
    s = emer["sample_00001097"]  # gold "surprise"; reference: "his curiosity"
    assert M.wheel_groups([M.conclusion(s.reference)]) == {"trust", "surprise"}
    assert M.wheel_groups(["proud"]) == {"anger", "joy"}
    assert M.wheel_groups(["bored"]) == {"disgust"}  # the mild end of disgust on the wheel


def test_every_emer_gold_label_lands_on_the_wheel(emer):
    for s in emer.values():
        groups = M.wheel_groups(s.labels)
        assert groups and groups <= {*WHEEL_PETALS, "neutral"}, s.labels
