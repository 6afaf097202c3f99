"""Clips per minute of `affectlens batch`, sequential against pipelined, on the same real clips.

Each mode runs in a fresh process: one warm-up clip first (model loads, knowledge index, the
LLM's first prompt), then the clips, timed; the two runs' readings are then compared clip by
clip (label, dominant, secondary, cue texts, explanation)::

    HF_HUB_OFFLINE=1 python scripts/bench_batch.py --out /tmp/bench-batch \\
        tests/data/cremad/*.flv "$PYFEAT/single_face.mp4" "$PYFEAT/face_noface.mov"

Prints one JSON object: per mode run the clips, seconds, clips/min and the 1-minute load
average before and after; then ``identical`` and the clips whose readings differ.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's affectlens, not an installed one
MODES = ("sequential", "pipelined")


def child(mode: str, warm_up: str, clips: list[str], out: Path) -> dict:
    from affectlens.agent import batch as bt
    from affectlens.settings import Settings

    settings = Settings(data_dir=out / "data")
    # each mode warms up in its own folder (a shared one would be skipped as done)
    bt.run_batch(bt.discover(warm_up), settings, out / f"warm-up-{mode}", pipelined=False)
    items = bt.from_paths(clips)
    load = os.getloadavg()[0]
    report = bt.run_batch(items, settings, out / mode, pipelined=mode == "pipelined")
    return {
        "mode": mode,
        "clips": len(report.done) + len(report.failed),
        "failed": report.failed,
        "seconds": round(report.seconds, 1),
        "clips_per_min": round(report.clips_per_minute, 2),
        "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }


def reading(path: Path) -> dict:
    rec = json.loads(path.read_text())
    result = rec.get("result") or {}
    r = result.get("reading") or {}
    return {
        "label": r.get("label"),
        "dominant": r.get("dominant"),
        "secondary": r.get("secondary"),
        "cues": [c["text"] for c in result.get("cues") or []],
        "explanation": r.get("explanation"),
        "error": rec.get("error"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clips", nargs="+")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--warm-up", default=str(REPO / "tests/data/cremad/1002_DFA_ANG_XX.mp3"))
    ap.add_argument("--modes", default=",".join(MODES), help="Run only these (comma-separated)"
                    "; the comparison reads both modes' folders under --out.")  # fmt: skip
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.warm_up, args.clips, args.out)))
        return 0
    runs = []
    for mode in [m for m in MODES if m in args.modes.split(",")]:
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "--child", mode, "--out", str(args.out),
             "--warm-up", args.warm_up, *args.clips],
            cwd=REPO, capture_output=True, text=True, check=True,
        )  # fmt: skip
        runs.append({**json.loads(proc.stdout.strip().splitlines()[-1]),
                     "process_s": round(time.perf_counter() - t0, 1)})  # fmt: skip
    names = sorted(p.name for p in (args.out / MODES[0]).glob("*.json"))
    differ = [
        n for n in names if reading(args.out / MODES[0] / n) != reading(args.out / MODES[1] / n)
    ]
    print(json.dumps({"runs": runs, "identical": not differ, "differ": differ}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
