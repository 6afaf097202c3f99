"""Action-unit estimates from mediapipe's 478 face-mesh landmarks.

No action-unit model ships on PyPI, so the default backend reads AUs off the face's geometry:
each AU is one *measure* (a distance or height on the face, divided by the inter-ocular
distance so it does not depend on the face's size), compared with the same person's neutral
value and mapped to an intensity in [0, 1]::

    intensity = clip((direction * (measure - neutral) - dead_zone) / full_scale, 0, 1)

Pose: landmarks are used in 3D (mediapipe's z is on the x scale) and rotated into a face frame
(x: right eye centre -> left eye centre, y: subnasale -> forehead, orthogonalised), so heights
are measured along the face, not the image, and a tilted or turned head changes them less.

Neutral: for a clip, the median of the measure over the clip's face frames (most frames of a
clip are near-neutral; the median is robust to the few expressive ones and, unlike a low
percentile, works for measures that move both ways, e.g. brow height for AU1 and AU4), clamped
to ``POPULATION_NEUTRAL`` +- half the full scale so a face that smiles throughout still shows
AU12. For a single image (or fewer than ``MIN_BASELINE_FRAMES`` face frames) the population
value is used. See docs/face.md for how the constants were measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# mediapipe face-mesh indices (subject's right eye is on the image's left).
R_EYE = (33, 160, 158, 133, 153, 144)  # outer, upper x2, inner, lower x2
L_EYE = (263, 387, 385, 362, 380, 373)
R_BROW_INNER, L_BROW_INNER = (55, 107), (285, 336)
R_BROW_OUTER, L_BROW_OUTER = (46, 70), (276, 300)
R_LOWER_LID, L_LOWER_LID = 145, 374
R_CHEEK, L_CHEEK = 50, 280
MOUTH_R, MOUTH_L = 61, 291
UPPER_LIP_OUTER, LOWER_LIP_OUTER = 0, 17
UPPER_LIP_INNER, LOWER_LIP_INNER = 13, 14
SUBNASALE, FOREHEAD, CHIN = 2, 10, 152

MIN_BASELINE_FRAMES = 8


def face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Landmarks (N x 3, pixels) in the face frame, in inter-ocular units; and the IOD in px.

    Origin: midpoint of the two eye centres (each the mean of its corners). y points up the face.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    r_eye = (pts[R_EYE[0]] + pts[R_EYE[3]]) / 2
    l_eye = (pts[L_EYE[0]] + pts[L_EYE[3]]) / 2
    iod = float(np.linalg.norm(l_eye - r_eye))
    if iod < 1e-6:
        raise ValueError("degenerate landmarks: eyes coincide")
    x = (l_eye - r_eye) / iod
    up = pts[FOREHEAD] - pts[SUBNASALE]
    up = up - x * (up @ x)
    if np.linalg.norm(up) < 1e-6 * iod:
        raise ValueError("degenerate landmarks: no vertical face axis")
    y = up / np.linalg.norm(up)
    z = np.cross(x, y)
    rot = np.stack([x, y, z])
    return (pts - (r_eye + l_eye) / 2) @ rot.T / iod, iod


def _ear(p: np.ndarray, eye: tuple[int, ...]) -> float:
    """Eye aspect ratio: mean lid gap over eye width (Soukupova & Cech 2016)."""
    d = lambda a, b: float(np.linalg.norm(p[a] - p[b]))  # noqa: E731
    return (d(eye[1], eye[5]) + d(eye[2], eye[4])) / (2 * d(eye[0], eye[3]))


def measures(landmarks: np.ndarray) -> dict[str, float]:
    """The geometric measures the AUs are read from, in inter-ocular units (IOD = 1).

    Heights (``y``) are along the face's up axis from the eye line; positive = higher.
    """
    p, _ = face_frame(landmarks)
    y = lambda idx: float(np.mean(p[list(idx), 1]))  # noqa: E731
    d = lambda a, b: float(np.linalg.norm(p[a] - p[b]))  # noqa: E731
    brow_inner = (y(R_BROW_INNER) + y(L_BROW_INNER)) / 2
    brow_gap = abs(float(np.mean(p[list(L_BROW_INNER), 0]) - np.mean(p[list(R_BROW_INNER), 0])))
    corner_y = y((MOUTH_R, MOUTH_L))
    lip_mid_y = y((UPPER_LIP_OUTER, LOWER_LIP_OUTER))
    mouth_width = d(MOUTH_R, MOUTH_L)
    return {
        "brow_inner": brow_inner,
        "brow_outer": (y(R_BROW_OUTER) + y(L_BROW_OUTER)) / 2,
        # AU4 lowers the brows and draws them together: both terms shrink.
        "brow_lower": brow_inner + brow_gap,
        "eye_open": (_ear(p, R_EYE) + _ear(p, L_EYE)) / 2,
        # AU6 pushes the infraorbital skin (lower lid and cheek) up.
        "cheek": (y((R_LOWER_LID, L_LOWER_LID)) + y((R_CHEEK, L_CHEEK))) / 2,
        "corner_lift": corner_y - lip_mid_y,
        # AU12 pulls the corners up *and* out.
        "smile": (corner_y - lip_mid_y) + 0.5 * mouth_width,
        "lip_gap": d(UPPER_LIP_INNER, LOWER_LIP_INNER),
        "jaw": d(SUBNASALE, CHIN),
    }


@dataclass(frozen=True)
class AUSpec:
    """How one AU is read: which measure, which way, neutral value, change at intensity 1."""

    code: str
    name: str
    measure: str
    direction: int  # +1: the AU increases the measure; -1: it decreases it
    full_scale: float  # change of the measure (IOD units) that counts as intensity 1
    fixed_neutral: bool = False  # neutral is the same for everyone (closed lips)
    dead_zone: float = 0.0  # change ignored before the AU starts (another AU's side effect)


AU_SPECS: tuple[AUSpec, ...] = (
    AUSpec("AU01", "inner brow raiser", "brow_inner", +1, 0.08),
    AUSpec("AU02", "outer brow raiser", "brow_outer", +1, 0.08),
    AUSpec("AU04", "brow lowerer", "brow_lower", -1, 0.10),
    AUSpec("AU05", "upper lid raiser", "eye_open", +1, 0.10),
    AUSpec("AU06", "cheek raiser", "cheek", +1, 0.05),
    AUSpec("AU12", "lip corner puller", "smile", +1, 0.25),
    AUSpec("AU15", "lip corner depressor", "corner_lift", -1, 0.08),
    AUSpec("AU25", "lips part", "lip_gap", +1, 0.20, fixed_neutral=True),
    AUSpec("AU26", "jaw drop", "jaw", +1, 0.20),
    # A smile's cheek raise (AU6) narrows the eyes by ~0.06 EAR: not a closure.
    AUSpec("AU43", "eyes closed", "eye_open", -1, 0.15, dead_zone=0.06),
)
AU_NAMES: dict[str, str] = {s.code: s.name for s in AU_SPECS} | {"AU45": "blink"}

# Neutral values of each measure (IOD units) for single images. Measured (docs/face.md) on the
# only near-neutral faces in the test media: the frames of single_face.mp4 the facex CNN calls
# neutral and the median frame of WolfgangLanger_Pexels.mp4 (mouth measures: single_face.mp4's
# neutral frames and the closed-mouth anger photo). Two or three people: a rough prior, which
# is why clips use their own baseline. lip_gap: closed lips plus a small tolerance.
POPULATION_NEUTRAL: dict[str, float] = {
    "brow_inner": 0.29,
    "brow_outer": 0.26,
    "brow_lower": 0.75,
    "eye_open": 0.28,
    "cheek": -0.29,
    "corner_lift": 0.04,
    "smile": 0.40,
    "lip_gap": 0.03,
    "jaw": 1.14,
}


def baseline(per_frame: list[dict[str, float]]) -> dict[str, float]:
    """The neutral value of each measure for one face over a clip (see the module docstring)."""
    if len(per_frame) < MIN_BASELINE_FRAMES:
        return dict(POPULATION_NEUTRAL)
    out: dict[str, float] = {}
    tolerance = {s.measure: 0.5 * s.full_scale for s in AU_SPECS}
    for name, pop in POPULATION_NEUTRAL.items():
        med = float(np.median([m[name] for m in per_frame]))
        out[name] = float(np.clip(med, pop - tolerance[name], pop + tolerance[name]))
    out["lip_gap"] = POPULATION_NEUTRAL["lip_gap"]
    return out


def intensities(m: dict[str, float], neutral: dict[str, float]) -> dict[str, float]:
    """AU code -> intensity in [0, 1] for one face's measures against its neutral."""
    out: dict[str, float] = {}
    for s in AU_SPECS:
        ref = POPULATION_NEUTRAL[s.measure] if s.fixed_neutral else neutral[s.measure]
        value = (s.direction * (m[s.measure] - ref) - s.dead_zone) / s.full_scale
        out[s.code] = round(float(np.clip(value, 0.0, 1.0)), 3)
    return out
