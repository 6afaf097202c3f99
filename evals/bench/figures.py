"""From runs to figures: warm medians, the scaling exponent and the issue's targets."""

from __future__ import annotations

import math
import statistics
from typing import Any

STAGES = ("probe", "face", "speech", "voice", "scene", "textualise", "retrieve", "reason",
          "verify", "store")  # fmt: skip
# Issue 17's targets (a warm 15 s clip at RTF <= 0.7, a warm 5 s clip in <= 8 s, a cold start
# <= 30 s, peak memory <= 6 GB), and the earlier issue's no-worse-than-linear scaling.
TARGETS = {
    "rtf_15s": 0.7,
    "warm_5s": 8.0,
    "peak_rss_mb": 6 * 1024,
    "cold_s": 30.0,
    "scaling_exponent": 1.1,
}


def median(values: list[float]) -> float | None:
    """The median of the measured values (``None`` ones skipped), to the millisecond."""
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of every figure over the warm runs."""
    if not runs:
        return {}
    stages = sorted(
        {k for r in runs for k in r["stages"]},
        key=lambda s: (STAGES.index(s) if s in STAGES else len(STAGES), s),
    )
    llm_keys = sorted({k for r in runs for k in r.get("llm", {})})
    return {
        "total_s": median([r["total_s"] for r in runs]),
        "rtf": median([r["rtf"] for r in runs]),
        "perceive_s": median([r["perceive_s"] for r in runs]),
        "stages": {s: median([r["stages"].get(s) for r in runs]) for s in stages},
        "llm": {k: median([r["llm"].get(k) for r in runs]) for k in llm_keys},
        "loadavg": median([r["loadavg"][0] for r in runs]),
    }


def scaling_exponent(points: list[tuple[float, float]]) -> float | None:
    """Slope of log(total seconds) against log(clip seconds): 1.0 = linear, < 1 = sublinear."""
    pts = [(math.log(d), math.log(t)) for d, t in points if d and t]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return round(sum((x - mx) * (y - my) for x, y in pts) / den, 3) if den else None


def _judged(name: str, value: float, **extra: Any) -> dict[str, Any]:
    """A figure beside its target (every target is a ceiling)."""
    return {"value": value, "target": TARGETS[name], "met": value <= TARGETS[name], **extra}


def check_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets for the warm embedded default, with the measured figure beside each."""
    ok = [r for r in rows if "warm" in r]
    out: dict[str, Any] = {}
    near15 = min(ok, key=lambda r: abs(r["length_s"] - 15), default=None)
    if near15 and near15["warm"].get("rtf") is not None:
        out["rtf_15s"] = _judged("rtf_15s", near15["warm"]["rtf"], clip_s=near15["length_s"])
    near5 = min(ok, key=lambda r: abs(r["length_s"] - 5), default=None)
    if near5 and near5 is not near15 and near5["warm"].get("total_s") is not None:
        out["warm_5s"] = _judged("warm_5s", near5["warm"]["total_s"], clip_s=near5["length_s"])
    peaks = [r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb")]
    if peaks:
        out["peak_rss_mb"] = _judged("peak_rss_mb", max(peaks))
    colds = [r["cold"]["process_s"] for r in ok if r.get("cold")]
    if colds:
        out["cold_s"] = _judged("cold_s", max(colds))
    exp = scaling_exponent(
        [(r["warm"]["duration_s"], r["warm"]["total_s"]) for r in ok if r["warm"].get("total_s")]
    )
    if exp is not None:
        out["scaling_exponent"] = _judged("scaling_exponent", exp)
    return out
