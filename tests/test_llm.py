"""The LLM backends, each against a real model: the embedded GGUFs in-process, llama.cpp's
OpenAI-compatible server as a subprocess (the path vLLM uses), and tiny transformers models
built here (a random one, and one whose weights are set to spell a fixed reply)."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from pydantic import BaseModel, Field

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from affectlens.agent.llm import (  # noqa: E402
    LLM,
    LLMError,
    get_llm,
    image_data_url,
    parse_json,
    role_settings,
    with_images,
)
from affectlens.models import model_path  # noqa: E402
from affectlens.settings import Settings  # noqa: E402


class Reading(BaseModel):
    """A small schema so the constrained calls stay short on 2 cores."""

    emotion: str = Field(description="One basic emotion.")
    valence: float = Field(ge=-1, le=1)


QUESTION = [
    {"role": "system", "content": "You name the basic emotion shown by cues. Answer in JSON."},
    {
        "role": "user",
        "content": "Cue F1: AU6+AU12 (cheek raiser, lip corner puller), a broad "
        "smile. Cue S1: transcript 'I won the lottery!'. Name the emotion and its valence.",
    },
]


def _settings(**kw) -> Settings:
    return Settings(**{"llm_model": "qwen2.5-0.5b", "threads": 2, "llm_context": 2048, **kw})


# ----------------------------------------------------------------------------- helpers


def test_parse_json_takes_the_first_object_around_prose_and_fences():
    assert parse_json('Sure:\n```json\n{"a": {"b": [1, 2]}}\n``` done {"c": 1}') == {
        "a": {"b": [1, 2]}
    }
    with pytest.raises(ValueError):
        parse_json("no object here")
    with pytest.raises(ValueError):
        parse_json('{"a": ')


def test_images_become_jpeg_data_url_parts_on_the_last_user_message():
    frame = np.zeros((48, 64, 3), dtype=np.uint8)
    frame[:, :32] = (255, 0, 0)
    msgs = with_images(
        [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
        [frame, frame.astype(np.float32) / 255.0],
    )
    parts = msgs[1]["content"]
    assert parts[0] == {"type": "text", "text": "u"}
    assert [p["type"] for p in parts[1:]] == ["image_url", "image_url"]
    from PIL import Image

    for part in parts[1:]:
        url = part["image_url"]["url"]
        assert url.startswith("data:image/jpeg;base64,")
        img = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert img.format == "JPEG" and img.size == (64, 48)
        assert np.asarray(img)[24, 10, 0] > 200 and np.asarray(img)[24, 50, 0] < 50
    with pytest.raises(ValueError, match="HxW"):
        image_data_url(np.zeros((4, 4, 2), dtype=np.uint8))


def test_judge_role_uses_judge_settings_only_when_set():
    s = Settings(llm_model="qwen2.5-1.5b")
    assert role_settings(s, "judge") is s
    judge = role_settings(Settings(llm_model="qwen2.5-1.5b", judge_model="qwen2.5-0.5b"), "judge")
    assert (judge.llm_backend, judge.llm_model) == ("embedded", "qwen2.5-0.5b")
    judge = role_settings(Settings(judge_backend="openai", judge_model="m"), "judge")
    assert (judge.llm_backend, judge.llm_model) == ("openai", "m")


@pytest.mark.slow
def test_bad_messages_are_a_clear_value_error(small_gguf):
    llm = get_llm(_settings())
    with pytest.raises(ValueError, match="non-empty"):
        llm.chat([])
    with pytest.raises(ValueError, match="role"):
        llm.chat([{"text": "hi"}])


# ----------------------------------------------------------------------------- embedded


@pytest.mark.slow
def test_embedded_structured_call_returns_a_validated_object(small_gguf):
    llm = get_llm(_settings())
    assert isinstance(llm, LLM)
    assert llm.model_id.startswith("qwen2.5-0.5b (llama.cpp 0.3.")
    assert "Q4_K_M" in llm.model_id
    reading = llm.chat(QUESTION, Reading, max_tokens=64)
    assert isinstance(reading, Reading)
    assert -1 <= reading.valence <= 1 and reading.emotion


@pytest.mark.slow
def test_embedded_is_cached_per_settings_and_streams_what_chat_returns(small_gguf):
    llm = get_llm(_settings())
    assert get_llm(_settings()) is llm
    assert get_llm(_settings(), role="judge") is llm  # no judge configured
    msgs = [{"role": "user", "content": "Name three colours, comma separated."}]
    text = llm.chat(msgs, max_tokens=16)
    pieces = list(llm.stream(msgs, max_tokens=16))
    assert isinstance(text, str) and text.strip()
    assert len(pieces) > 1 and "".join(pieces) == text  # temperature 0: same tokens


@pytest.mark.slow
def test_embedded_prompt_cache_restores_state_without_changing_answers(small_gguf):
    """A, then a different prompt B, then A again: A is restored from the RAM cache and the
    greedy answer must be identical. The saved prompts keep one row of logits, not llama-cpp-
    python's whole n_batch x vocabulary buffer (hundreds of MB each), and the capacity counts
    every byte they keep."""
    llm = get_llm(_settings())
    from llama_cpp import LlamaRAMCache

    cache = llm._llama.cache
    assert isinstance(cache, LlamaRAMCache)
    a = [
        {"role": "system", "content": "You are terse. " * 10},
        {"role": "user", "content": "Which emotion is a frown?"},
    ]
    b = [{"role": "system", "content": "You are a poet."}, {"role": "user", "content": "Rain?"}]
    first = llm.chat(a, max_tokens=12)
    assert llm._llama.cache.cache_size > 0
    llm.chat(b, max_tokens=4)
    assert llm.chat(a, max_tokens=12) == first
    states = list(cache.cache_state.values())
    assert len(states) >= 2
    assert all(s.scores.shape == (1, llm._llama.n_vocab()) for s in states)
    assert cache.cache_size == sum(
        s.llama_state_size + s.scores.nbytes + s.input_ids.nbytes for s in states
    )


@pytest.mark.slow
def test_embedded_errors_are_clear(small_gguf, tmp_path):
    with pytest.raises(LLMError, match="neither an embedded name"):
        get_llm(_settings(llm_model=str(tmp_path / "absent.gguf")))
    with pytest.raises(LLMError, match="assemble"):
        get_llm(_settings(model_dir=tmp_path))
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF not really")
    with pytest.raises(LLMError, match="could not load"):
        get_llm(_settings(llm_model=str(bad)))
    llm = get_llm(_settings(llm_context=512))
    with pytest.raises(LLMError, match="context window"):
        llm.chat([{"role": "user", "content": "word " * 800}], max_tokens=8)
    with pytest.raises(LLMError, match="max_tokens=4"):
        llm.chat(QUESTION, Reading, max_tokens=4)


@pytest.mark.slow
def test_default_embedded_model_answers_a_structured_call():
    s = Settings(threads=2, llm_context=1024)
    assert s.llm_backend == "embedded" and s.llm_model == "qwen2.5-1.5b"
    try:
        model_path(s.llm_model, s.model_dir)
    except Exception as exc:
        pytest.skip(f"default model not assembled: {exc}")
    llm = get_llm(s)
    assert llm.model_id.startswith("qwen2.5-1.5b (llama.cpp") and "Q4_K_M" in llm.model_id
    reading = llm.chat(QUESTION, Reading, max_tokens=48)
    assert isinstance(reading, Reading)
    # The model's own word, asserted only because the input is unambiguous (a broad smile,
    # AU6+AU12, and "I won the lottery!"), and any of its positive synonyms passes.
    assert reading.emotion.lower() in {"happiness", "happy", "joy", "surprise", "excitement"}
    assert reading.valence > 0


# ----------------------------------------------------------------------------- openai


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def openai_server(small_gguf, tmp_path_factory):
    """llama-cpp-python's OpenAI-compatible server on the 0.5B model, as a subprocess."""
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")
    port = _free_port()
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    log = log_path.open("wb")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(small_gguf),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
            "--verbose",
            "False",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited: {log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    served = json.load(r)["data"][0]["id"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"llama.cpp server did not come up: {log_path.read_text()[-2000:]}")
                time.sleep(0.3)
        yield url, served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.slow
def test_openai_backend_structured_call_against_a_real_server(openai_server):
    url, served = openai_server
    llm = get_llm(_settings(llm_backend="openai", llm_base_url=url, llm_model=served))
    assert url in llm.model_id
    reading = llm.chat(QUESTION, Reading, max_tokens=64)
    assert isinstance(reading, Reading) and -1 <= reading.valence <= 1
    # llama-cpp-python's server refuses json_schema; the client fell back to json_object
    assert llm._format == "json_object+schema"
    text = llm.chat([{"role": "user", "content": "Say hello."}], max_tokens=8)
    assert isinstance(text, str) and text.strip()
    assert "".join(llm.stream([{"role": "user", "content": "Say hello."}], max_tokens=8)) == text


def test_openai_backend_unreachable_server_is_a_clear_error():
    url = f"http://127.0.0.1:{_free_port()}/v1"
    llm = get_llm(_settings(llm_backend="openai", llm_base_url=url))
    with pytest.raises(LLMError, match="cannot reach the OpenAI-compatible server"):
        llm.chat(QUESTION, Reading, max_tokens=8)
    with pytest.raises(LLMError, match="cannot reach"):
        list(llm.stream(QUESTION, max_tokens=8))


# ----------------------------------------------------------------------------- transformers

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PROSE = "Here it is: "


def _tiny_model(path: Path, *, reply: str | None, seed: int = 0) -> Path:
    """A 1-layer Llama with a byte-level BPE tokenizer trained here.

    ``reply=None``: random weights (cannot produce JSON). Otherwise the blocks are zeroed so the
    residual stream is the one-hot token embedding and ``lm_head`` is a bigram table that, after
    the generation prompt, spells PROSE + ``reply`` (two added tokens) and stops: a real model
    run through the real generate/decode path whose output we know.
    """
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["You name emotions from cues.", "Reply with JSON only."], trainer)
    extra = [PROSE, reply] if reply else [PROSE]
    tok.add_tokens([AddedToken(t, normalized=False) for t in extra])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHATML,
    )
    fast.save_pretrained(path)
    vocab = len(fast)
    hidden = 64 * ((vocab + 63) // 64)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        eos_token_id=fast.eos_token_id,
        pad_token_id=fast.pad_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    if reply:
        last = fast.apply_chat_template(
            [{"role": "user", "content": "x"}], add_generation_prompt=True
        )["input_ids"][-1]
        prose, answer = fast.convert_tokens_to_ids([PROSE, reply])
        with torch.no_grad():
            model.model.embed_tokens.weight.copy_(torch.eye(vocab, hidden))
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            head = torch.zeros(vocab, hidden)
            head[fast.eos_token_id, :] = 1.0  # every token -> end, except:
            head[:, last] = 0.0
            head[prose, last] = 2.0  # generation prompt -> prose
            head[:, prose] = 0.0
            head[answer, prose] = 2.0  # prose -> the JSON reply
            model.lm_head.weight.copy_(head)
    model.save_pretrained(path)
    return path


def test_transformers_backend_parses_and_validates_a_reply_inside_prose(tmp_path):
    path = _tiny_model(tmp_path / "spelled", reply='{"emotion": "happiness", "valence": 0.7}')
    llm = get_llm(_settings(llm_backend="transformers", llm_model=str(path), device="cpu"))
    assert llm.model_id.startswith("spelled (transformers ")
    assert llm.chat(QUESTION, Reading, max_tokens=8) == Reading(emotion="happiness", valence=0.7)
    assert llm.chat(QUESTION, max_tokens=8) == PROSE + '{"emotion": "happiness", "valence": 0.7}'
    assert "".join(llm.stream(QUESTION, max_tokens=8)).startswith(PROSE + '{"emotion"')


def test_transformers_backend_retries_then_reports_the_validation_error(tmp_path):
    path = _tiny_model(tmp_path / "out-of-range", reply='{"emotion": "joy", "valence": 5}')
    llm = get_llm(_settings(llm_backend="transformers", llm_model=str(path), device="cpu"))
    with pytest.raises(LLMError, match=r"no valid Reading JSON after 3 attempts.*valence"):
        llm.chat(QUESTION, Reading, max_tokens=8)


def test_transformers_backend_random_model_gives_a_clear_error(tmp_path):
    path = _tiny_model(tmp_path / "random", reply=None)
    llm = get_llm(_settings(llm_backend="transformers", llm_model=str(path), device="cpu"))
    text = llm.chat(QUESTION, max_tokens=12)
    assert isinstance(text, str)
    with pytest.raises(LLMError, match=r"no valid Reading JSON after 3 attempts"):
        llm.chat(QUESTION, Reading, max_tokens=12)
    with pytest.raises(LLMError, match="not a local model directory"):
        get_llm(_settings(llm_backend="transformers", llm_model=str(tmp_path / "nothing")))


@pytest.mark.slow
def test_check_first_grammar_sampling_picks_the_same_tokens_as_llama_cpp():
    """The embedded backend checks the unconstrained top token against the grammar first and
    constrains the whole vocabulary only when it is refused: the reply must be the one plain
    llama-cpp-python gives, also when the grammar refuses what the model wants to say."""
    from llama_cpp import Llama

    from affectlens.agent.llm.grammar_sampler import CheckFirstLlama

    path = str(model_path("qwen2.5-0.5b", Settings().model_dir))
    schema = {
        "type": "object",
        "required": ["animal", "legs"],
        "properties": {"animal": {"enum": ["okapi", "axolotl"]}, "legs": {"type": "integer"}},
    }
    ask = [{"role": "user", "content": "Name the most common pet and its number of legs, in JSON."}]
    replies, samplers = [], []
    for cls in (Llama, CheckFirstLlama):
        llama = cls(model_path=path, n_ctx=512, n_threads=2, seed=0, verbose=False)
        out = llama.create_chat_completion(
            messages=ask,
            temperature=0.0,
            max_tokens=40,
            response_format={"type": "json_object", "schema": schema},
        )
        replies.append(out["choices"][0]["message"]["content"])
        samplers.append(llama._sampler)
    assert replies[0] == replies[1]
    assert json.loads(replies[1])["animal"] in {"okapi", "axolotl"}
    assert samplers[1].rejected > 0  # the model wanted another animal (or layout) first


@pytest.mark.slow
def test_jump_forward_evaluates_forced_json_in_batches_and_keeps_the_model_s_choices():
    """Jump-forward (grammar_sampler): the text the grammar forces (keys, colons, a closing
    quote before a key) is appended without a decode step of its own, so the model is asked
    for fewer tokens than the reply has; the reply is still valid JSON of the schema, and a
    cue-id list keeps every id (the forced quote is left to the model before "," and "]")."""
    from affectlens.agent.llm.grammar_sampler import CheckFirstLlama

    path = str(model_path("qwen2.5-0.5b", Settings().model_dir))
    schema = {
        "type": "object",
        "required": ["animal", "legs", "cues"],
        "properties": {
            "animal": {"enum": ["okapi", "axolotl"]},
            "legs": {"type": "integer"},
            "cues": {"type": "array", "items": {"enum": ["F1", "F2", "V1"]}, "minItems": 1},
        },
    }
    ask = [
        {
            "role": "user",
            "content": "Name the most common pet, its number of legs, and which of the cues "
            "F1 (four legs seen) and F2 (a tail seen) and V1 (a bark heard) show it, in JSON.",
        }
    ]
    got = {}
    for jump in (False, True):
        llama = CheckFirstLlama(model_path=path, n_ctx=512, n_threads=2, seed=0, verbose=False)
        llama.jump_forward = jump
        evals: list[int] = []
        step = llama.eval
        llama.eval = lambda t, step=step, evals=evals: evals.append(len(t)) or step(t)
        out = llama.create_chat_completion(
            messages=ask,
            temperature=0.0,
            max_tokens=60,
            response_format={"type": "json_object", "schema": schema},
        )
        reply = out["choices"][0]["message"]["content"]
        got[jump] = (json.loads(reply), out["usage"]["completion_tokens"], evals, llama._sampler)
    (_, n_plain, evals_plain, s_plain) = got[False]
    (fast, n_fast, evals_fast, s_fast) = got[True]
    assert list(fast) == ["animal", "legs", "cues"] and fast["animal"] in {"okapi", "axolotl"}
    assert isinstance(fast["legs"], int) and set(fast["cues"]) <= {"F1", "F2", "V1"}
    assert s_plain.forced == 0 and s_fast.forced > 0
    # after the prompt, without the jump each generated token is a decode step of its own;
    # with it, forced tokens go in with the sampled one before them: fewer steps than tokens
    assert set(evals_plain[1:]) == {1} and len(evals_plain) - 1 in (n_plain - 1, n_plain)
    assert len(evals_fast) - 1 < sum(evals_fast[1:]) <= n_fast


@pytest.mark.slow
def test_jump_forward_never_evaluates_past_the_context():
    """A call whose prompt and max_tokens fill the context exactly, cut at several points: the
    forced text evaluated ahead of the tokens handed out must stop at the context's end (it
    crashed llama_decode at 11 of 26 cut points before the cap)."""
    from affectlens.agent.llm.grammar_sampler import CheckFirstLlama

    n_ctx = 256
    path = str(model_path("qwen2.5-0.5b", Settings().model_dir))
    llama = CheckFirstLlama(model_path=path, n_ctx=n_ctx, n_threads=2, seed=0, verbose=False)
    schema = {
        "type": "object",
        "required": ["animal", "legs"],
        "properties": {"animal": {"enum": ["okapi", "axolotl"]}, "legs": {"type": "integer"}},
    }

    def ask(pad: int, max_tokens: int) -> dict:
        text = "Name the most common pet and its number of legs, in JSON. Notes: " + "word " * pad
        return llama.create_chat_completion(
            messages=[{"role": "user", "content": text}],
            temperature=0.0,
            max_tokens=max_tokens,
            response_format={"type": "json_object", "schema": schema},
        )

    base = ask(150, 1)["usage"]["prompt_tokens"]
    for max_tokens in (6, 8, 10, 12):  # without the cap llama_decode raised here
        out = ask(150 + n_ctx - max_tokens - base, max_tokens)
        assert out["usage"]["prompt_tokens"] + max_tokens == n_ctx  # the context is full
