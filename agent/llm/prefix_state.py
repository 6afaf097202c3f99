"""The evaluated system turn of a chat prompt: saved once, restored before every call.

Every reasoning prompt starts with the same system turn (``prompts/system.v*.j2``). With
``llm_prompt_cache = "prefix"`` the embedded backend evaluates that turn alone once, keeps
llama.cpp's state after it (the KV cache of those tokens) and restores exactly that state before
every call, so the rest of every prompt is evaluated from the same point in the same batches,
whatever ran before. The RAM prompt cache instead reuses the longest prefix it happens to hold
(part of the previous clip's cues, say), and llama.cpp's logits depend in their last bits on how
a prompt was split into batches: so there a reading could depend on the clip before it.

The state is also written beside the models (``<model_dir>/prefix-states``), keyed by the model
file's checksum, the llama.cpp build, the context's shape and the turn's tokens (which cover the
prompt template's version), so a fresh process loads it instead of evaluating the turn again.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from llama_cpp import Llama

log = logging.getLogger(__name__)
STATES_DIR = "prefix-states"  # under Settings.model_dir
MAX_STATES = 4  # system turns kept in RAM per model (reasoner, judge, chat ...): ~10 MB each
_MAGIC = b"AFLPREFIX1\n"


def get_state(llama: Llama) -> bytes:
    """The context's state (llama.cpp's own bytes: the KV cache); ``Llama.save_state`` would
    also copy the Python-side logits buffer, hundreds of MB for a 150k vocabulary."""
    import llama_cpp

    size = llama_cpp.llama_state_get_size(llama._ctx.ctx)
    buf = (ctypes.c_uint8 * int(size))()
    n = llama_cpp.llama_state_get_data(llama._ctx.ctx, buf, size)
    return bytes(buf)[: int(n)]


def set_state(llama: Llama, state: bytes) -> None:
    """Load ``state`` (from ``get_state``) into the context; the caller sets the tokens."""
    import llama_cpp

    buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
    if llama_cpp.llama_state_set_data(llama._ctx.ctx, buf, len(state)) != len(state):
        raise RuntimeError("llama.cpp refused the saved state")


def build_id() -> str:
    """The llama.cpp build: the binding's version and the compiled CPU features."""
    import llama_cpp

    return f"{llama_cpp.__version__} {llama_cpp.llama_print_system_info().decode().strip()}"


class SystemTurns:
    """Per system turn: its tokens and the state after evaluating them alone (in RAM, and on
    disk under ``store`` when given). ``identity`` names the model and context the states are
    valid for; it is part of every file's key."""

    def __init__(self, llama: Llama, identity: str, store: Path | None):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.llama = llama
        self.identity = identity
        self.store = store
        template = llama.metadata.get("tokenizer.chat_template")
        # The chat handler llama-cpp-python uses for a GGUF template (chat_format
        # "chat_template.default"); rendered without the generation prompt, the system message
        # alone is the start of every prompt with that system message.
        self._formatter = (
            Jinja2ChatFormatter(
                template=template,
                eos_token=_token_text(llama, llama.token_eos()),
                bos_token=_token_text(llama, llama.token_bos()),
                add_generation_prompt=False,
            )
            if template and llama.chat_format == "chat_template.default"
            else None
        )
        self._states: OrderedDict[tuple[int, ...], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.evaluated = 0  # system turns evaluated (not found in RAM or on disk): for tests
        self.loaded = 0  # system turns read from disk

    def tokens(self, messages: list[dict]) -> list[int]:
        """The tokens of the system turn ``messages`` start with; [] without one."""
        if self._formatter is None or not messages or messages[0].get("role") != "system":
            return []
        prompt = self._formatter(messages=[cast(Any, messages[0])]).prompt
        # As the chat handler tokenizes: special tokens parsed, no BOS added (added_special)
        return self.llama.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)

    def restore(self, messages: list[dict]) -> int:
        """Put the context in the state right after the system turn of ``messages`` (or empty
        when there is none) and return that turn's length in tokens. Call under the model's
        lock; llama-cpp-python's ``generate`` then evaluates the rest of the prompt from there."""
        llama = self.llama
        turn = self.tokens(messages)
        if not turn:
            llama.reset()
            return 0
        key = tuple(turn)
        with self._lock:
            state = self._states.get(key)
            if state is None:
                state = self.saved(turn)
                if state is None:
                    llama.reset()
                    llama.eval(turn)  # from an empty context: positions 0.. in n_batch batches
                    state = get_state(llama)
                    self.evaluated += 1
                    self.save(turn, state)
                else:
                    self.loaded += 1
                self._states[key] = state
                while len(self._states) > MAX_STATES:
                    self._states.popitem(last=False)
            self._states.move_to_end(key)
        set_state(llama, state)
        llama.input_ids[: len(turn)] = turn
        llama.n_tokens = len(turn)
        llama._requires_eval = True  # the logits are not the live decode's
        return len(turn)

    # disk ------------------------------------------------------------------------------------
    def _file(self, turn: list[int]) -> Path | None:
        if self.store is None:
            return None
        digest = hashlib.sha256(f"{self.identity}\n{json.dumps(turn)}".encode()).hexdigest()
        return self.store / f"{digest[:32]}.state"

    def saved(self, turn: list[int]) -> bytes | None:
        """The state saved on disk after ``turn`` (any prefix evaluated from an empty context
        of this model: a system turn, the text-emotion scorer's instruction), or None."""
        path = self._file(turn)
        if path is None or not path.is_file():
            return None
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.warning("could not read the saved system turn %s: %s", path, exc)
            return None
        header = _MAGIC + hashlib.sha256(data[len(_MAGIC) + 64 :]).hexdigest().encode()
        if not data.startswith(header):
            log.warning("ignoring a damaged saved system turn: %s", path)
            return None
        return data[len(header) :]

    def save(self, turn: list[int], state: bytes) -> None:
        """Write the state after ``turn`` for the next process (no-op without a store)."""
        path = self._file(turn)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            with tmp.open("wb") as fh:
                fh.write(_MAGIC + hashlib.sha256(state).hexdigest().encode() + state)
            os.replace(tmp, path)  # a reader sees the old file or the whole new one
        except OSError as exc:  # a read-only cache only costs the next process the evaluation
            log.warning("could not save the system turn to %s: %s", path, exc)


def _token_text(llama: Llama, token: int) -> str:
    return llama._model.token_get_text(token) if token != -1 else ""
