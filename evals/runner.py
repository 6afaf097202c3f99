"""Run the analysis over a dataset, score every sample and write ``results.json`` + the report.

The dataset's clips are analysed by ``agent.batch.run_batch`` into ``out/clips/`` (one record
a clip, not stored in the user's analyses; resumable, pipelined, optionally parallel or on Ray),
then each sample is scored (recognition inputs, grounding, MME-Emotion steps, judge, embedding
similarity). Aggregates come with seeded
percentile-bootstrap intervals. ``robustness`` re-reasons each analysis with a modality group
left out (``agent.run.reason_again``: the same perception, the cues of that group removed) and
reports the change in every headline figure.
"""

from __future__ import annotations

import json
import math
import platform
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from affectlens.evals import metrics
from affectlens.evals.datasets import Dataset, Sample
from affectlens.settings import Settings
from affectlens.tools.evidence import BASIC_EMOTIONS as BASIC

# Robustness conditions -> the modalities ``without=`` removes.
CONDITIONS: dict[str, tuple[str, ...]] = {
    "no_audio": ("speech", "voice"),
    "no_video": ("face", "scene"),
    "no_transcript": ("speech",),
}
RESULTS_FILE = "results.json"
CLIPS_DIR = "clips"  # under the eval's out dir: run_batch's per-clip records, reused on a rerun

Progress = Callable[[str], None]


class EvalStopped(Exception):
    """``should_stop`` stopped the run before its next clip or score; the clips finished so far
    stay in ``out_dir/clips`` and a rerun into the same folder resumes from them."""


def score_sample(
    sample: Sample,
    result: Any,
    *,
    judge: Any = None,
    similarity: Any = None,
) -> dict[str, Any]:
    """Per-sample scores for one ``AnalysisResult`` (pure apart from the judge/embedding calls)."""
    gold = sample.labels[0]
    rec: dict[str, Any] = {
        "id": sample.id,
        "clip": str(sample.clip) if sample.clip else None,
        "gold": sample.labels,
        "gold_valence": sample.valence,
        "gold_arousal": sample.arousal,
    }
    reading = getattr(result, "reading", None)
    if reading is None:
        rec.update(ok=False, error=getattr(result, "error", None) or "no reading")
        return rec
    cues = {c.id: c for c in result.cues}
    label = reading.label or reading.dominant
    pred_basic = metrics.basic_of(reading.dominant) or metrics.basic_of(label)
    ground = metrics.grounding(reading.explanation, cues, label)
    cited = Counter(cues[c].modality for row in ground["rows"] for c in row["cited"] if c in cues)
    rec.update(
        ok=True,
        error=result.error,
        label=label,
        dominant=pred_basic,
        secondary=reading.secondary,
        confidence=reading.confidence,
        valence=reading.valence,
        arousal=reading.arousal,
        correct=pred_basic is not None and pred_basic == metrics.basic_of(gold),
        explanation=reading.explanation,
        grounding={k: v for k, v in ground.items() if k != "rows"},
        mme=metrics.mme_emotion(reading.explanation, cues, gold),
        cited_modalities=dict(cited),
        cue_modalities=dict(Counter(c.modality for c in result.cues)),
        modalities={m.modality: m.status for m in reading.modalities},
        verified=result.verification.grounded and bool(result.cues),
        timings=result.timings,
        models=result.models,
    )
    fused = getattr(result, "fusion", None)
    if fused is not None:  # the three decision rules on the same perception and LLM reading
        from affectlens.agent.fusion import decide

        # None when the LLM was told the fused decision (decision "fusion"): it named no
        # emotion of its own, so the rules can be compared only on runs with decision "llm".
        llm = fused.llm_dominant
        rec["fusion"] = {
            "probs": fused.probs,
            "top": fused.top,
            "llm": llm,
            "conflict": fused.conflict,
            "decisions": {d: decide(fused, llm, d)[0] for d in ("fusion", "llm", "hybrid")}
            if llm
            else None,
        }
    reference = sample.reference or " ".join(sample.clues)
    if judge is not None and reference:
        rec["judge"] = judge.score(
            " ".join(reading.explanation), reference, sample.labels, label
        ).model_dump()
    if similarity is not None and reference:
        rec["similarity"] = similarity.score(
            reading.explanation, sample.reference or "", sample.clues
        )
    return rec


