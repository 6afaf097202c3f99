"""The analysis graph's steps. Each node takes the state (and the run context through
LangGraph's ``Runtime``) and returns a partial update; none of them holds model state."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import cast

from langgraph.runtime import Runtime

from affectlens.agent import fusion
from affectlens.agent import knowledge as kb
from affectlens.agent import reason as rs
from affectlens.agent import verify as vf
from affectlens.agent.registry import TOOLS
from affectlens.agent.schemas import (
    MODALITIES,
    AnalysisResult,
    Cue,
    DroppedClaim,
    Modality,
    VerificationReport,
)
from affectlens.agent.state import AnalysisState, RunContext
from affectlens.agent.textualise import (
    evidence_basic_distribution,
    fused_line,
    header,
    modality_status,
    textualise,
)
from affectlens.taxonomy import circumplex_point, compound_label
from affectlens.tools.evidence import (
    EmotionVote,
    FaceEvidence,
    SceneEvidence,
    SpeechEvidence,
    ToneEvidence,
)

NO_CUES = "no cue to ground the reading in: no modality produced usable evidence"
KNOWLEDGE_K = 2  # each entry costs ~60 prompt tokens (~0.8 s on 2 cores)


def probe(state: AnalysisState, runtime: Runtime[RunContext]) -> dict:
    """Decode the file once (raises affectlens.tools.media.MediaError for a bad file)."""
    from affectlens.tools.media import load

    settings = runtime.context.settings
    media = load(state["path"], settings)
    threading.Thread(
        target=_warm_up,
        args=(settings, runtime.context.llm is None),
        daemon=True,
        name="affectlens-warm-up",
    ).start()
    return {"media": media.info, "decoded": media}


def _warm_up(settings, llm: bool) -> None:
    """Load the embedder, the knowledge index and the LLM while the tools run (the imports
    alone take seconds); a failure here resurfaces, with its message, in the step that needs it."""
    try:
        kb.knowledge_collection(settings)
        if llm:
            from affectlens.agent.llm import get_llm

            get_llm(settings, role="reason")
    except Exception:  # noqa: BLE001
        pass


def applicable(state: AnalysisState, media) -> list[Modality]:
    """The tools whose stream exists and that were not left out."""
    skip = set(state.get("without") or ())
    has = {
        "audio": media is not None and media.audio is not None and media.audio.size > 0,
        "video": media is not None and bool(media.frames),
    }
    return [m for m in MODALITIES if m not in skip and has[TOOLS[m].needs]]


def run_tool(modality: Modality, state: AnalysisState, runtime: Runtime[RunContext]) -> dict:
    """One perception tool; any exception marks the modality failed instead of ending the run."""
    ev = TOOLS[modality].measure(state["decoded"], runtime.context.settings)
    model = f"{ev.model} {ev.model_version}".strip()
    return {"evidence": {modality: ev}, "models": {modality: model} if model else {}}


def make_tool_node(modality: Modality):
    def node(state: AnalysisState, runtime: Runtime[RunContext]) -> dict:
        return run_tool(modality, state, runtime)

    node.__name__ = modality
    return node


def textualise_node(state: AnalysisState, runtime: Runtime[RunContext]) -> dict:
    evidence = {m: (state.get("evidence") or {}).get(m) for m in MODALITIES}
    without = state.get("without") or []
    info = state["media"]
    cues = textualise(evidence, info.duration_s, without=without)
    votes: dict[str, EmotionVote] = {
        m: vote
        for m, e in evidence.items()
        if m not in without
        and e is not None
        and e.status == "ok"
        and (vote := getattr(e, "vote", None)) is not None
    }
    if (
        runtime.context.settings.text_emotion
        and "speech" not in without
        and runtime.context.llm is None
    ):  # an injected LLM (tests) means no model loads
        from affectlens.agent.text_emotion import text_witness  # the words as an emotion witness

        # the speech tool's evidence (agent.registry)
        speech = cast(SpeechEvidence | None, evidence.get("speech"))
        text_cues, text_vote = text_witness(speech, runtime.context.settings, cues)
        cues += text_cues
        if text_vote is not None:
            votes["speech"] = text_vote
    status = modality_status(evidence, without=without)
    kind = "photo" if info.is_image else ("clip" if info.has_video else "audio recording")
    fused = fusion.fuse(votes)
    return {
        "cues": cues,
        "status": status,
        "fusion": fused,
        "header": header(status, cues, 0.0 if info.is_image else info.duration_s, kind)
        + fused_line(fused),
        "evidence_dist": evidence_basic_distribution(
            {m: e for m, e in evidence.items() if m not in without}
        ),
    }


def retrieve_node(state: AnalysisState, runtime: Runtime[RunContext]) -> dict:
    """Knowledge entries closest to the cue sentences (none when there are no cues)."""
    hits = kb.retrieve(
        kb.cue_queries(state.get("cues") or []), runtime.context.settings, k=KNOWLEDGE_K
    )
    return {"knowledge": [h.id for h in hits], "knowledge_text": [h.text for h in hits]}


def _llm(runtime: Runtime[RunContext]):
    if runtime.context.llm is not None:
        return runtime.context.llm
    from affectlens.agent.llm import get_llm

    return get_llm(runtime.context.settings, role="reason")


def _key_frames(settings, media) -> dict:
    """``{"images": [...]}``: the scene tool's key frames, for a vision-language model
    (``llm_multimodal``); nothing otherwise (a text-only model sees the frames as cues)."""
    if not settings.llm_multimodal or media is None or not media.frames:
        return {}
    from affectlens.tools.scene import key_frame_indices

    return {"images": [media.frames[i].image for i in key_frame_indices(len(media.frames))]}


def reason_node(state: AnalysisState, runtime: Runtime[RunContext]) -> dict:
    """Ask the LLM; on a repair round the previous answer and the problems go with it."""
    settings = runtime.context.settings
    cues = state.get("cues") or []
    rounds = state.get("rounds", 0)
    problems = state.get("problems") or []
    previous = state.get("raw") if rounds and problems else None
    # Who decides (settings.decision): when the fused witnesses do, the LLM is told their
    # emotion in its first turn and explains it (its schema allows no other); asked to pick its
    # own first, the 1.5B argued another emotion on 5 of 5 bench cuts and each cost a repair
    # round. When the LLM decides (decision "llm", or "hybrid" below its threshold) it names
    # its own emotion and any disagreement with the fusion is reported (agent.fusion.decide).
    fused = state.get("fusion")
    dominant = fusion.decided(fused, settings.decision)
    # A repair round writes again only what the verifier found wrong (reason.redo_fields).
    redo = rs.redo_fields(previous, state.get("redo")) if previous is not None else None
    msgs = rs.messages(
        state.get("header", ""),
        cues,
        state.get("knowledge_text") or [],
        previous,
        problems if previous is not None else None,
        redo,
        dominant,
    )
    if not cues:
        return {
            "rounds": rounds + 1,
            "raw": None,
            "fixed": [],
            "error": None,
            "reading": rs.no_evidence(state["status"]),
        }
    llm = _llm(runtime)
    update: dict = {
        "rounds": rounds + 1,
        "models": {"reason": getattr(llm, "model_id", type(llm).__name__), **rs.prompt_versions()},
    }
    schema = rs.schema_for(cues, dominant)
    try:
        raw = llm.chat(
            msgs,
            rs.schema_for(cues, dominant, only=redo) if redo is not None else schema,
            max_tokens=settings.llm_max_tokens,
            **_key_frames(settings, state.get("decoded")),
        )
        if redo is not None and previous is not None:
            raw = rs.merged(previous, raw, schema)
    except Exception as exc:  # noqa: BLE001 - LLMError, backend down: keep the last reading
        update["error"] = f"reasoning failed: {type(exc).__name__}: {exc}"[:500]
        return update
    reading, fixes = rs.normalise(raw, cues, state["status"], state.get("evidence_dist") or {})
    reading, update["fusion"] = decide(
        reading, fused, settings.decision, explained=dominant is not None, cues=cues
    )
    update.update(raw=raw, reading=reading, fixed=fixes, error=None)
    return update


def decide(reading, fused, decision, *, explained: bool = False, cues: Sequence[Cue] = ()):
    """Apply ``settings.decision`` (agent.fusion.decide): the dominant emotion, its calibrated
    confidence, and the conflict with the LLM noted on the fused reading. ``explained``: the
    LLM was told the decided emotion and explained it, naming no pick of its own, so the fused
    reading keeps the LLM pick and conflict it had (none), valence and arousal are the fused
    distribution's circumplex point and the conflicts the cues of the witnesses that voted
    for another emotion (among ``cues``): evidence, not numbers the LLM was never asked for."""
    if fused is None or reading is None:
        return reading, fused
    before = fused
    dominant, conf, fused = fusion.decide(fused, reading.dominant, decision)
    if explained:
        fused = fused.model_copy(
            update={"llm_dominant": before.llm_dominant, "conflict": before.conflict}
        )
    if dominant is not None and dominant != reading.dominant:  # None only without a fusion
        secondary = reading.secondary if reading.secondary != dominant else None
        reading = reading.model_copy(
            update={
                "dominant": dominant,
                "secondary": secondary,
                "label": compound_label(dominant, secondary),
            }
        )
    update: dict = {"confidence": conf}
    if explained:
        update["valence"], update["arousal"] = circumplex_point(before.probs)
        update["conflicts"] = fusion.dissenting_cues(before, reading.dominant, cues)
    return reading.model_copy(update=update), fused


def verify_node(state: AnalysisState, runtime: Runtime[RunContext]) -> dict:
    """Check the reading; cite a verbatim quote to the cue that holds it (verify.recite); cut
    the claims that name what their cited cues do not show (verify.prune) at once when the cut
    is clean (settings.verify_prune_first), else after the last repair round, and list them in
    the report."""
    reading = state.get("reading")
    if reading is None:
        return {
            "problems": [],
            "verification": VerificationReport(
                rounds=state.get("rounds", 0), problems=[state.get("error") or "no reading"]
            ),
        }
    available = {m: st == "ok" for m, (st, _) in state["status"].items()}
    cues = state.get("cues") or []
    found = vf.check(reading, cues, available)
    messages = [p.message for p in found]
    fixed_now = [p for p in (state.get("problems") or []) if p not in messages]
    update: dict = {}
    dropped: list[DroppedClaim] = []
    settings = runtime.context.settings
    last_round = state.get("rounds", 0) > settings.verify_max_rounds

    def explaining(reading, explanation: list[str]):
        """``reading`` with this explanation and the modality accounts it gives."""
        return reading.model_copy(
            update={
                "explanation": explanation,
                "modalities": rs.accounts(explanation, cues, state["status"]),
            }
        )

    if any(p.kind == "content" for p in found):
        # a verbatim quote cited to the wrong cue: cite the cue that holds it (verify.recite)
        explanation, notes = vf.recite(reading.explanation, cues)
        if notes:
            reading = explaining(reading, explanation)
            found = vf.check(reading, cues, available)
            messages = [p.message for p in found]
            fixed_now += notes
            update["reading"] = reading
    if any(p.kind == "content" for p in found) and (last_round or settings.verify_prune_first):
        # Cut now rather than ask again when the cut is clean (settings.verify_prune_first):
        # every claim still reads as meant (verify.clean_cut) and nothing else is wrong.
        explanation, cut = vf.prune(reading, cues)
        pruned = explaining(reading, explanation)
        after = vf.check(pruned, cues, available)
        clean = settings.verify_prune_first and not after and vf.clean_cut(reading.explanation, cut)
        if last_round or clean:
            reading, dropped, found = pruned, cut, after
            messages = [p.message for p in found]
            update["reading"] = reading
    if last_round and any(p.kind == "agreement" for p in found):
        reading = reading.model_copy(update={"explanation": vf.concluded(reading)})
        fixed_now += [p.message for p in found if p.kind == "agreement"]
        found = vf.check(reading, cues, available)
        messages = [p.message for p in found]
        update["reading"] = reading
    # A reading with no cue rests on nothing: it is never "grounded" (the UI badge, the evals'
    # verified count). Reported, not fed back: another round cannot add evidence.
    report = VerificationReport(
        rounds=state.get("rounds", 0),
        problems=messages if cues else [*messages, NO_CUES],
        fixed=list(dict.fromkeys([*(state.get("fixed") or []), *fixed_now])),
        grounded=bool(cues) and vf.grounded(found),
        dropped_claims=dropped,
    )
    return {
        **update,
        "problems": messages,
        "redo": vf.sentences_to_redo(found),
        "seen_problems": messages,
        "fixed": fixed_now,
        "verification": report,
    }


def after_verify(state: AnalysisState, runtime: Runtime[RunContext]) -> str:
    """Back to reason while problems remain and rounds are left; else store."""
    rounds_left = state.get("rounds", 0) <= runtime.context.settings.verify_max_rounds
    if state.get("problems") and state.get("reading") is not None and rounds_left:
        return "reason"
    return "store"


def build_result(state: AnalysisState, settings) -> AnalysisResult:
    ev = state.get("evidence") or {}
    verification = state.get("verification") or VerificationReport()
    return AnalysisResult(
        id=state["result_id"],
        media=state["media"],
        # each modality's evidence is its tool's type (agent.registry)
        face=cast(FaceEvidence | None, ev.get("face")),
        speech=cast(SpeechEvidence | None, ev.get("speech")),
        voice=cast(ToneEvidence | None, ev.get("voice")),
        scene=cast(SceneEvidence | None, ev.get("scene")),
        cues=state.get("cues") or [],
        knowledge=state.get("knowledge") or [],
        reading=state.get("reading"),
        fusion=state.get("fusion"),
        verification=verification,
        timings=dict(state.get("timings") or {}),
        models=dict(state.get("models") or {}),
        settings=_settings_record(settings, state.get("without") or []),
        error=state.get("error"),
        source=state.get("source"),
    )


def _settings_record(settings, without) -> dict:
    keep = (
        "llm_backend",
        "llm_model",
        "frame_rate",
        "asr_model",
        "face_backend",
        "device",
        "verify_max_rounds",
        "verify_prune_first",
        "llm_max_tokens",
        "llm_temperature",
        "llm_seed",
        "decision",
    )
    out = {k: getattr(settings, k) for k in keep}
    out["without"] = list(without)
    return out


def store_node(state: AnalysisState, runtime: Runtime[RunContext]) -> dict:
    """Build the result, once, and write it when the run asked for it; the caller returns this
    same object, so the stored and the returned result are one (same ``created`` time)."""
    result = build_result(state, runtime.context.settings)
    if runtime.context.save:
        from affectlens.agent.store import AnalysisStore

        AnalysisStore(runtime.context.settings).save(result)
    return {"result": result, "decoded": None}  # the decoded streams are not needed any more
