"""Face tool: faces, action units and expressions per sampled frame, summarised over time.

Backends (``settings.face_backend``):

- ``mediapipe`` (embedded default, offline): mediapipe's BlazeFace detectors find the faces,
  its 478-point face mesh gives landmarks, action units are read off the landmark geometry
  (``tools.face_geometry``), and the facex CNN (TFLite, run with ai-edge-litert) gives 7-class
  expression probabilities. All of it ships in PyPI wheels; it runs on the CPU.
- ``pyfeat``: py-feat 2.1.5 ``Detectorv2`` (RetinaFace + multitask AU/emotion model), the full
  learned AU set. Its weights come from the Hugging Face hub; without them the evidence says
  what to download.

Several faces: the dominant face (largest x most confident) is followed from frame to frame by
box overlap; ``FaceFrame.faces`` counts all faces found.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel

from affectlens.cache import model_cache
from affectlens.settings import Settings
from affectlens.taxonomy import to_basic
from affectlens.tools import face_geometry as geo
from affectlens.tools.evidence import (
    BASIC_EMOTIONS,
    AUEvent,
    Box,
    EmotionVote,
    FaceEvidence,
    FaceFrame,
)

if TYPE_CHECKING:
    from affectlens.tools.media import Frame, Media

# mediapipe 0.10.14 calls a protobuf API that protobuf 5 deprecates, once per graph: harmless.
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype", category=UserWarning)

MAX_FACES = 6  # faces counted per frame; more is a crowd, not a conversation
MIN_DETECTION_CONFIDENCE = 0.5
ACTIVE = 0.3  # AU intensity from which an AU counts as active (AUEvent)
BLINK_MAX_S = 0.5  # an eyes-closed span shorter than this is reported as AU45 (blink)
TRACK_IOU = 0.2  # box overlap that keeps following the same face
MESH_CROP = 2.0  # face-mesh input: a square of this many box sides around the face
FACEX_CROP = 1.1  # facex input: landmark box side x this (close to the Haar box it was trained on)
FACEX_SIZE = 200
PYFEAT_BATCH = 16  # frames per py-feat call (one clip's frames share a size)
# facex's output order (checked on the labelled py-feat photos, docs/face.md).
FACEX_CLASSES = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")

NO_FACE = "No face detected"
NO_FRAMES = "No video frames: the media has no picture"
PYFEAT_HINT = (
    "py-feat weights are not available offline: download the Hugging Face repos "
    "py-feat/retinaface_r34 and py-feat/face_multitask_v2 (into py-feat's feat/resources hub "
    "cache, with internet) or put face_multitask_v28.safetensors in settings.pyfeat_weights_dir"
)


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


# detection ----------------------------------------------------------------------------------
@dataclass
class _Detection:
    x: float
    y: float
    w: float
    h: float
    score: float

    def box(self) -> Box:
        return Box(x=self.x, y=self.y, w=self.w, h=self.h, confidence=round(self.score, 3))


def _iou(a: _Detection, b: _Detection) -> float:
    ix = max(0.0, min(a.x + a.w, b.x + b.w) - max(a.x, b.x))
    iy = max(0.0, min(a.y + a.h, b.y + b.h) - max(a.y, b.y))
    inter = ix * iy
    union = a.w * a.h + b.w * b.h - inter
    return inter / union if union > 0 else 0.0


def _merge(detections: list[_Detection]) -> list[_Detection]:
    """Non-maximum suppression over the short- and full-range detectors' boxes."""
    kept: list[_Detection] = []
    for det in sorted(detections, key=lambda d: d.score, reverse=True):
        if all(_iou(det, k) < 0.3 for k in kept):
            kept.append(det)
    return kept[:MAX_FACES]


