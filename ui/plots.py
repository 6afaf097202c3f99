"""Matplotlib figures for the result card: the circumplex point and the clip timeline.

Figures are built with the object API on the Agg canvas (no pyplot global state), so
concurrent sessions never draw into each other's figure.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
# Gradio switches the backend around every request (``matplotlib.use`` -> ``pyplot``); if a
# worker thread (e.g. a perception model) imports pyplot for the first time meanwhile, the
# request sees a half-initialised module and fails. Importing it here, once, rules that out.
import matplotlib.pyplot  # noqa: E402, F401
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402
from matplotlib.transforms import Bbox  # noqa: E402

from affectlens.agent.schemas import AnalysisResult, EmotionReading  # noqa: E402
from affectlens.taxonomy import CIRCUMPLEX  # noqa: E402

# One colour per modality, shared by the timeline, the chips and the legend.
MODALITY_COLOURS = {"face": "#e4572e", "speech": "#4c78a8", "voice": "#54a24b", "scene": "#b279a2"}
_TOP_AUS = 5
_TOP_EXPRESSIONS = 4


def circumplex(reading: EmotionReading | None) -> Figure:
    """Valence (x) against arousal (y), basic-emotion prototypes as reference, the reading as a
    point whose size grows with confidence."""
    fig = Figure(figsize=(3.6, 3.6), dpi=100)
    ax = fig.add_subplot()
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.set_aspect("equal")
    ax.set_xticks([-1, -0.5, 0, 0.5, 1])
    ax.set_yticks([-1, -0.5, 0, 0.5, 1])
    ax.axhline(0, color="#bbb", lw=0.8)
    ax.axvline(0, color="#bbb", lw=0.8)
    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="#ccc", lw=0.8))
    ax.set_xlabel("valence", fontsize=8)
    ax.set_ylabel("arousal", fontsize=8)
    ax.tick_params(labelsize=7)
    names = {}
    for name, (v, a) in CIRCUMPLEX.items():
        ax.scatter([v], [a], s=14, color="#999")
        dx, dy, ha, va = _PROTOTYPE_LABEL.get(name, (4, 3, "left", "bottom"))
        names[name] = ax.annotate(
            name,
            (v, a),
            textcoords="offset points",
            xytext=(dx, dy),
            ha=ha,
            va=va,
            fontsize=7,
            color="#666",
            zorder=7,
        )
    fig.tight_layout()  # before placing: the layout moves the axes
    ax.apply_aspect()
    if reading is None:
        return fig
    size = 80 + 220 * reading.confidence
    ax.scatter(
        [reading.valence], [reading.arousal], s=size, color="#e4572e", edgecolor="black", zorder=5
    )
    label = ax.annotate(
        reading.label,
        (reading.valence, reading.arousal),
        textcoords="offset points",
        xytext=(0, 0),  # placed below
        fontsize=9,
        weight="bold",
        zorder=8,
        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
    )
    _place_labels(fig, ax, names, label, marker_box(ax, reading.valence, reading.arousal, size))
    return fig


def marker_box(ax, valence: float, arousal: float, size: float):
    """The reading marker's extent on the canvas (``size`` is scatter's area in points²)."""
    from matplotlib.transforms import Bbox

    x, y = ax.transData.transform((valence, arousal))
    r = (size**0.5 / 2 + 1) * ax.figure.dpi / 72  # radius plus the edge line, in pixels
    return Bbox.from_extents(x - r, y - r, x + r, y + r)


def _spots(gap: float) -> list[tuple[float, float, str, str]]:
    """Where a label may go around a point, ``gap`` points away: beside, above, below."""
    return [
        (gap, 0, "left", "center"),
        (-gap, 0, "right", "center"),
        (0, gap, "center", "bottom"),
        (0, -gap, "center", "top"),
        (gap, gap, "left", "bottom"),
        (-gap, gap, "right", "bottom"),
        (gap, -gap, "left", "top"),
        (-gap, -gap, "right", "top"),
    ]


def _place_labels(fig: Figure, ax, names: dict, label, marker) -> None:
    """Move every name the reading's marker would hide, then put the reading's label in the
    first spot around the marker that stays inside the axes and covers no other name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(fig).get_renderer()
    inside = ax.get_window_extent(renderer)

    def fits(text, avoid) -> bool:
        box = text.get_window_extent(renderer)
        within = inside.x0 <= box.x0 and box.x1 <= inside.x1 and box.y0 >= inside.y0
        return within and box.y1 <= inside.y1 and not any(box.overlaps(b) for b in avoid)

    def settle(text, spots, avoid) -> None:
        first = (*text.xyann, text.get_ha(), text.get_va())
        for dx, dy, ha, va in [first, *spots]:
            text.xyann = (dx, dy)
            text.set_ha(ha)
            text.set_va(va)
            if fits(text, avoid):
                return
        text.xyann, (ha, va) = first[:2], first[2:]  # no free spot: where it was
        text.set_ha(ha)
        text.set_va(va)

    radius = (marker.width / 2) * 72 / fig.dpi  # in points
    placed: list[Bbox] = []
    for text in names.values():
        if text.get_window_extent(renderer).overlaps(marker):  # past the marker, any side
            spots = [*_spots(4), *_spots(radius + 4), *_spots(2 * radius + 4)]
            settle(text, spots, [marker, *placed])
        placed.append(text.get_window_extent(renderer))
    gap = radius + 3
    label.xyann = (0, gap)
    label.set_ha("center")
    label.set_va("bottom")
    settle(label, _spots(gap), [marker, *placed])


