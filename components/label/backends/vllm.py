"""vLLM offline batch backend (GPUs). Imported only when `label.backend: vllm` is chosen."""

from __future__ import annotations

from components.label.backends.base import Completion, Request, engine_tag


class VLLMBackend:
    """`LLM.generate` over pre-tokenised chat prompts, one SamplingParams per request."""

    def __init__(self, model: str, precision: str = "bf16", seed: int = 0, **engine_kwargs: object) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as err:
            raise ImportError("label.backend 'vllm' needs the vllm package (a GPU machine): pip install vllm") from err
        self.engine = engine_tag("vllm", precision)
        self.stats: dict[str, int] = {}
        self._params = SamplingParams
        self.llm = LLM(model=model, dtype="bfloat16" if precision == "bf16" else "float32", seed=seed, **engine_kwargs)
        self.tokenizer = self.llm.get_tokenizer()

    def _ids(self, request: Request) -> list[int]:
        # Tokenise the chat-templated text without adding special tokens again (no double BOS).
        text = self.tokenizer.apply_chat_template(list(request.messages), add_generation_prompt=True, tokenize=False)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def length(self, request: Request) -> int:
        return len(self._ids(request))

    def generate(self, requests: list[Request]) -> list[Completion]:
        prompts = [{"prompt_token_ids": self._ids(r)} for r in requests]
        params = [
            self._params(temperature=r.temperature, top_p=r.top_p if r.temperature > 0 else 1.0,
                         max_tokens=r.max_new_tokens, seed=r.seed)
            for r in requests
        ]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        result = []
        for o in outs:
            c = o.outputs[0]
            finish = "length" if c.finish_reason == "length" else "stop"
            result.append(Completion(c.text.strip(), finish, len(o.prompt_token_ids), len(c.token_ids)))
        return result

    def close(self) -> None:
        self.llm = None