def _dominant(faces: list[_Detection], previous: _Detection | None) -> _Detection:
    """The face overlapping the previous dominant one most; else the largest x most confident."""
    if previous is not None:
        best = max(faces, key=lambda f: _iou(f, previous))
        if _iou(best, previous) >= TRACK_IOU:
            return best
    return max(faces, key=lambda f: f.w * f.h * f.score)


class _Mediapipe:
    """The mediapipe graphs and the facex interpreter, loaded once; not thread-safe -> lock."""

    def __init__(self, facex_path: str) -> None:
        import mediapipe as mp
        from ai_edge_litert.interpreter import Interpreter

        solutions = mp.solutions
        # Short range: faces within ~2 m (close-ups); full range: smaller faces, groups.
        self.detectors = [
            solutions.face_detection.FaceDetection(
                model_selection=sel, min_detection_confidence=MIN_DETECTION_CONFIDENCE
            )
            for sel in (0, 1)
        ]
        # static_image_mode: sampled frames are ~0.5 s apart and are cropped per face, too far
        # apart for the mesh's own tracker.
        self.mesh = solutions.face_mesh.FaceMesh(
            static_image_mode=True,
            refine_landmarks=True,
            max_num_faces=2,
            min_detection_confidence=MIN_DETECTION_CONFIDENCE,
        )
        # One thread: the tools run concurrently, and on a busy 2-core CPU two XNNPACK threads
        # made this 40 ms model ten times slower (measured).
        self.facex = Interpreter(model_path=facex_path, num_threads=1)
        self.facex.allocate_tensors()
        self.lock = threading.Lock()

    def detect(self, image: np.ndarray) -> list[_Detection]:
        h, w = image.shape[:2]
        found: list[_Detection] = []
        for detector in self.detectors:
            for det in detector.process(image).detections or []:
                rb = det.location_data.relative_bounding_box
                x0, y0 = max(rb.xmin * w, 0.0), max(rb.ymin * h, 0.0)
                x1, y1 = min((rb.xmin + rb.width) * w, w), min((rb.ymin + rb.height) * h, h)
                if x1 - x0 > 4 and y1 - y0 > 4:
                    found.append(_Detection(x0, y0, x1 - x0, y1 - y0, float(det.score[0])))
        return _merge(found)

    def landmarks(self, image: np.ndarray, face: _Detection) -> np.ndarray | None:
        """478 x 3 landmarks in image pixels (z on the x scale) for one detected face."""
        import cv2

        h, w = image.shape[:2]
        side = MESH_CROP * max(face.w, face.h)
        cx, cy = face.x + face.w / 2, face.y + face.h / 2
        x0, y0 = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
        x1, y1 = int(min(cx + side / 2, w)), int(min(cy + side / 2, h))
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        if crop.shape[0] < 8 or crop.shape[1] < 8:
            return None
        scale = 256 / max(crop.shape[:2]) if max(crop.shape[:2]) < 256 else 1.0
        if scale != 1.0:  # small faces: the mesh's detector wants a face of some size
            crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        result = self.mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        ch, cw = crop.shape[:2]
        meshes = [
            np.array([[p.x * cw, p.y * ch, p.z * cw] for p in m.landmark]) / scale
            + np.array([x0, y0, 0.0])
            for m in result.multi_face_landmarks
        ]
        centre = np.array([cx, cy])
        return min(meshes, key=lambda m: np.linalg.norm(m[:, :2].mean(0) - centre))

    def expressions(self, image: np.ndarray, points: np.ndarray) -> dict[str, float]:
        """facex probabilities for the face the landmarks outline.

        Input as facex itself prepares it: a square grey face crop, resized to 200 x 200,
        scaled to [0, 1] and repeated over the three channels.
        """
        import cv2

        h, w = image.shape[:2]
        (x0, y0), (x1, y1) = points[:, :2].min(0), points[:, :2].max(0)
        side = FACEX_CROP * max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        a, b = int(max(cx - side / 2, 0)), int(max(cy - side / 2, 0))
        c, d = int(min(cx + side / 2, w)), int(min(cy + side / 2, h))
        if c - a < 8 or d - b < 8:
            return {}
        grey = cv2.cvtColor(np.ascontiguousarray(image[b:d, a:c]), cv2.COLOR_RGB2GRAY)
        grey = cv2.resize(grey, (FACEX_SIZE, FACEX_SIZE), interpolation=cv2.INTER_AREA)
        x = np.repeat(grey[None, :, :, None], 3, axis=3).astype(np.float32) / 255.0
        inp, out = self.facex.get_input_details()[0], self.facex.get_output_details()[0]
        self.facex.set_tensor(inp["index"], x)
        self.facex.invoke()
        probs = self.facex.get_tensor(out["index"])[0].astype(np.float64)
        probs = np.clip(probs, 0, None)
        probs = probs / probs.sum() if probs.sum() > 0 else np.full(len(probs), 1 / len(probs))
        return {name: round(float(p), 4) for name, p in zip(FACEX_CLASSES, probs)}


