"""The multimodal path: the clip's key frames reach a vision-language model.

- OpenAI-compatible backend (how a served MLLM such as a vLLM-hosted Qwen2-VL is reached): the
  real analysis graph on the real face clip against a stdlib HTTP server that checks the key
  frames arrive as JPEG image parts and answers the per-analysis JSON schema it was sent.
- transformers backend: a tiny LLaVA (CLIP vision tower + 1-layer Llama) built here from its
  config, no download. Its language weights are set so that it spells a known JSON reply (the
  trick of test_llm's text model), so the real processor -> generate -> parse path is checked.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from openai_stub import Server, completion
from pydantic import BaseModel, Field

from affectlens.agent.llm import get_llm
from affectlens.agent.run import analyze
from affectlens.settings import Settings
from affectlens.tools.media import load
from affectlens.tools.scene import key_frame_indices

pytestmark = pytest.mark.slow  # real models (face, whisper, MiniLM, a VLM): seconds each


class Reading(BaseModel):
    emotion: str
    valence: float = Field(ge=-1, le=1)


QUESTION = [
    {"role": "system", "content": "You name the emotion a face shows. Answer in JSON."},
    {"role": "user", "content": "Which emotion do these frames show?"},
]


# ----------------------------------------------------------------------------- openai


def _fill(schema: dict, node: dict):
    """A value valid for ``node`` of a JSON schema: first enum/const ids, the first basic
    emotion, numbers in range; enough for the per-analysis reading schema."""
    if "$ref" in node:
        return _fill(schema, schema["$defs"][node["$ref"].split("/")[-1]])
    if "const" in node:
        return node["const"]
    if "enum" in node:
        return node["enum"][0]
    if "anyOf" in node:
        return _fill(schema, node["anyOf"][0])
    kind = node.get("type")
    if kind == "object":
        return {k: _fill(schema, v) for k, v in node.get("properties", {}).items()}
    if kind == "array":
        return [_fill(schema, node["items"])] * max(1, node.get("minItems", 0))
    if kind in ("number", "integer"):
        return 0.5
    if kind == "string":
        return "The frames and cues show it."
    return None


def answer_the_schema(body: dict) -> tuple[int, dict]:
    """The stub's reply: a filled copy of the per-analysis schema it was sent (happiness)."""
    schema = body["response_format"]["json_schema"]["schema"]
    reply = _fill(schema, schema)
    reply["dominant"] = "happiness"
    return 200, completion(json.dumps(reply))


def test_openai_backend_sends_the_key_frames_as_image_parts(face_clip, tmp_path):
    from PIL import Image

    with Server(answer_the_schema) as server:
        settings = Settings(
            data_dir=tmp_path,
            llm_backend="openai",
            llm_base_url=server.url,
            llm_model="served-vlm",
            llm_multimodal=True,
            verify_max_rounds=0,
        )
        result = analyze(face_clip, settings, without=["speech", "voice", "scene"])
    assert len(server.requests) == 1
    content = server.requests[0]["messages"][-1]["content"]
    texts = [p["text"] for p in content if p["type"] == "text"]
    images = [p["image_url"]["url"] for p in content if p["type"] == "image_url"]
    assert any("F1" in t for t in texts)  # the cues still go as text
    media = load(face_clip, settings)
    keys = [media.frames[i] for i in key_frame_indices(len(media.frames))]
    assert len(images) == len(keys) > 1
    for url, frame in zip(images, keys):
        assert url.startswith("data:image/jpeg;base64,")
        sent = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
        assert sent.shape == frame.image.shape
        assert np.abs(sent.astype(int) - frame.image.astype(int)).mean() < 6  # JPEG, same frame
    assert result.reading.dominant == "happiness" and server.url in result.models["reason"]
    assert result.verification.grounded, result.verification.problems


def test_a_text_only_openai_model_gets_no_images(face_clip, tmp_path):
    with Server(answer_the_schema) as server:
        settings = Settings(
            data_dir=tmp_path,
            llm_backend="openai",
            llm_base_url=server.url,
            llm_model="served-text",
            verify_max_rounds=0,
        )
        analyze(face_clip, settings, without=["speech", "voice", "scene"])
    assert isinstance(server.requests[0]["messages"][-1]["content"], str)


# ----------------------------------------------------------------------------- transformers

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for p in m['content'] %}"
    "{% if p['type'] == 'image' %}<image>{% elif p['type'] == 'text' %}{{ p['text'] }}"
    "{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
REPLY = '{"emotion": "happiness", "valence": 0.7}'


def _tiny_llava(path: Path) -> Path:
    """LLaVA: a 1-layer CLIP vision tower (32 px, 8 px patches: 17 image tokens) and a 1-layer
    Llama whose blocks are zeroed and whose head, after the generation prompt, spells REPLY."""
    import torch
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        ["You name emotions from frames.", "Answer in JSON."],
        trainers.BpeTrainer(
            vocab_size=300,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>"],
        ),
    )
    tok.add_tokens([AddedToken(REPLY, normalized=False)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=TEMPLATE,
    )
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(
            size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
        ),
        tokenizer=fast,
        patch_size=8,
        vision_feature_select_strategy="full",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=TEMPLATE,
    )
    processor.save_pretrained(path)
    vocab = len(fast)
    hidden = 64 * ((vocab + 63) // 64)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
        text_config=LlamaConfig(
            vocab_size=vocab,
            hidden_size=hidden,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=4,
            eos_token_id=fast.eos_token_id,
            pad_token_id=fast.pad_token_id,
            bos_token_id=None,
            tie_word_embeddings=False,
        ),
        image_token_index=fast.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
    )
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(config)
    last = fast.convert_tokens_to_ids("\u010a")  # byte-level "\n" ends the generation prompt
    answer = fast.convert_tokens_to_ids(REPLY)
    lm = model.model.language_model
    with torch.no_grad():
        lm.embed_tokens.weight.copy_(torch.eye(vocab, hidden))
        for layer in lm.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        head = torch.zeros(vocab, hidden)
        head[fast.eos_token_id, :] = 1.0  # every token -> end, except:
        head[:, last] = 0.0
        head[answer, last] = 2.0  # generation prompt -> the JSON reply
        model.lm_head.weight.copy_(head)
    model.save_pretrained(path)
    return path


def test_transformers_vision_model_sees_the_frames_and_its_reply_is_parsed(face_clip, tmp_path):
    path = _tiny_llava(tmp_path / "tiny-llava")
    llm = get_llm(Settings(llm_backend="transformers", llm_model=str(path), device="cpu"))
    media = load(face_clip, Settings())
    frames = [media.frames[i].image for i in key_frame_indices(len(media.frames))]
    seen: list[dict] = []
    generate = llm.model.generate

    def spy(**kwargs):
        seen.append(kwargs)
        return generate(**kwargs)

    llm.model.generate = spy
    assert llm.chat(QUESTION, Reading, images=frames, max_tokens=4) == Reading(
        emotion="happiness", valence=0.7
    )
    pixels, ids = seen[0]["pixel_values"], seen[0]["input_ids"]
    assert pixels.shape[0] == len(frames) > 1
    assert int((ids == llm.model.config.image_token_index).sum()) == 17 * len(frames)
    # the frames themselves went in: different frames, different pixel tensors
    assert not np.allclose(pixels[0].numpy(), pixels[-1].numpy())
    # without frames the same model answers from the text alone
    assert llm.chat(QUESTION, max_tokens=4) == REPLY
    assert "pixel_values" not in seen[-1]
