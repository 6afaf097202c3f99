"""Scene tool: the real open_clip loading and matching path, with a tiny random CLIP.

No CLIP weights ship on PyPI and the hub is offline here, so the model is a small randomly
initialised open_clip architecture saved to a file and loaded back through
``create_model_and_transforms(settings.clip_model, pretrained=<file>)``, exactly as a user's
downloaded weights would be. Its scores are meaningless; the tests check the mechanics.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import PYFEAT

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from affectlens.settings import Settings  # noqa: E402
from affectlens.taxonomy import BASIC  # noqa: E402
from affectlens.tools.media import load  # noqa: E402
from affectlens.tools.scene import (  # noqa: E402
    CONTEXT_PROMPTS,
    KEY_FRAMES,
    NO_FRAMES,
    NO_WEIGHTS,
    TOP_K,
    key_frame_indices,
    match_scene,
)

TINY = "affectlens-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory) -> Path:
    """A tiny CLIP architecture registered with open_clip, random weights saved to a file."""
    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("clip")
    config = folder / f"{TINY}.json"
    config.write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(config)
    torch.manual_seed(0)
    weights = folder / "tiny_clip.pt"
    torch.save(open_clip.create_model(TINY).state_dict(), weights)
    return weights


@pytest.fixture(scope="module")
def pexels():
    return load(PYFEAT / "WolfgangLanger_Pexels.mp4", Settings())


def test_missing_without_weights(pexels):
    ev = match_scene(pexels, Settings(clip_pretrained=None))
    assert ev.status == "missing" and ev.reason == NO_WEIGHTS
    assert "clip_pretrained" in ev.reason and ev.frames == []


def test_tiny_clip_from_a_local_file(pexels, tiny_weights):
    settings = Settings(clip_model=TINY, clip_pretrained=str(tiny_weights))
    ev = match_scene(pexels, settings)
    assert ev.status == "ok", ev.reason
    assert ev.model == f"open_clip {TINY}" and "tiny_clip.pt" in ev.model_version
    assert ev.device == settings.resolved_device and ev.seconds > 0
    # a few key frames, evenly spread, first and last included
    assert len(ev.frames) == KEY_FRAMES
    assert ev.frames[0].t == pexels.frames[0].t and ev.frames[-1].t == pexels.frames[-1].t
    for frame in ev.frames:
        assert len(frame.emotions) == TOP_K and len(frame.contexts) == TOP_K
        assert {s.label for s in frame.emotions} <= set(BASIC)
        assert {s.label for s in frame.contexts} <= set(CONTEXT_PROMPTS)
        scores = [s.score for s in frame.emotions]
        assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-3
    # the clip-level list is the key frames' mean: its top score lies within theirs
    top = ev.emotion_top[0]
    per_frame = [next((s.score for s in f.emotions if s.label == top.label), 0) for f in ev.frames]
    assert min(per_frame) - 1e-3 <= top.score <= max(per_frame) + 1e-3
    assert len(ev.context_top) == TOP_K


def test_same_weights_same_scores(pexels, tiny_weights):
    settings = Settings(clip_model=TINY, clip_pretrained=str(tiny_weights))
    a, b = match_scene(pexels, settings), match_scene(pexels, settings)
    assert a.emotion_top == b.emotion_top and a.context_top == b.context_top
    assert b.seconds < a.seconds + 5  # the model is cached, not reloaded


def test_single_image(tiny_weights):
    settings = Settings(clip_model=TINY, clip_pretrained=str(tiny_weights))
    ev = match_scene(load(PYFEAT / "multi_face.jpg", settings), settings)
    assert ev.status == "ok" and [f.t for f in ev.frames] == [0.0]


def test_failures_are_reported_not_raised(pexels, tiny_weights):
    missing_file = Settings(clip_model=TINY, clip_pretrained=str(tiny_weights) + ".absent")
    ev = match_scene(pexels, missing_file)
    assert ev.status == "failed" and "absent" in ev.reason
    offline_tag = Settings(clip_model="ViT-B-32", clip_pretrained="laion2b_s34b_b79k")
    ev = match_scene(pexels, offline_tag)
    assert ev.status in ("failed", "ok")  # ok only where the hub weights are cached
    if ev.status == "failed":
        assert "laion2b_s34b_b79k" in ev.reason


def test_no_frames(pexels, tiny_weights):
    audio_only = pexels.window(0, 1)
    audio_only.frames = []
    settings = Settings(clip_model=TINY, clip_pretrained=str(tiny_weights))
    ev = match_scene(audio_only, settings)
    assert ev.status == "missing" and ev.reason == NO_FRAMES


@pytest.mark.parametrize(
    ("n", "expected"), [(0, []), (1, [0]), (3, [0, 1, 2]), (39, [0, 13, 25, 38])]
)
def test_key_frame_indices(n, expected):
    assert key_frame_indices(n) == expected