@model_cache(maxsize=2)
def mediapipe_models(facex_path: str) -> _Mediapipe:
    return _Mediapipe(facex_path)


# calibration --------------------------------------------------------------------------------
CALIBRATION_FILE = Path(__file__).with_name("face_calibration.json")
CAL_EPS = 1e-4  # probability floor before the log (frame probabilities are rounded to 4 places)


class FaceCalibration(BaseModel):
    """Temperature and per-class offsets for facex (docs/models/face-calibration.md):
    ``p_cal(c) = softmax_c(log max(p(c), CAL_EPS) / temperature + bias[c])``, fitted by
    ``scripts/fit_recognition.py``; ``fitted_on`` lists the rows and speakers it saw."""

    temperature: float = 1.0
    bias: dict[str, float] = {}
    fitted_on: dict[str, list[str]] = {}
    version: str = "uncalibrated"

    def apply(self, probs: dict[str, float]) -> dict[str, float]:
        z = np.array(
            [
                np.log(max(probs.get(c, 0.0), CAL_EPS)) / self.temperature + self.bias.get(c, 0.0)
                for c in BASIC_EMOTIONS
            ]
        )
        q = np.exp(z - z.max())
        q = q / q.sum()
        return {c: round(float(v), 4) for c, v in zip(BASIC_EMOTIONS, q)}


@lru_cache(maxsize=1)
def calibration() -> FaceCalibration:
    if CALIBRATION_FILE.is_file():
        return FaceCalibration.model_validate_json(CALIBRATION_FILE.read_text())
    return FaceCalibration()


def face_vote(ev: FaceEvidence, cal: FaceCalibration | None = None) -> EmotionVote | None:
    """The face as a witness: calibrated facex probabilities (py-feat's as they are), with
    reliability = share of sampled frames with a face."""
    if not ev.expression_mean or not ev.frames:
        return None
    seen = sum(f.faces > 0 for f in ev.frames) / len(ev.frames)
    if ev.backend == "mediapipe":
        cal = cal or calibration()
        return EmotionVote(
            probs=cal.apply(ev.expression_mean),
            reliability=round(seen, 4),
            model=f"facex + temperature/bias {cal.version}",
        )
    probs = {c: float(ev.expression_mean.get(c, 0.0)) for c in BASIC_EMOTIONS}
    total = sum(probs.values()) or 1.0
    return EmotionVote(
        probs={c: round(v / total, 4) for c, v in probs.items()},
        reliability=round(seen, 4),
        model=f"{ev.backend} (uncalibrated)",
    )


