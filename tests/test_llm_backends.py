"""The LLM layer's plumbing against real HTTP and real models: server errors classified from
the bodies vLLM and OpenAI send (a context overflow is not "format unsupported"), one loaded
model per backend and model whatever the sampling (sampling goes with each call), a bounded
instance cache, and streams that release the model when abandoned or closed."""

from __future__ import annotations

import os
import threading

import pytest
from pydantic import BaseModel, Field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from openai_stub import Server, completion  # noqa: E402
from test_llm import _settings as _embedded_settings  # noqa: E402

from affectlens.agent.llm import LLMError, embedded, factory, get_llm  # noqa: E402
from affectlens.settings import Settings  # noqa: E402

# vLLM 0.6's body for a prompt longer than --max-model-len (a 400, like a bad request field).
VLLM_CONTEXT = {
    "object": "error",
    "type": "BadRequestError",
    "param": None,
    "code": 400,
    "message": "This model's maximum context length is 4096 tokens. However, you "
    "requested 5120 tokens (4736 in the messages, 384 in the completion). Please "
    "reduce the length of the messages or completion.",
}
# OpenAI's body when a model does not take json_schema.
OPENAI_NO_SCHEMA = {
    "error": {
        "message": "Invalid parameter: 'response_format' of type "
        "'json_schema' is not supported with this model.",
        "type": "invalid_request_error",
        "param": "response_format",
        "code": None,
    }
}
BAD_ROLE = {
    "object": "error",
    "type": "BadRequestError",
    "code": 400,
    "param": None,
    "message": "1 validation error: messages.0.role: Input should be 'system', 'user' "
    "or 'assistant'",
}
QUESTION = [{"role": "user", "content": "Which emotion is a broad smile?"}]


class Reading(BaseModel):
    emotion: str
    valence: float = Field(ge=-1, le=1)


def _openai(url: str, **kw) -> Settings:
    return Settings(**{"llm_backend": "openai", "llm_base_url": url, "llm_model": "served", **kw})


def test_a_context_overflow_is_reported_as_such_not_as_an_unsupported_format():
    with Server(lambda req: (400, VLLM_CONTEXT)) as server:
        llm = get_llm(_openai(server.url))
        with pytest.raises(LLMError, match="context window") as err:
            llm.chat(QUESTION, Reading)
    assert "maximum context length is 4096" in str(err.value)
    assert len(server.requests) == 1  # no pointless retries with other formats


def test_an_unsupported_format_falls_back_and_the_reply_is_parsed():
    def answer(req):
        if req["response_format"]["type"] == "json_schema":
            return 400, OPENAI_NO_SCHEMA
        return 200, completion('{"emotion": "happiness", "valence": 0.6}')

    with Server(answer) as server:
        llm = get_llm(_openai(server.url, llm_model="fallback"))
        assert llm.chat(QUESTION, Reading) == Reading(emotion="happiness", valence=0.6)
    assert [r["response_format"]["type"] for r in server.requests] == ["json_schema", "json_object"]
    assert llm._format == "json_object+schema"
    assert "JSON schema" in server.requests[1]["messages"][0]["content"]


def test_another_bad_request_is_not_mistaken_for_a_format_problem():
    with Server(lambda req: (400, BAD_ROLE)) as server:
        llm = get_llm(_openai(server.url, llm_model="strict"))
        with pytest.raises(LLMError, match="messages.0.role"):
            llm.chat(QUESTION, Reading)
    assert len(server.requests) == 1


def test_one_instance_per_model_sampling_per_call_and_a_bounded_cache():
    with Server(lambda req: (200, completion("ok"))) as server:
        base = _openai(server.url, llm_model="shared")
        default = get_llm(base)
        warm = get_llm(
            base.model_copy(
                update={
                    "llm_temperature": 0.7,
                    "llm_seed": 3,
                    "llm_max_tokens": 99,
                    "llm_prompt_cache": "off",
                }
            )
        )
        assert warm.llm is default.llm  # the same loaded model
        assert get_llm(base) is default
        default.chat(QUESTION)
        warm.chat(QUESTION)
        sent = [(r["temperature"], r["seed"], r["max_tokens"]) for r in server.requests]
        assert sent == [(0.0, 0, base.llm_max_tokens), (0.7, 3, 99)]
        # the cache keeps LLM_CACHE_SIZE models; the least recently used one is dropped
        others = [
            get_llm(_openai(server.url, llm_model=f"other-{i}")).llm
            for i in range(factory.LLM_CACHE_SIZE)
        ]
        assert len(factory._INSTANCES) == factory.LLM_CACHE_SIZE
        assert get_llm(base).llm is not default.llm  # evicted, built again
        assert get_llm(_openai(server.url, llm_model="other-1")).llm is others[1]


def test_an_abandoned_stream_releases_the_lock_and_a_closed_one_stops_its_producer():
    lock = threading.Lock()
    made: list[int] = []

    def pieces():
        for i in range(50):
            made.append(i)
            yield str(i)

    kept = embedded._threaded(pieces, lock)
    assert next(kept) == "0"
    # never consumed further nor closed: the producer still finishes and lets the lock go
    assert lock.acquire(timeout=30)
    lock.release()
    assert len(made) == 50
    made.clear()
    gate = threading.Event()

    def slow():
        for i in range(50):
            made.append(i)
            yield str(i)
            gate.wait(0.2)

    closed = embedded._threaded(slow, lock)
    next(closed)
    closed.close()  # joins the producer, which stopped early
    assert not lock.locked() and len(made) < 50
    assert not any(t.name == "affectlens-llm-stream" for t in threading.enumerate())


def test_a_closed_transformers_stream_stops_generating_and_joins_its_thread(tmp_path):
    from test_llm import QUESTION as CUES
    from test_llm import _tiny_model

    path = _tiny_model(tmp_path / "random", reply=None)
    llm = get_llm(Settings(llm_backend="transformers", llm_model=str(path), device="cpu"))
    eos = llm.tokenizer.eos_token_id
    llm.model.generation_config.suppress_tokens = [eos]  # random weights must not stop early
    before = set(threading.enumerate())
    stream = llm.stream(CUES, max_tokens=4000)
    assert isinstance(next(stream), str)
    stream.close()
    assert not llm._lock.locked()
    assert set(threading.enumerate()) <= before  # the generate thread was stopped and joined
    assert isinstance(llm.chat(CUES, max_tokens=4), str)  # the model is free again


@pytest.mark.slow
def test_an_abandoned_embedded_stream_does_not_block_the_next_call(small_gguf):
    llm = get_llm(_embedded_settings())
    msgs = [{"role": "user", "content": "Name three colours, comma separated."}]
    kept = llm.stream(msgs, max_tokens=16)
    assert next(kept)  # then neither consumed nor closed (a dropped UI event keeps it alive)
    answers: list[str] = []
    worker = threading.Thread(
        target=lambda: answers.append(llm.chat(msgs, max_tokens=4)), daemon=True
    )
    worker.start()
    worker.join(timeout=300)  # before: blocked for good on the lock the stream's frame held
    assert answers and isinstance(answers[0], str)
    assert kept is not None