# where each prototype's name goes (offset in points, alignment): "anger" above and "fear"
# to the left, so the two neighbours do not overlap; "neutral" below right of its point
_PROTOTYPE_LABEL = {
    "anger": (0, 4, "center", "bottom"),
    "fear": (-4, 0, "right", "center"),
    "disgust": (-4, 0, "right", "center"),
    "sadness": (-4, 0, "right", "center"),
    "happiness": (0, -4, "center", "top"),
    "surprise": (0, 4, "center", "bottom"),
    "neutral": (4, -3, "left", "top"),
}


def _top(series: dict[str, list[float]], n: int) -> list[str]:
    return sorted(series, key=lambda k: max(series[k], default=0.0), reverse=True)[:n]


def timeline(result: AnalysisResult) -> Figure:
    """Rows aligned on the clip's time axis: AU intensities, expression probabilities, pitch and
    loudness, transcript segments; the cues the explanation cites are shaded on every row."""
    duration = max(result.media.duration_s, 0.1)
    cited = cited_cues(result)
    fig = Figure(figsize=(9, 6.8), dpi=100)
    axes = fig.subplots(
        5, 1, sharex=True, gridspec_kw={"height_ratios": [2, 2, 2, 1.1, 0.5 + 0.25 * len(cited)]}
    )
    ax_au, ax_expr, ax_voice, ax_text, ax_cues = axes

    face = result.face
    if face is not None and face.status == "ok" and face.frames:
        times = [f.t for f in face.frames]
        aus: dict[str, list[float]] = {}
        exprs: dict[str, list[float]] = {}
        for f in face.frames:
            for k in f.aus:
                aus.setdefault(k, [])
            for k in f.expressions:
                exprs.setdefault(k, [])
        for f in face.frames:
            for k in aus:
                aus[k].append(f.aus.get(k, float("nan")))
            for k in exprs:
                exprs[k].append(f.expressions.get(k, float("nan")))
        for k in _top(aus, _TOP_AUS):
            ax_au.plot(times, aus[k], lw=1.3, label=k)
        for k in _top(exprs, _TOP_EXPRESSIONS):
            ax_expr.plot(times, exprs[k], lw=1.3, label=k)
        if aus:
            _legend_above(ax_au, ncol=_TOP_AUS)
        if exprs:
            _legend_above(ax_expr, ncol=_TOP_EXPRESSIONS)
    else:
        _empty(ax_au, _why(face, "face"))
        _empty(ax_expr, _why(face, "face"))
    ax_au.set_ylabel("AU intensity", fontsize=8)
    ax_au.set_ylim(0, 1.05)
    ax_expr.set_ylabel("expression p", fontsize=8)
    ax_expr.set_ylim(0, 1.05)

    voice = result.voice
    windows = [w for w in (voice.windows if voice else []) if w.pitch_hz or w.loudness]
    if voice is not None and voice.status == "ok" and windows:
        mids = [(w.start + w.end) / 2 for w in windows]
        ax_voice.plot(
            mids,
            [w.pitch_hz or float("nan") for w in windows],
            color="#54a24b",
            marker=".",
            lw=1.3,
            label="pitch (Hz)",
        )
        ax_voice.set_ylabel("pitch Hz", fontsize=8)
        ax_loud = ax_voice.twinx()
        ax_loud.plot(
            mids,
            [w.loudness or float("nan") for w in windows],
            color="#888",
            lw=1.0,
            ls="--",
            label="loudness (sone)",
        )
        ax_loud.set_ylabel("loudness", fontsize=8)
        ax_loud.tick_params(labelsize=7)
        lines = ax_voice.get_lines() + ax_loud.get_lines()
        _legend_above(ax_voice, lines, ncol=2)
    else:
        _empty(ax_voice, _why(voice, "voice"))
        ax_voice.set_ylabel("voice", fontsize=8)

    speech = result.speech
    ax_text.set_ylim(0, 1)
    ax_text.set_yticks([])
    ax_text.set_ylabel("speech", fontsize=8)
    if speech is not None and speech.status == "ok" and speech.segments:
        for i, seg in enumerate(speech.segments):
            y = 0.15 if i % 2 else 0.55
            ax_text.broken_barh(
                [(seg.start, max(seg.end - seg.start, 0.05))], (y, 0.3), color="#4c78a8", alpha=0.25
            )
            text = seg.text.strip()
            ax_text.text(
                seg.start + 0.05,
                y + 0.15,
                text[:40] + ("…" if len(text) > 40 else ""),
                fontsize=6.5,
                va="center",
                clip_on=True,
            )
    else:
        _empty(ax_text, _why(speech, "speech"))

    # the cited cues: one lane each, and a faint band on the measurement rows
    ax_cues.set_ylim(-0.5, max(len(cited), 1) - 0.5)
    ax_cues.set_yticks([])
    ax_cues.invert_yaxis()
    ax_cues.set_ylabel("cited", fontsize=8)
    for lane, cue in enumerate(cited):
        colour = MODALITY_COLOURS.get(cue.modality, "#999")
        width = max(cue.end - cue.start, duration / 150)
        ax_cues.broken_barh([(cue.start, width)], (lane - 0.35, 0.7), color=colour, alpha=0.8)
        ax_cues.text(
            cue.start + duration / 200,
            lane,
            f"{cue.id} {cue.name}"[:24],
            fontsize=7,
            va="center",
            color="black",
            weight="bold",
            clip_on=True,
        )
        for ax in axes[:4]:
            ax.axvspan(cue.start, cue.start + width, color=colour, alpha=0.06, lw=0)
    if not cited:
        _empty(ax_cues, "the explanation cites no cue")
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25)
    ax_cues.set_xlim(0, duration)
    ax_cues.set_xlabel("time in the clip (s)", fontsize=8)
    fig.tight_layout()
    return fig


