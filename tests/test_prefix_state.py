"""The saved system turn (``llm_prompt_cache = "prefix"``): the file format's checks without a
model, and with the real 0.5B GGUF that a restored system turn makes a reasoning call give the
same reading whatever ran before, in this process and in a fresh one that loads it from disk."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from affectlens.agent import reason  # noqa: E402
from affectlens.agent.llm.prefix_state import SystemTurns  # noqa: E402
from affectlens.agent.llm.protocol import Sampling  # noqa: E402
from affectlens.agent.schemas import Cue  # noqa: E402
from affectlens.settings import Settings  # noqa: E402


class _NoTemplate:
    """What SystemTurns reads from a Llama when it has no chat template of its own."""

    metadata: dict = {}
    chat_format = "chatml"


def _turns(tmp_path: Path, identity: str = "model-a") -> SystemTurns:
    return SystemTurns(_NoTemplate(), identity, tmp_path)  # type: ignore[arg-type]


def test_a_saved_state_is_read_back_only_for_its_own_model_and_turn(tmp_path):
    turns = _turns(tmp_path)
    turns.save([1, 2, 3], b"kv bytes")
    assert turns.saved([1, 2, 3]) == b"kv bytes"
    assert turns.saved([1, 2, 4]) is None  # another system turn (another prompt version)
    assert _turns(tmp_path, "model-b").saved([1, 2, 3]) is None  # another model or build
    assert [p.suffix for p in tmp_path.iterdir()] == [".state"]  # no temporary file left


def test_a_damaged_state_file_is_ignored(tmp_path):
    turns = _turns(tmp_path)
    turns.save([7], b"0123456789")
    path = next(tmp_path.iterdir())
    path.write_bytes(path.read_bytes()[:-3])  # cut short, as by a full disk
    assert turns.saved([7]) is None


def test_without_a_chat_template_there_is_no_system_turn_to_save(tmp_path):
    msgs = [{"role": "system", "content": "x"}, {"role": "user", "content": "y"}]
    assert _turns(tmp_path).tokens(msgs) == []


def test_the_prompt_cache_setting_names_its_modes():
    assert Settings().llm_prompt_cache == "ram"
    assert Settings(llm_prompt_cache="prefix").llm_prompt_cache == "prefix"
    with pytest.raises(ValueError):
        Settings(llm_prompt_cache="sometimes")


# ------------------------------------------------------------------------- the real model

CUES = [
    Cue(id="F1", modality="face", start=0.0, end=2.5, name="AU15", value=0.48,
        text="Lip corner depressor (AU15) at 0.48, 0.0-2.5 s."),
    Cue(id="S1", modality="speech", start=0.5, end=3.8, name="transcript",
        value="I just can't believe she's gone.", text='Said: "I just can\'t believe it."'),
]  # fmt: skip
# The same analysis with other cue values: a prompt that shares the system turn and more.
OTHER = [c.model_copy(update={"text": c.text.replace("0.", "0.9")}) for c in CUES]
HEADER = "Clip: 4.0 s, one person."
KNOWLEDGE = ["Sadness often shows as AU1+AU4+AU15."]


def _llm(store: Path):
    """A fresh process's view: a newly loaded model whose saved system turns live in ``store``."""
    from affectlens.agent.llm.embedded import EmbeddedLLM

    llm = EmbeddedLLM(Settings(llm_model="qwen2.5-0.5b", threads=2, llm_context=2048))
    llm.system_turns().store = store
    return llm


def _reading(llm, cues, mode: str) -> str:
    msgs = reason.messages(HEADER, cues, KNOWLEDGE)
    schema = reason.schema_for(cues, "sadness")
    return llm.chat(msgs, schema, sampling=Sampling(prompt_cache=mode)).model_dump_json()


@pytest.mark.slow
@pytest.mark.timeout(1800)  # four short readings; minutes each when other processes share the CPU
def test_a_restored_system_turn_gives_the_same_reading_whatever_ran_before(small_gguf, tmp_path):
    llm = _llm(tmp_path)
    first = _reading(llm, CUES, "prefix")
    turns = llm.system_turns()
    assert (turns.evaluated, turns.loaded) == (1, 0)
    assert len(list(tmp_path.glob("*.state"))) == 1
    # The system turn really is the start of the reasoning prompt: the context after the
    # restore holds it, and the call evaluated only what follows it.
    msgs = reason.messages(HEADER, CUES, KNOWLEDGE)
    turn = turns.tokens(msgs)
    assert len(turn) > 200 and llm._llama.input_ids[: len(turn)].tolist() == turn
    # Something else runs in between: the context and the RAM cache now hold a prompt that
    # shares the system turn and more.
    other = reason.messages(HEADER, OTHER, KNOWLEDGE)
    llm.chat(other, max_tokens=8, sampling=Sampling(prompt_cache="ram"))
    assert _reading(llm, CUES, "prefix") == first
    assert turns.evaluated == 1  # restored from RAM, not evaluated again

    # "off" evaluates the whole prompt from an empty context, in other batches than the
    # restored turn plus the rest: its KV values may differ in the last bits and so, at a near
    # tie, a greedy token (measured: docs/bench.md, "Saved system turn"). What it promises is
    # its own run-to-run identity, whatever ran before.
    off = _reading(llm, CUES, "off")
    llm.chat(other, max_tokens=8, sampling=Sampling(prompt_cache="ram"))
    assert _reading(llm, CUES, "off") == off and json.loads(off)["dominant"] == "sadness"

    fresh = _llm(tmp_path)  # a new process: the system turn comes from disk
    fresh._seed(msgs)  # "ram" mode's first call starts from it too (an empty RAM cache)
    assert (fresh.system_turns().evaluated, fresh.system_turns().loaded) == (0, 1)
    assert fresh._llama.input_ids[: fresh._llama.n_tokens].tolist() == turn
    assert _reading(fresh, CUES, "prefix") == first