# summaries -----------------------------------------------------------------------------------
def au_events(frames: list[FaceFrame], *, single_image: bool = False) -> list[AUEvent]:
    """Spans where an AU stays at or above ``ACTIVE``: onset, peak and offset times.

    A frame without a face ends a span. Onset and offset are the first and last active sampled
    frames. An eyes-closed span shorter than ``BLINK_MAX_S`` in a clip is a blink (AU45).
    """
    codes = sorted({code for f in frames for code in f.aus})
    events: list[AUEvent] = []
    for code in codes:
        span: list[tuple[float, float]] = []
        for frame in [*frames, None]:
            value = frame.aus.get(code) if frame is not None else None
            if frame is not None and value is not None and value >= ACTIVE:
                span.append((frame.t, value))
                continue
            if span:
                onset, offset = span[0][0], span[-1][0]
                peak_t, peak_v = max(span, key=lambda s: s[1])
                name = code
                if code == "AU43" and not single_image and offset - onset < BLINK_MAX_S:
                    name = "AU45"
                events.append(
                    AUEvent(
                        au=name,
                        name=geo.AU_NAMES.get(name, name),
                        onset=onset,
                        peak=peak_t,
                        offset=offset,
                        peak_intensity=round(peak_v, 3),
                        mean_intensity=round(float(np.mean([v for _, v in span])), 3),
                    )
                )
                span = []
    return sorted(events, key=lambda e: (e.onset, e.au))


def _expression_summary(frames: list[FaceFrame]) -> tuple[dict[str, float], str | None]:
    rows = [f.expressions for f in frames if f.expressions]
    if not rows:
        return {}, None
    mean = {k: round(float(np.mean([r.get(k, 0.0) for r in rows])), 4) for k in rows[0]}
    return mean, max(mean, key=mean.__getitem__)


def _finish(ev: FaceEvidence, frames: list[FaceFrame], single_image: bool) -> FaceEvidence:
    ev.frames = frames
    ev.max_faces = max((f.faces for f in frames), default=0)
    if ev.max_faces == 0:
        ev.status, ev.reason = "missing", NO_FACE
        return ev
    ev.au_events = au_events(frames, single_image=single_image)
    ev.expression_mean, ev.dominant_expression = _expression_summary(frames)
    ev.vote = face_vote(ev)
    return ev


# backends ------------------------------------------------------------------------------------
def _analyze_mediapipe(frames: list[Frame], settings: Settings, single_image: bool) -> FaceEvidence:
    from affectlens.models import model_path

    ev = FaceEvidence(
        backend="mediapipe",
        model="mediapipe BlazeFace + FaceMesh (landmark AUs) + facex CNN",
        model_version=f"mediapipe {_version('mediapipe')}, facex {_version('facex')}",
        device="cpu",  # the mediapipe and TFLite wheels run on the CPU
    )
    try:
        models = mediapipe_models(str(model_path("facex", settings.model_dir)))
    except Exception as exc:  # missing package or model file: say which
        ev.status, ev.reason = "failed", f"face models could not be loaded: {exc}"
        return ev

    out: list[FaceFrame] = []
    points: dict[int, np.ndarray] = {}  # frame index -> dominant face's landmarks
    previous: _Detection | None = None
    with models.lock:
        for i, frame in enumerate(frames):
            image = np.ascontiguousarray(frame.image)
            # A detection counts as a face only when the face mesh finds one in it: the
            # detectors alone fire on face-like clouds and text (no_face.mp4).
            found = [
                (d, lm)
                for d in models.detect(image)
                if (lm := models.landmarks(image, d)) is not None
            ]
            ff = FaceFrame(t=frame.t, faces=len(found))
            previous = _dominant([d for d, _ in found], previous) if found else None
            if previous is not None:
                ff.box = previous.box()
                points[i] = lm = next(p for d, p in found if d is previous)
                ff.expressions = {
                    to_basic(k) or k: v for k, v in models.expressions(image, lm).items()
                }
            out.append(ff)

    measured = {}
    for i, lm in points.items():
        try:
            measured[i] = geo.measures(lm)
        except ValueError:  # degenerate mesh (eyes on one point): no AUs for that frame
            continue
    neutral = geo.baseline(list(measured.values()))
    for i, m in measured.items():
        out[i].aus = geo.intensities(m, neutral)
    return _finish(ev, out, single_image)