def _legend_above(ax, lines=None, ncol: int = 4) -> None:
    """The panel's legend in the gap above it, right-aligned and frameless: on the panel it
    would sit on the lines it names."""
    lines = lines if lines is not None else ax.get_lines()
    ax.legend(
        lines,
        [ln.get_label() for ln in lines],
        fontsize=7,
        loc="lower right",
        bbox_to_anchor=(1.0, 1.0),
        ncol=ncol,
        frameon=False,
        borderaxespad=0.1,
        handlelength=1.5,
    )


def _why(evidence, name: str) -> str:
    if evidence is None:
        return f"no {name} evidence"
    if evidence.status != "ok":
        return f"{name}: {evidence.status}" + (f" ({evidence.reason})" if evidence.reason else "")
    return f"{name}: nothing to plot"


def _empty(ax, message: str) -> None:
    ax.text(
        0.5,
        0.5,
        message[:90],
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=8,
        color="#888",
    )


def cited_cues(result: AnalysisResult):
    """The cues the explanation cites, in citation order (unknown ids skipped)."""
    from affectlens.agent.verify import cited_ids

    by_id = {c.id: c for c in result.cues}
    seen: list[str] = []
    for sentence in result.reading.explanation if result.reading else []:
        for i in cited_ids(sentence):
            if i in by_id and i not in seen:
                seen.append(i)
    return [by_id[i] for i in seen]
