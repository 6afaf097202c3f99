"""Every model loader goes through one locked cache: two threads that use a model first at the
same time get one copy (lru_cache loaded two), other keys are not held up, a failed load is
not cached, and the least recently used model is dropped."""

from __future__ import annotations

import threading

import pytest

import affectlens.agent.embeddings
import affectlens.tools.asr
import affectlens.tools.face
import affectlens.tools.scene
import affectlens.tools.tone
import affectlens.tools.voice_emotion
from affectlens import cache
from affectlens.agent.llm import factory
from affectlens.cache import ModelCache, model_cache


def _both(fn, *args):
    """Call ``fn(*args)`` from two threads released together; return both results."""
    start = threading.Barrier(2)
    out: list = [None, None]

    def run(i):
        start.wait()
        out[i] = fn(*args)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return out


def test_every_loader_is_a_locked_model_cache():
    loaders = [
        affectlens.tools.asr._load,
        affectlens.tools.face.mediapipe_models,
        affectlens.tools.face._pyfeat_model,
        affectlens.tools.scene._load,
        affectlens.tools.tone._smile,
        affectlens.tools.tone._ser_pipeline,
        affectlens.tools.voice_emotion._functionals_smile,
        affectlens.agent.embeddings._load,
        factory._INSTANCES,  # the LLM backends too
    ]
    assert all(isinstance(f, ModelCache) for f in loaders)


def test_two_first_uses_in_two_threads_load_one_opensmile():
    affectlens.tools.tone._smile.cache_clear()
    before = affectlens.tools.tone._smile.loads
    a, b = _both(affectlens.tools.tone._smile)
    assert a is b and a is not None
    assert affectlens.tools.tone._smile.loads == before + 1


def test_a_second_caller_waits_for_the_first_load_instead_of_loading_again():
    calls: list[str] = []

    @model_cache(maxsize=2)
    def load(name):
        calls.append(name)
        # give a second caller time to arrive while this load is in progress
        threading.Event().wait(0.3)
        return object()

    a, b = _both(load, "m")
    assert a is b and calls == ["m"]


def test_failures_are_not_cached_and_the_oldest_model_is_dropped():
    attempts: list[int] = []

    @model_cache(maxsize=2)
    def load(name):
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("disk hiccup")
        return [name]

    with pytest.raises(OSError):
        load("a")
    first = load("a")
    assert load("a") is first
    load("b")
    load("c")  # evicts "a", the least recently used
    assert load("a") is not first and load("a") == ["a"]


def test_what_is_loaded_is_listed_and_can_be_evicted():
    @model_cache(maxsize=2)
    def load_thing(name):
        return object()

    first = load_thing("a")
    load_thing("b")
    mine = [w for loader, w in cache.loaded() if loader.endswith("load_thing")]
    assert mine == [repr((("a",), ())), repr((("b",), ()))]
    assert load_thing.evict("a") and not load_thing.evict("a") and len(load_thing) == 1
    assert load_thing("a") is not first  # loaded again after the eviction


def test_a_loaded_llm_is_listed_by_backend_and_model_never_with_its_api_key():
    from affectlens.settings import Settings

    secret = "sk-do-not-print-me"
    s = Settings(llm_backend="openai", llm_base_url="http://127.0.0.1:9/v1", llm_api_key=secret)
    llm = factory.get_llm(s)  # the OpenAI-compatible client connects on first use only
    try:
        listed = [w for loader, w in cache.loaded() if loader.endswith("factory._load")]
        assert f"openai {s.llm_model}" in listed and not any(secret in w for w in listed)
    finally:
        factory._INSTANCES.evict(s)
    assert llm.model_id