class _PyFeat:
    def __init__(self, device: str, weights: str | None) -> None:
        from feat.detector_v2 import Detectorv2

        self.detector = Detectorv2(device=device, identity_model=None, multitask_weights=weights)
        self.lock = threading.Lock()


@model_cache(maxsize=2)
def _pyfeat_model(device: str, weights: str | None) -> _PyFeat:
    return _PyFeat(device, weights)


def _analyze_pyfeat(frames: list[Frame], settings: Settings, single_image: bool) -> FaceEvidence:
    ev = FaceEvidence(
        backend="pyfeat",
        model="py-feat Detectorv2 (retinaface + face_multitask_v2)",
        model_version=f"py-feat {_version('py-feat')}",
        device=settings.resolved_device,
    )
    try:
        import feat  # noqa: F401
    except Exception as exc:
        ev.status, ev.reason = "failed", f"py-feat cannot be imported: {exc}"
        return ev
    weights = None
    if settings.pyfeat_weights_dir is not None:
        found = sorted(settings.pyfeat_weights_dir.glob("face_multitask*.safetensors"))
        weights = str(found[0]) if found else None
    try:
        model = _pyfeat_model(settings.resolved_device, weights)
    except Exception as exc:  # offline hub, missing file
        ev.status, ev.reason = "failed", f"{PYFEAT_HINT} ({type(exc).__name__}: {str(exc)[:160]})"
        return ev

    import torch

    out: list[FaceFrame] = []
    previous: _Detection | None = None
    with model.lock:
        for first in range(0, len(frames), PYFEAT_BATCH):
            chunk = frames[first : first + PYFEAT_BATCH]
            batch = torch.from_numpy(np.stack([f.image for f in chunk])).permute(0, 3, 1, 2)
            fex = model.detector.detect(
                batch, data_type="tensor", batch_size=len(chunk), progress_bar=False
            )
            au_cols, emo_cols = list(fex.au_columns), list(fex.emotion_columns)
            found = fex[fex["FaceRectX"].notna()]  # a frame without faces is one NaN row
            for j, frame in enumerate(chunk):
                rows = found[found["frame"] == j]
                ff = FaceFrame(t=frame.t, faces=len(rows))
                if len(rows):
                    dets = [
                        _Detection(
                            float(r.FaceRectX),
                            float(r.FaceRectY),
                            float(r.FaceRectWidth),
                            float(r.FaceRectHeight),
                            float(r.FaceScore),
                        )
                        for r in rows.itertuples()
                    ]
                    face = _dominant(dets, previous)
                    row = rows.iloc[dets.index(face)]
                    ff.box = face.box()
                    ff.aus = {c: round(float(np.clip(row[c], 0, 1)), 3) for c in au_cols}
                    probs = {to_basic(c.lower()) or c.lower(): float(row[c]) for c in emo_cols}
                    total = sum(probs.values()) or 1.0
                    ff.expressions = {k: round(v / total, 4) for k, v in probs.items()}
                    previous = face
                else:
                    previous = None
                out.append(ff)
    return _finish(ev, out, single_image)


def analyze_face(media: Media, settings: Settings) -> FaceEvidence:
    """Faces, AUs and expressions of the media's sampled frames; never raises."""
    start = time.perf_counter()
    backend = settings.face_backend
    if not media.frames:
        ev = FaceEvidence(backend=backend, status="missing", reason=NO_FRAMES)
    else:
        single_image = bool(media.info.is_image)
        run = _analyze_pyfeat if backend == "pyfeat" else _analyze_mediapipe
        try:
            ev = run(media.frames, settings, single_image)
        except Exception as exc:  # a tool never raises into the graph
            reason = f"{type(exc).__name__}: {exc}"
            ev = FaceEvidence(backend=backend, status="failed", reason=reason)
    return ev.finished(start)
