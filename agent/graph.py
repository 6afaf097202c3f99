"""The compiled analysis graph.

probe -> {face, speech, voice, scene} (parallel branches, only those whose stream exists)
-> textualise -> retrieve -> reason -> verify -(problems, rounds left)-> reason | store.

``build_graph(entry="textualise")`` starts from stored evidence instead (re-reasoning without a
modality). Progress comes from LangGraph's own ``stream_mode="tasks"`` (see
``affectlens.agent.run.stream_stages``); every node is wrapped in ``timed`` only so that the
state's ``timings`` records each stage's seconds, which the stream's events do not carry.
``graph`` is the full analysis, compiled once, for LangGraph's tooling (langgraph.json).
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


def timed(name: str, fn):
    """Add the node's seconds to the state's ``timings`` (its task result carries them)."""

    @wraps(fn)
    def node(state: AnalysisState, runtime: Runtime[RunContext]) -> dict:
        t0 = time.perf_counter()
        update = fn(state, runtime) or {}
        dt = round(time.perf_counter() - t0, 3)
        return {**update, "timings": {**(update.get("timings") or {}), name: dt}}

    return node


def route_tools(state: AnalysisState, runtime: Runtime[RunContext]) -> list[str]:
    """Fan out to every applicable tool (they run in the same superstep, concurrently)."""
    tools: list[str] = list(nodes.applicable(state, state.get("decoded")))
    return tools or ["textualise"]


@lru_cache(maxsize=2)
def build_graph(entry: Entry = "probe"):
    """Compile the graph; ``entry="textualise"`` skips probe and the tools."""
    g = StateGraph(AnalysisState, context_schema=RunContext)
    g.add_node("textualise", timed("textualise", nodes.textualise_node))
    g.add_node("retrieve", timed("retrieve", nodes.retrieve_node))
    g.add_node("reason", timed("reason", nodes.reason_node))
    g.add_node("verify", timed("verify", nodes.verify_node))
    g.add_node("store", timed("store", nodes.store_node))
    if entry == "probe":
        g.add_node("probe", timed("probe", nodes.probe))
        for m in MODALITIES:
            g.add_node(m, timed(m, nodes.make_tool_node(m)))
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


graph = build_graph("probe")
