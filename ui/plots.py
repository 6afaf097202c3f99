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
    ax.axhline(0, color="#bbb", lw=0.8)
    ax.axvline(0, color="#bbb", lw=0.8)
    ax.add_patch(Circle((0, 0), 1.0, fill=False, color="#ccc", lw=0.8))
    for name, (v, a) in CIRCUMPLEX.items():
        ax.scatter([v], [a], s=14, color="#999")
        ax.annotate(
            name, (v, a), textcoords="offset points", xytext=(4, 3), fontsize=7, color="#777"
        )
    if reading is not None:
        ax.scatter(
            [reading.valence],
            [reading.arousal],
            s=80 + 220 * reading.confidence,
            color="#e4572e",
            edgecolor="black",
            zorder=5,
        )
        ax.annotate(
            reading.label,
            (reading.valence, reading.arousal),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=9,
            weight="bold",
            zorder=6,
        )
    ax.set_xlabel("valence", fontsize=8)
    ax.set_ylabel("arousal", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return fig


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
            ax_au.legend(fontsize=7, loc="upper right", ncol=_TOP_AUS)
        if exprs:
            ax_expr.legend(fontsize=7, loc="upper right", ncol=_TOP_EXPRESSIONS)
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
        ax_voice.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right")
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
