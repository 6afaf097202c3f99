"""Scene tool: zero-shot CLIP matching of a few key frames against emotion and context prompts.

What the picture as a whole suggests (a party, a funeral, an office; a happy-looking person),
as context for the face and voice. open_clip loads ``settings.clip_model`` with
``settings.clip_pretrained`` (a hub tag, which needs internet, or a local weights file). No CLIP
weights ship on PyPI, so with ``clip_pretrained`` unset the evidence is "missing".

Scores are a softmax over each prompt set (emotions, contexts) of the model's scaled cosine
similarities, per key frame; the clip-level lists average the key frames.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from affectlens.cache import model_cache
from affectlens.settings import Settings
from affectlens.taxonomy import ADJECTIVE, BASIC
from affectlens.tools.evidence import LabelScore, SceneEvidence, SceneFrame

if TYPE_CHECKING:
    from affectlens.tools.media import Media

KEY_FRAMES = 4  # evenly spread over the clip; scenes change slowly, every frame is wasted work
TOP_K = 3

EMOTION_PROMPTS: dict[str, str] = {
    e: (
        "a photo of a person with a neutral expression"
        if e == "neutral"
        else f"a photo of a {ADJECTIVE[e]} person"
    )
    for e in BASIC
}
CONTEXT_PROMPTS: dict[str, str] = {
    # places
    "office": "a photo of an office",
    "street": "a photo of a street",
    "home": "a photo of a living room at home",
    "party": "a photo of a party",
    "hospital": "a photo of a hospital",
    "classroom": "a photo of a classroom",
    "stage": "a photo of a person on a stage",
    "outdoors nature": "a photo of nature outdoors",
    "car": "a photo of the inside of a car",
    "restaurant": "a photo of a restaurant",
    # situations
    "argument": "a photo of people having an argument",
    "celebration": "a photo of a celebration",
    "interview": "a photo of an interview",
    "funeral": "a photo of a funeral",
    "sports": "a photo of people playing sports",
}

NO_WEIGHTS = (
    "No CLIP weights configured: set clip_pretrained to an open_clip pretrained tag "
    "(e.g. 'laion2b_s34b_b79k' for ViT-B-32; downloads, needs internet) or to a local weights "
    "file; no CLIP weights ship on PyPI"
)
NO_FRAMES = "No video frames: the media has no picture"


class _Clip:
    """An open_clip model with its preprocessing and the prompt embeddings, loaded once."""

    def __init__(self, model_name: str, pretrained: str, device: str) -> None:
        import open_clip
        import torch

        model, _, preprocess = open_clip.create_model_and_transforms(
            model_name, pretrained=pretrained, device=device
        )
        self.model = model.eval()
        self.preprocess = preprocess
        self.device = device
        tokenizer = open_clip.get_tokenizer(model_name)
        with torch.inference_mode():
            self.text = {
                kind: self._encode_text(tokenizer, list(prompts.values()))
                for kind, prompts in (("emotions", EMOTION_PROMPTS), ("contexts", CONTEXT_PROMPTS))
            }
            self.scale = float(self.model.logit_scale.exp())
        self.lock = threading.Lock()

    def _encode_text(self, tokenizer, prompts: list[str]):
        feats = self.model.encode_text(tokenizer(prompts).to(self.device))
        return feats / feats.norm(dim=-1, keepdim=True)

    def scores(self, images: list[np.ndarray]) -> dict[str, np.ndarray]:
        """kind -> (frames x prompts) softmax probabilities."""
        import torch
        from PIL import Image

        batch = torch.stack([self.preprocess(Image.fromarray(im)) for im in images]).to(self.device)
        with self.lock, torch.inference_mode():
            feats = self.model.encode_image(batch)
            feats = feats / feats.norm(dim=-1, keepdim=True)
            return {
                kind: (self.scale * feats @ text.T).softmax(dim=-1).float().cpu().numpy()
                for kind, text in self.text.items()
            }


@model_cache(maxsize=2)
def _load(model_name: str, pretrained: str, device: str) -> _Clip:
    return _Clip(model_name, pretrained, device)


def key_frame_indices(n: int, k: int = KEY_FRAMES) -> list[int]:
    """Up to ``k`` indices evenly spread over ``n`` frames, first and last included."""
    if n <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(k, n))})


def _top(labels: list[str], probs: np.ndarray, k: int = TOP_K) -> list[LabelScore]:
    order = np.argsort(probs)[::-1][:k]
    return [LabelScore(label=labels[i], score=round(float(probs[i]), 4)) for i in order]


def match_scene(media: Media, settings: Settings) -> SceneEvidence:
    """Emotion and context prompts matched against key frames; never raises."""
    start = time.perf_counter()
    pretrained = settings.clip_pretrained
    ev = SceneEvidence(model=f"open_clip {settings.clip_model}", device=settings.resolved_device)
    if not media.frames:
        ev.status, ev.reason = "missing", NO_FRAMES
    elif not pretrained:
        ev.status, ev.reason = "missing", NO_WEIGHTS
    else:
        try:
            _run(media, settings, pretrained, ev)
        except Exception as exc:  # offline hub, bad file, wrong architecture for the weights
            ev.status = "failed"
            where = f"CLIP {settings.clip_model} / {pretrained}"
            ev.reason = f"{where}: {type(exc).__name__}: {exc}"[:400]
    return ev.finished(start)


def _run(media: Media, settings: Settings, pretrained: str, ev: SceneEvidence) -> None:
    import open_clip

    clip = _load(settings.clip_model, pretrained, settings.resolved_device)
    weights = Path(pretrained).name if Path(pretrained).is_file() else pretrained
    ev.model_version = f"open_clip {open_clip.__version__}, weights {weights}"
    idx = key_frame_indices(len(media.frames))
    probs = clip.scores([np.ascontiguousarray(media.frames[i].image) for i in idx])
    emotions, contexts = list(EMOTION_PROMPTS), list(CONTEXT_PROMPTS)
    ev.frames = [
        SceneFrame(
            t=media.frames[i].t,
            emotions=_top(emotions, probs["emotions"][j]),
            contexts=_top(contexts, probs["contexts"][j]),
        )
        for j, i in enumerate(idx)
    ]
    ev.emotion_top = _top(emotions, probs["emotions"].mean(axis=0))
    ev.context_top = _top(contexts, probs["contexts"].mean(axis=0))
