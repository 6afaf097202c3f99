"""The ``transformers`` backend: a local Hugging Face model directory in-process; structured
output by validated retry (schema in the prompt, parse, validate, feed the error back)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from affectlens.agent.llm.protocol import (
    LLMError,
    Sampling,
    check_messages,
    validated,
    with_schema_prompt,
)
from affectlens.settings import Settings

TRANSFORMERS_ATTEMPTS = 3  # unconstrained decoding needs more chances


class TransformersLLM:
    """A local Hugging Face model directory in-process; validated retry for JSON. A
    vision-language model (its config has a ``vision_config``: LLaVA, Qwen2-VL ...) is loaded
    with its processor, and the key frames passed as ``images`` go into its prompt."""

    def __init__(self, settings: Settings):
        import torch
        import transformers
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForImageTextToText,
            AutoProcessor,
            AutoTokenizer,
        )

        self.settings = settings
        path = Path(settings.llm_model).expanduser()
        if not (path / "config.json").is_file():
            raise LLMError(
                f"transformers LLM {settings.llm_model!r} is not a local model directory "
                "(no config.json); hub ids are not downloaded here"
            )
        self.device = settings.resolved_device
        dtype = torch.float16 if self.device == "cuda" else torch.float32
        self.processor: Any = None  # set for vision models (AutoProcessor)
        auto: Any
        try:
            if getattr(AutoConfig.from_pretrained(path), "vision_config", None) is not None:
                self.processor = AutoProcessor.from_pretrained(path)
                self.tokenizer = self.processor.tokenizer
                auto = AutoModelForImageTextToText
            else:
                self.tokenizer = AutoTokenizer.from_pretrained(path)
                auto = AutoModelForCausalLM
            self.model = auto.from_pretrained(path, dtype=dtype).to(self.device)
        except (OSError, ValueError) as exc:
            raise LLMError(f"transformers could not load {path}: {exc}") from exc
        self.model.eval()
        template = self.processor or self.tokenizer
        if template.chat_template is None:
            raise LLMError(f"the {type(template).__name__} in {path} has no chat_template")
        self._torch = torch
        self._lock = threading.Lock()
        self.sampling = Sampling.of(settings)
        self.model_id = f"{path.name} (transformers {transformers.__version__}, {self.device})"

    def _inputs(self, messages: list[dict], images: list[np.ndarray] | None = None) -> Any:
        if self.processor is None:  # text-only: frames reach it as cues
            return self.tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            ).to(self.device)
        return self._vision_inputs(messages, list(images or []))

    def _vision_inputs(self, messages: list[dict], images: list[np.ndarray]) -> Any:
        """Content parts in the processor's format, the images ahead of the last user text."""
        from PIL import Image

        parts = []
        last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
        for i, m in enumerate(messages):
            text = (
                [{"type": "text", "text": m["content"]}]
                if isinstance(m["content"], str)
                else list(m["content"])
            )
            pics = [{"type": "image"} for _ in images] if i == last_user else []
            parts.append({"role": m["role"], "content": [*pics, *text]})
        prompt = self.processor.apply_chat_template(
            parts, add_generation_prompt=True, tokenize=False
        )
        pil = [Image.fromarray(np.asarray(im, dtype=np.uint8)).convert("RGB") for im in images]
        return self.processor(text=prompt, images=pil or None, return_tensors="pt").to(self.device)

    def _generate_kwargs(self, inputs: Any, max_tokens: int | None, s: Sampling) -> dict:
        temperature = s.temperature
        pad = self.tokenizer.pad_token_id
        kwargs = dict(
            **inputs,
            max_new_tokens=max_tokens or s.max_tokens,
            do_sample=temperature > 0,
            pad_token_id=pad if pad is not None else self.tokenizer.eos_token_id,
        )
        if temperature > 0:
            kwargs["temperature"] = temperature
        return kwargs

    def _generate(
        self,
        messages: list[dict],
        max_tokens: int | None,
        s: Sampling,
        images: list[np.ndarray] | None = None,
    ) -> str:
        inputs = self._inputs(messages, images)
        with self._lock, self._torch.inference_mode():
            self._torch.manual_seed(s.seed)
            out = self.model.generate(**self._generate_kwargs(inputs, max_tokens, s))
        return self.tokenizer.decode(
            out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
        )

    def chat(
        self,
        messages: list[dict],
        schema: type[BaseModel] | None = None,
        *,
        images: list[np.ndarray] | None = None,  # used by a vision-language model only
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> str | BaseModel:
        check_messages(messages)
        s = sampling or self.sampling
        if schema is None:
            return self._generate(messages, max_tokens, s, images)
        return validated(
            lambda msgs: self._generate(msgs, max_tokens, s, images),
            with_schema_prompt(messages, schema),
            schema,
            TRANSFORMERS_ATTEMPTS,
            self.model_id,
        )

    def stream(
        self,
        messages: list[dict],
        *,
        max_tokens: int | None = None,
        sampling: Sampling | None = None,
    ) -> Iterator[str]:
        """Pieces as ``generate`` makes them, in a worker thread that holds the lock; closing
        the stream early stops generation at the next token and joins the worker."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        check_messages(messages)
        s = sampling or self.sampling
        inputs = self._inputs(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        stop = threading.Event()

        class Stopped(StoppingCriteria):
            def __call__(self, input_ids, scores, **kw) -> bool:
                return stop.is_set()

        kwargs = self._generate_kwargs(inputs, max_tokens, s)
        kwargs["stopping_criteria"] = StoppingCriteriaList([Stopped()])
        failed: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, self._torch.inference_mode():
                    self._torch.manual_seed(s.seed)
                    self.model.generate(**kwargs, streamer=streamer)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
                failed.append(exc)
                streamer.end()

        worker = threading.Thread(target=run, daemon=True, name="affectlens-llm-stream")

        def consume() -> Iterator[str]:
            worker.start()
            try:
                yield from (piece for piece in streamer if piece)
                if failed:
                    raise LLMError(f"{self.model_id}: {failed[0]}") from failed[0]
            finally:
                stop.set()
                worker.join()

        return consume()
