"""The compiled analysis graph.

probe -> {face, speech, voice, scene} (parallel branches, only those whose stream exists)
-> textualise -> retrieve -> reason -> verify -(problems, rounds left)-> reason | store.

``build_graph(entry="textualise")`` starts from stored evidence instead (re-reasoning without a
modality); every node is wrapped so the run context's ``on_stage`` sees start/done/failed with
elapsed seconds, and the state's ``timings`` records each stage.
"""

from __future__ import annotations

import time
from functools import lru_cache, wraps
from typing import Literal

from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from affectlens.agent import nodes
from affectlens.agent.schemas import MODALITIES
from affectlens.agent.state import AnalysisState, RunContext

Entry = Literal["probe", "textualise"]


def staged(name: str, fn):
    """Report progress and time a node; exceptions still propagate (probe's MediaError)."""

    @wraps(fn)
    def node(state: AnalysisState, runtime: Runtime[RunContext]) -> dict:
        cb = runtime.context.on_stage
        t0 = time.perf_counter()
        if cb:
            cb(name, "start", 0.0)
        try:
            update = fn(state, runtime) or {}
        except BaseException:
            if cb:
                cb(name, "failed", time.perf_counter() - t0)
            raise
        dt = time.perf_counter() - t0
        failed = name in MODALITIES and any(
            e.status == "failed" for e in (update.get("evidence") or {}).values()
        )
        if cb:
            cb(name, "failed" if failed else "done", dt)
        return {**update, "timings": {**(update.get("timings") or {}), name: round(dt, 3)}}

    return node


def route_tools(state: AnalysisState, runtime: Runtime[RunContext]) -> list[str]:
    """Fan out to every applicable tool (they run in the same superstep, concurrently)."""
    return nodes.applicable(state, state.get("decoded")) or ["textualise"]


@lru_cache(maxsize=2)
def build_graph(entry: Entry = "probe"):
    """Compile the graph; ``entry="textualise"`` skips probe and the tools."""
    g = StateGraph(AnalysisState, context_schema=RunContext)
    g.add_node("textualise", staged("textualise", nodes.textualise_node))
    g.add_node("retrieve", staged("retrieve", nodes.retrieve_node))
    g.add_node("reason", staged("reason", nodes.reason_node))
    g.add_node("verify", staged("verify", nodes.verify_node))
    g.add_node("store", staged("store", nodes.store_node))
    if entry == "probe":
        g.add_node("probe", staged("probe", nodes.probe))
        for m in MODALITIES:
            g.add_node(m, staged(m, nodes.make_tool_node(m)))
            g.add_edge(m, "textualise")
        g.add_edge(START, "probe")
        g.add_conditional_edges("probe", route_tools, [*MODALITIES, "textualise"])
    else:
        g.add_edge(START, "textualise")
    g.add_edge("textualise", "retrieve")
    g.add_edge("retrieve", "reason")
    g.add_edge("reason", "verify")
    g.add_conditional_edges("verify", nodes.after_verify, {"reason": "reason", "store": "store"})
    g.add_edge("store", END)
    return g.compile(name=f"affectlens-analysis-{entry}")
