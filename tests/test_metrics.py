"""Every metric against numbers worked out by hand on small inputs (the working is in the
comments), plus the EMER reference explanations scored against their own gold labels."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from affectlens.agent.schemas import Cue
from affectlens.evals import metrics as M


def test_accuracy_and_macro_f1_by_hand():
    gold = ["anger", "anger", "happiness", "sadness"]
    pred = ["anger", "happiness", "happiness", "sadness"]
    # 3 of 4 equal -> 0.75
    assert M.accuracy(gold, pred) == pytest.approx(0.75)
    # anger: TP1 FP0 FN1 -> 2/(2+0+1)=2/3; happiness: TP1 FP1 FN0 -> 2/3; sadness: 1
    # macro = (2/3 + 2/3 + 1)/3 = 7/9 = 0.7778
    assert M.macro_f1(gold, pred) == pytest.approx(7 / 9)
    assert M.per_class_f1(gold, pred, ["fear"]) == {"fear": 0.0}
    with pytest.raises(ValueError):
        M.accuracy(gold, pred[:2])


def test_confusion_matrix_counts_other():
    cm = M.confusion_matrix(["anger", "fear"], ["anger", "calm"], ["anger", "fear"])
    # anger->anger in [0][0]; fear->"calm" (not a label) in the "other" column [1][2]
    assert cm == [[1, 0, 0], [0, 0, 1]]


def test_compound_seven_class_macro_f1_and_parts():
    gold = ["happily surprised", "sadly angry", "fearfully surprised"]
    pred = ["happily surprised", "angry", "happily surprised"]
    rec = M.recognition(gold, pred)
    # C-EXPR-DB classes: happily surprised TP1 FP1 FN0 -> 2/3; sadly angry TP0 FN1 -> 0;
    # fearfully surprised FN1 -> 0; the 4 classes never seen -> 0. macro = (2/3)/7 = 0.0952
    assert rec["compound_macro_f1"] == pytest.approx((2 / 3) / 7)
    assert rec["compound_accuracy"] == pytest.approx(1 / 3)
    # dominant parts: surprise=surprise, anger=anger, surprise=surprise -> 3/3
    assert rec["compound_dominant_accuracy"] == pytest.approx(1.0)
    # secondary: happiness=happiness, sadness vs None, fear vs happiness -> 1/3
    assert rec["compound_secondary_accuracy"] == pytest.approx(1 / 3)
    # parts F1 per sample: {s,h}v{s,h}=1; {a,s}v{a}: P1 R.5 -> 2/3; {s,f}v{s,h}: .5/.5 -> .5
    # mean = (1 + 2/3 + 1/2)/3 = 13/18
    assert rec["compound_parts_f1"] == pytest.approx(13 / 18)
    # basic accuracy on dominants: 3/3
    assert rec["basic_accuracy"] == pytest.approx(1.0)


def test_open_vocab_by_hand():
    gold = [["angry", "frustrated"], ["happy", "worried"], ["shy"]]
    pred = [["furious"], ["joyful", "sad", "anxious"], ["happy"]]
    # Plutchik petals. s1: G={anger} P={anger} -> P1 R1; s2: G={joy,fear}
    # P={joy,sadness,anticipation,fear} ("anxious" is the anticipation+fear dyad) -> P 2/4 R 1;
    # s3: gold "shy" maps to nothing -> skipped. P = (1 + 1/2)/2 = 3/4, R = 1, F = 6/7
    out = M.open_vocab(gold, pred)
    assert out["n"] == 2
    assert out["precision"] == pytest.approx(3 / 4)
    assert out["recall"] == pytest.approx(1.0)
    assert out["f1"] == pytest.approx(6 / 7)
    # empty prediction -> P 0, R 0 for that sample
    assert M.open_vocab([["sad"]], [[]])["f1"] == 0.0


def test_extract_labels_reads_the_conclusion():
    text = (
        "He is not happy at all. His brow is furrowed and he speaks loudly. "
        "Therefore, it is inferred that his emotional state is anger and frustration."
    )
    assert M.extract_labels(text) == ["anger"]
    assert M.extract_labels("She is smiling and joyful.") == ["happiness"]


def _cues():
    return {
        "F1": Cue(
            id="F1",
            modality="face",
            start=0,
            end=1,
            name="AU12",
            value=0.8,
            text="F1 AU12 lip corner puller 0.80: a smile",
        ),
        "F2": Cue(
            id="F2",
            modality="face",
            start=0,
            end=1,
            name="AU4",
            value=0.6,
            text="F2 AU4 brow lowerer 0.60",
        ),
        "V1": Cue(
            id="V1",
            modality="voice",
            start=0,
            end=1,
            name="pitch_mean_hz",
            value=210.0,
            text="V1 mean pitch 210 Hz",
        ),
    }


def test_grounding_by_hand():
    expl = [
        "A smile appears [F1].",  # cites F1, no claim -> supported
        "The smile shows happiness [F1].",  # AU12 speaks for happiness -> supported
        "The lowered brow shows happiness [F2].",  # AU4: anger/sadness/fear, not happiness
        "The voice is high [V9].",  # V9 does not exist -> hallucinated, unsupported
        "Overall the person is happy.",  # cites nothing -> unsupported
    ]
    g = M.grounding(expl, _cues(), "happily surprised")
    # supported 2 of 5 = 0.4; cited ids F1, F1, F2, V9 -> 1 missing of 4 = 0.25
    assert g["grounded_share"] == pytest.approx(0.4)
    assert g["hallucinated_rate"] == pytest.approx(0.25)
    # dominant of "happily surprised" is surprise, never named -> 0
    assert g["label_agreement"] == 0.0
    assert M.grounding(expl, _cues(), "happy")["label_agreement"] == 1.0
    assert M.cited_ids("x [F1, V2][S3] and [F1]") == ["F1", "V2", "S3"]


def test_mme_emotion_steps_by_hand():
    steps = [
        "A smile appears [F1].",  # exists, no contradiction -> 1
        "The brow is lowered, so she is happy [F2].",  # AU4 only negative emotions vs happy -> 0
        "The voice is loud [V7].",  # V7 missing -> 0
        "Therefore her emotional state is happiness.",  # final: happiness == gold -> 1
    ]
    s = M.mme_emotion(steps, _cues(), "happiness")
    # recognition 1; reasoning = (1 + 0 + 0)/3 = 1/3; CoT = 0.5*1 + 0.5*(1/3) = 2/3
    assert s["recognition"] == 1.0
    assert s["reasoning"] == pytest.approx(1 / 3)
    assert s["cot"] == pytest.approx(2 / 3)
    # one step only: reasoning 0 as in the reference code; wrong label -> recognition 0
    assert M.mme_emotion(["She is sad."], {}, "happiness") == {
        "recognition": 0.0,
        "reasoning": 0.0,
        "cot": 0.0,
        "steps": 1,
    }


def test_calibration_ece_by_hand():
    conf = [0.95, 0.85, 0.65, 0.62, 0.3]
    correct = [1, 0, 1, 1, 0]
    c = M.calibration(conf, correct, bins=10)
    # bins: (0.9,1]: {0.95 ok} |1-0.95|=0.05; (0.8,0.9]: {0.85 wrong} 0.85;
    # (0.6,0.7]: {0.65,0.62 both ok} acc 1 conf 0.635 -> 0.365; (0.2,0.3]: {0.3 wrong} 0.3
    # ECE = (1*0.05 + 1*0.85 + 2*0.365 + 1*0.3)/5 = 1.93/5 = 0.386
    assert c["ece"] == pytest.approx(0.386)
    assert [b["count"] for b in c["curve"]] == [1, 2, 1, 1]
    assert M.calibration([1.0, 0.0], [1, 0], bins=10)["ece"] == pytest.approx(0.0)


def test_ccc_by_hand():
    x, y = [1.0, 2.0, 3.0], [2.0, 3.0, 4.0]
    # means 2 and 3; s_xy = (1+0+1)/3 = 2/3; s_x^2 = s_y^2 = 2/3; (mx-my)^2 = 1
    # CCC = 2*(2/3)/(2/3+2/3+1) = (4/3)/(7/3) = 4/7
    assert M.ccc(x, y) == pytest.approx(4 / 7)
    assert M.ccc(x, x) == pytest.approx(1.0)
    assert math.isnan(M.ccc([0.5], [0.5]))


def test_cosine_and_clue_coverage_by_hand():
    assert M.cosine([1, 0], [1, 1]) == pytest.approx(1 / math.sqrt(2))
    ref = np.array([[1, 0], [0, 1]])
    exp = np.array([[1, 0]])
    # clue 1 best cos 1, clue 2 best cos 0 -> mean 0.5
    assert M.clue_coverage(ref, exp) == pytest.approx(0.5)


def test_bootstrap_is_seeded_and_brackets_the_value():
    values = np.array([0, 1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=float)
    a = M.bootstrap_ci(len(values), lambda idx: values[idx].mean(), resamples=500, seed=3)
    b = M.bootstrap_ci(len(values), lambda idx: values[idx].mean(), resamples=500, seed=3)
    assert a == b
    assert a["value"] == pytest.approx(0.7)
    assert 0.0 <= a["lo"] <= 0.7 <= a["hi"] <= 1.0 and a["lo"] < a["hi"]
    # a constant statistic has a zero-width interval
    c = M.bootstrap_ci(5, lambda idx: 1.0, resamples=50)
    assert c["lo"] == c["hi"] == 1.0


def test_emer_reasons_recover_their_gold_labels(emer_csv):
    """Real annotator text: the conclusion's labels, mapped onto the wheel, agree with EMER's
    gold label for most rows (measured 0.93 basic accuracy, open-vocabulary F 0.92)."""
    rows = list(csv.DictReader(emer_csv.open(encoding="utf-8")))
    assert len(rows) == 98
    gold = [[r["emotions"]] for r in rows]
    pred = [M.extract_labels(r["reasons"]) for r in rows]
    ov = M.open_vocab(gold, pred)
    assert ov["recall"] > 0.9 and ov["precision"] > 0.8
    rec = M.recognition([r["emotions"] for r in rows], [p[0] if p else None for p in pred])
    assert rec["basic_accuracy"] > 0.85
    # a reason scored against another row's gold does much worse: the metric can fail
    shifted = M.open_vocab(gold, pred[1:] + pred[:1])
    assert shifted["f1"] < ov["f1"] - 0.3


def test_mme_final_step_uses_the_compound_dominant():
    # "happily surprised" is surprise-dominant: right for gold surprise, wrong for happiness
    step = ["Therefore her emotional state is happily surprised."]
    assert M.mme_emotion(step, {}, "surprise")["recognition"] == 1.0
    assert M.mme_emotion(step, {}, "happiness")["recognition"] == 0.0