def aggregate(records: list[dict], *, resamples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Every figure over the scored samples, headline figures with bootstrap 95% intervals."""
    ok = [r for r in records if r.get("ok")]
    out: dict[str, Any] = {"n": len(records), "scored": len(ok), "failed": len(records) - len(ok)}
    if not ok:
        return out
    gold = [r["gold"][0] for r in ok]
    pred = [r["label"] for r in ok]
    # the reading's dominant field decides the basic emotion, its label the compound class
    pred_basic = [r["dominant"] for r in ok]
    rec = metrics.recognition(gold, pred)
    gb = [metrics.basic_of(g) for g in gold]
    rec["basic_accuracy"] = metrics.accuracy(gb, pred_basic)
    rec["basic_macro_f1"] = metrics.macro_f1(gb, pred_basic)
    rec["basic_confusion"]["matrix"] = metrics.confusion_matrix(
        gb, pred_basic, rec["basic_confusion"]["labels"]
    )
    rec["basic_uar"] = metrics.uar(gb, pred_basic, [c for c in BASIC if c in set(gb)])
    rec["basic_per_class_recall"] = metrics.per_class_recall(
        gb, pred_basic, [c for c in BASIC if c in set(gb)]
    )
    out["recognition"] = rec
    fused = [
        (metrics.basic_of(r["gold"][0]), r["fusion"])
        for r in ok
        if r.get("fusion") and r["fusion"].get("decisions")
    ]
    if fused:  # fusion | llm | hybrid side by side on the rows where the LLM named its own
        out["decisions"] = {
            d: {
                "n": len(fused),
                "accuracy": metrics.accuracy(
                    [g for g, _ in fused], [f["decisions"][d] for _, f in fused]
                ),
                "uar": metrics.uar([g for g, _ in fused], [f["decisions"][d] for _, f in fused]),
            }
            for d in ("fusion", "llm", "hybrid")
        }
        out["conflicts"] = sum(bool(f["conflict"]) for _, f in fused)
    if any(r.get("fusion") for r in ok):
        out["seen_in_fit"] = sum(bool(r.get("seen_in_fit")) for r in ok)
    out["open_vocab"] = metrics.open_vocab(
        [r["gold"] for r in ok],
        [[r["label"], r["dominant"] or "", r["secondary"] or ""] for r in ok],
    )
    out["calibration"] = metrics.calibration(
        [r["confidence"] for r in ok], [r["correct"] for r in ok]
    )

    def mean_of(path: tuple[str, ...]) -> Callable[[list[dict]], float]:
        def stat(rs: list[dict]) -> float:
            vals = [_get(r, path) for r in rs]
            vals = [
                v for v in vals if v is not None and not (isinstance(v, float) and math.isnan(v))
            ]
            return float(np.mean(vals)) if vals else math.nan

        return stat

    headline: dict[str, Callable[[list[dict]], float]] = {
        "basic_accuracy": lambda rs: metrics.accuracy(
            [metrics.basic_of(r["gold"][0]) for r in rs], [r["dominant"] for r in rs]
        ),
        "basic_macro_f1": lambda rs: metrics.macro_f1(
            [metrics.basic_of(r["gold"][0]) for r in rs], [r["dominant"] for r in rs]
        ),
        "basic_uar": lambda rs: metrics.uar(
            [metrics.basic_of(r["gold"][0]) for r in rs], [r["dominant"] for r in rs]
        ),
        "open_vocab_f1": lambda rs: metrics.open_vocab(
            [r["gold"] for r in rs],
            [[r["label"], r["dominant"] or "", r["secondary"] or ""] for r in rs],
        )["f1"],
        "grounded_share": mean_of(("grounding", "grounded_share")),
        "hallucinated_rate": mean_of(("grounding", "hallucinated_rate")),
        "label_agreement": mean_of(("grounding", "label_agreement")),
        "mme_recognition": mean_of(("mme", "recognition")),
        "mme_reasoning": mean_of(("mme", "reasoning")),
        "mme_cot": mean_of(("mme", "cot")),
        "ece": lambda rs: metrics.calibration(
            [r["confidence"] for r in rs], [r["correct"] for r in rs]
        )["ece"],
    }
    if "compound_macro_f1" in rec:
        headline["compound_macro_f1"] = lambda rs: metrics.recognition(
            [r["gold"][0] for r in rs], [r["label"] for r in rs]
        ).get("compound_macro_f1", math.nan)
    judged = [r for r in ok if r.get("judge")]
    if judged:
        out["judge"] = {
            "n": len(judged),
            "failures": sum(not r["judge"]["ok"] for r in judged),
            "errors": [r["judge"]["error"] for r in judged if not r["judge"]["ok"]],
            **{k: judged[0]["judge"][k] for k in ("prompt", "prompt_sha256", "model")},
        }
        headline["judge_clue_overlap"] = mean_of(("judge", "scores", "clue_overlap"))
        headline["judge_label_overlap"] = mean_of(("judge", "scores", "label_overlap"))
    if any(r.get("similarity") for r in ok):
        headline["similarity_cosine"] = mean_of(("similarity", "cosine"))
        headline["similarity_clue_coverage"] = mean_of(("similarity", "clue_coverage"))

    def ccc_of(dim: str) -> Callable[[list[dict]], float]:
        def stat(rs: list[dict]) -> float:
            return metrics.ccc(
                [r[f"gold_{dim}"] for r in rs if r.get(f"gold_{dim}") is not None],
                [r[dim] for r in rs if r.get(f"gold_{dim}") is not None],
            )

        return stat

    for dim in ("valence", "arousal"):
        pairs = [r for r in ok if r.get(f"gold_{dim}") is not None]
        if len(pairs) >= 2:
            headline[f"{dim}_ccc"] = ccc_of(dim)

    def resampled(stat: Callable[[list[dict]], float]) -> Callable[[np.ndarray], float]:
        """The statistic over the records at bootstrap_ci's drawn indices."""
        return lambda idx: stat([ok[i] for i in idx])

    out["headline"] = {
        name: metrics.bootstrap_ci(len(ok), resampled(fn), resamples=resamples, seed=seed)
        for name, fn in headline.items()
    }
    cited: Counter[str] = Counter()
    for r in ok:
        cited.update(r.get("cited_modalities", {}))
    out["cited_modalities"] = dict(cited)
    return out


def run_eval(
    dataset: Dataset,
    settings: Settings,
    out_dir: str | Path,
    *,
    limit: int | None = None,
    robustness: bool = False,
    use_judge: bool = True,
    use_similarity: bool = True,
    resamples: int = 1000,
    seed: int = 0,
    progress: Progress | None = None,
    llm: Any = None,
    pipelined: bool = True,
    parallel: int = 1,
    ray: str | None = None,
    ray_workers: int = 2,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, Any]:
    """Evaluate ``dataset`` and write ``results.json`` and the report into ``out_dir``.

    The clips are analysed by ``agent.batch.run_batch`` into ``out_dir/clips/`` (one record a
    clip), so a rerun into the same folder reuses the clips already done with the same settings
    and only scores again; ``pipelined``, ``parallel``, ``ray`` and ``ray_workers`` are the
    batch's. ``should_stop()`` is asked before each clip and each score: True raises
    ``EvalStopped`` (the finished clips stay for the rerun)."""
    from affectlens.agent.run import reason_again
    from affectlens.evals.judge import Judge, Similarity
    from affectlens.evals.report import write_report

    # Reproducible: every call starts from the same saved system-turn state, so the same prompt
    # gives the same reading in every run and order (without re-evaluating the system turn).
    settings = settings.model_copy(update={"llm_prompt_cache": "prefix"})
    say = progress or (lambda _msg: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = dataset.head(limit)
    judge = Judge(settings) if use_judge else None
    similarity = Similarity(settings) if use_similarity else None
    started, t_run = datetime.now(UTC), time.perf_counter()
    clips, batch = _analyse_clips(
        data,
        settings,
        out / CLIPS_DIR,
        say,
        llm=llm,
        pipelined=pipelined,
        parallel=parallel,
        ray=ray,
        ray_workers=ray_workers,
        should_stop=should_stop,
    )

    records, results = [], []
    for i, (sample, clip) in enumerate(zip(data.samples, clips), 1):
        if should_stop is not None and should_stop():
            raise EvalStopped(f"stopped before scoring sample {i} of {len(data.samples)}")
        say(f"scoring {i}/{len(data.samples)} {sample.id}")
        t0 = time.perf_counter()
        result = clip.result if clip is not None else None
        if sample.clip is None:
            rec = {
                "id": sample.id,
                "gold": sample.labels,
                "ok": False,
                "error": "no clip (text-only sample)",
            }
        elif result is None:  # MediaError and anything else: recorded, the run goes on
            error = clip.error if clip is not None else None
            rec = {
                "id": sample.id,
                "clip": str(sample.clip),
                "gold": sample.labels,
                "ok": False,
                "error": f"{error.type}: {error.message}" if error else "not analysed",
            }
        else:
            try:
                rec = score_sample(sample, result, judge=judge, similarity=similarity)
            except Exception as exc:
                rec = {
                    "id": sample.id,
                    "clip": str(sample.clip),
                    "gold": sample.labels,
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                }
        # the clip's analysis (perception + reasoning, when it was done) plus its scoring
        rec["seconds"] = (clip.seconds if clip is not None else 0.0) + time.perf_counter() - t0
        rec["seen_in_fit"] = _seen_in_fit(sample, data.name)
        records.append(rec)
        results.append(result)

    report: dict[str, Any] = {
        "dataset": {
            "name": data.name,
            "source": str(dataset.source),
            "format": data.format,
            "samples": len(data.samples),
            "limit": limit,
        },
        "run": _run_info(settings, started, seed, resamples, judge, similarity, results),
        "metrics": aggregate(records, resamples=resamples, seed=seed),
        "samples": records,
    }
    report["run"]["clips"] = batch
    if robustness:
        report["robustness"] = _robustness(
            data,
            results,
            report["metrics"],
            settings,
            reason_again,
            judge,
            similarity,
            resamples,
            seed,
            say,
            llm,
        )
    report["run"]["seconds"] = time.perf_counter() - t_run
    (out / RESULTS_FILE).write_text(json.dumps(_jsonable(report), indent=2, ensure_ascii=False))
    write_report(out)
    return report


def _analyse_clips(
    data: Dataset, settings: Settings, folder: Path, say: Progress, **batch: Any
) -> tuple[list[Any], dict[str, Any]]:
    """Each sample's ``ClipRecord`` (None for a text-only sample) from ``run_batch`` into
    ``folder``, and what the batch did (clips analysed, reused, failed)."""
    from affectlens.agent import batch as bt

    n = sum(s.clip is not None for s in data.samples)
    done: dict[str, Any] = {"folder": folder.name, "analysed": 0, "reused": 0, "failed": 0}
    if not n:
        return [None] * len(data.samples), done
    items = bt.from_samples(data.samples, data.name)  # ids made file-safe and unique

    def on_start(todo: int, skipped: int) -> None:
        done["reused"] = skipped
        say(f"{skipped} of {n} clips reused from {folder} (same settings), {todo} to analyse")

    def on_clip(rec: Any, finished: int, todo: int) -> None:
        how = f"failed: {rec.error.type}: {rec.error.message}" if rec.error else "analysed"
        say(f"[{done['reused'] + finished}/{n}] {rec.id} {how} ({rec.seconds:.1f} s)")

    report = bt.run_batch(items, settings, folder, on_start=on_start, on_clip=on_clip, **batch)
    if report.interrupted:
        raise EvalStopped(
            f"stopped after {len(report.done) + len(report.failed)} clips; the finished ones "
            f"are in {folder}, and a rerun into the same folder resumes"
        )
    done.update(analysed=len(report.done) + len(report.failed), failed=len(report.failed))
    records = iter([bt.read_record(bt.record_path(folder, it.id)) for it in items])
    return [next(records) if s.clip is not None else None for s in data.samples], done


def _seen_in_fit(sample: Sample, dataset: str) -> bool:
    """Whether the shipped fusion/face calibration saw this sample's speaker (or the sample):
    its fused figures are then not held out, and the report says so."""
    from affectlens.agent.fusion import load_params

    speaker = sample.meta.get("speaker") or f"{dataset}-{sample.id}"
    return load_params().fitted_on.seen(sample.id, str(speaker))


def _robustness(
    data, results, full, settings, reason_again, judge, similarity, resamples, seed, say, llm
) -> dict[str, Any]:
    out: dict[str, Any] = {"conditions": {k: list(v) for k, v in CONDITIONS.items()}}
    base = full.get("headline", {})
    for name, without in CONDITIONS.items():
        records = []
        for sample, result in zip(data.samples, results):
            if result is None or result.reading is None:
                continue
            say(f"[{name}] {sample.id}")
            t0 = time.perf_counter()
            try:
                again = reason_again(result, settings, without=without, llm=llm)
                rec = score_sample(sample, again, judge=judge, similarity=similarity)
            except Exception as exc:
                rec = {
                    "id": sample.id,
                    "gold": sample.labels,
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            rec["seconds"] = time.perf_counter() - t0
            records.append(rec)
        agg = aggregate(records, resamples=resamples, seed=seed)
        delta = {
            k: v["value"] - base[k]["value"]
            for k, v in agg.get("headline", {}).items()
            if k in base and not math.isnan(v["value"]) and not math.isnan(base[k]["value"])
        }
        out[name] = {"metrics": agg, "delta": delta, "samples": records}
    return out


def _run_info(settings, started, seed, resamples, judge, similarity, results) -> dict[str, Any]:
    models: dict[str, set[str]] = {}
    for r in results:
        for role, model in (getattr(r, "models", None) or {}).items():
            models.setdefault(role, set()).add(model)
    info: dict[str, Any] = {
        "started": started.isoformat(),
        "seed": seed,
        "resamples": resamples,
        "settings": json.loads(settings.model_dump_json(exclude={"llm_api_key", "auth"})),
        "models": {k: sorted(v) for k, v in models.items()},
        "python": platform.python_version(),
        "git": _git_commit(),
    }
    if judge is not None:
        try:
            info["models"]["judge"] = [judge.model_id]
        except Exception as exc:
            info["models"]["judge"] = [f"unavailable: {exc}"]
        info["prompts"] = {"judge": judge.info}
    if similarity is not None:
        info["models"]["similarity"] = [similarity.model_id]
    return info


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=5,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _get(d: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(d, dict) or d.get(key) is None:
            return None
        d = d[key]
    return d


def _jsonable(value: Any) -> Any:
    """NaN -> None (strict JSON), numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value
