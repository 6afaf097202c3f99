"""Dataset loading: the real manifest in the repo, EMER's CSV, a MELD-format CSV, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affectlens.evals.datasets import DatasetError, load_dataset, load_meld, split_labels

ROOT = Path(__file__).parents[1]


def test_pyfeat_faces_manifest_points_at_real_files():
    ds = load_dataset(ROOT / "evals" / "datasets" / "pyfeat-faces")
    assert ds.format == "manifest" and len(ds.samples) == 5
    assert all(s.clip.is_file() for s in ds.samples)
    labels = {s.clip.name: s.labels for s in ds.samples}
    assert labels["0-f1-su-ph.jpg"] == ["surprise"]
    assert labels["45-m7-di-ph.jpg"] == ["disgust"]
    assert ds.head(2).samples == ds.samples[:2]


def test_emer_csv_is_text_only_with_references(emer_csv):
    ds = load_dataset(emer_csv)
    assert ds.format == "emer" and len(ds.samples) == 98
    first = ds.samples[0]
    assert first.id == "sample_00000648" and first.labels == ["angry"] and first.clip is None
    assert first.reference.endswith("his emotional state is anger.")
    assert first.clues[-1] == "Therefore, it is inferred that his emotional state is anger."


def test_meld_csv(tmp_path):
    csv_text = (
        "Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,"
        "StartTime,EndTime\n"
        '1,"Oh my God, he\'s lost it.",Monica,surprise,negative,3,7,2,5,00:14:38,00:14:40\n'
        "2,Okay.,Ross,neutral,neutral,3,8,2,5,00:14:41,00:14:42\n"
    )
    (tmp_path / "dev_sent_emo.csv").write_text(csv_text)
    ds = load_dataset(tmp_path / "dev_sent_emo.csv")
    assert ds.format == "meld"
    assert [s.id for s in ds.samples] == ["dia3_utt7", "dia3_utt8"]
    assert ds.samples[0].clip == (tmp_path / "dia3_utt7.mp4").resolve()
    assert ds.samples[0].labels == ["surprise"] and ds.samples[0].meta["Sentiment"] == "negative"
    other = load_meld(tmp_path / "dev_sent_emo.csv", clip_dir=tmp_path / "clips")
    assert other.samples[1].clip.parent == (tmp_path / "clips").resolve()


def test_manifest_csv_and_label_strings(tmp_path):
    (tmp_path / "manifest.csv").write_text(
        'clip,labels,valence,arousal\na.mp4,"happy, surprised",0.5,0.2\n'
    )
    ds = load_dataset(tmp_path)
    assert ds.samples[0].labels == ["happy", "surprised"]
    assert ds.samples[0].valence == 0.5 and ds.samples[0].clip == (tmp_path / "a.mp4").resolve()
    assert split_labels("['grateful', 'shy']") == ["grateful", "shy"]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"labels": ["happy"]}, "no 'clip'"),
        ({"clip": "a.mp4", "labels": []}, "labels"),
        ({"clip": "a.mp4", "labels": ["sad"], "valence": 3}, "valence"),
    ],
)
def test_bad_rows_raise_typed_errors(tmp_path, row, message):
    (tmp_path / "manifest.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DatasetError, match=message):
        load_dataset(tmp_path)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(DatasetError, match="no such"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no manifest"):
        load_dataset(tmp_path)
    (tmp_path / "manifest.jsonl").write_text("{not json\n")
    with pytest.raises(DatasetError, match="not JSON"):
        load_dataset(tmp_path)
