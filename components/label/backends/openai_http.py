"""Any OpenAI-compatible chat endpoint (a vLLM server, llama.cpp server, a hosted API).

Requests run in a thread pool bounded by `concurrency`; transient failures (connection errors,
timeouts, 408/429/5xx) are retried with exponential backoff; other 4xx fail at once.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from components.label.backends.base import Completion, Request, engine_tag

_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    """The endpoint refused a request in a way a retry cannot fix, or kept failing."""


def _retryable(err: BaseException) -> bool:
    if isinstance(err, httpx.HTTPStatusError):
        return err.response.status_code in _RETRY_STATUS
    return isinstance(err, httpx.TransportError)  # connect/read errors, timeouts, dropped connections


class OpenAIBackend:
    """POST {base_url}/chat/completions, one request per prompt, `concurrency` in flight."""

    def __init__(self, base_url: str, model: str, concurrency: int = 4, timeout: float = 120.0,
                 max_attempts: int = 5, api_key: str | None = None, backoff: float = 0.5) -> None:
        self.engine = engine_tag("openai")
        self.model = model
        self.concurrency = concurrency
        self.stats: dict[str, int] = {"http_requests": 0, "http_retries": 0}
        self._lock = threading.Lock()
        self._attempts = max_attempts
        self._backoff = backoff
        key = api_key or os.environ.get("OPENAI_API_KEY")
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
            headers={"Authorization": f"Bearer {key}"} if key else {},
        )

    def length(self, request: Request) -> int:
        return sum(len(m["content"]) for m in request.messages)  # no tokenizer client-side: characters

    def generate(self, requests: list[Request]) -> list[Completion]:
        if len(requests) <= 1 or self.concurrency == 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))

    def _count(self, name: str) -> None:
        with self._lock:
            self.stats[name] += 1

    def _on_retry(self, state: RetryCallState) -> None:
        self._count("http_retries")

    def _one(self, request: Request) -> Completion:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": list(request.messages),
            "max_tokens": request.max_new_tokens,
            "temperature": request.temperature,
        }
        if request.temperature > 0:
            body["top_p"] = request.top_p
            body["seed"] = request.seed
        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential_jitter(initial=self._backoff, max=30.0),
            retry=retry_if_exception(_retryable),
            before_sleep=self._on_retry,
            reraise=True,
        )
        try:
            data = retrying(self._post, body)
        except httpx.HTTPStatusError as err:
            raise EndpointError(f"{err.request.url} answered {err.response.status_code}: {err.response.text[:300]}") from err
        except httpx.TransportError as err:
            raise EndpointError(f"{self._client.base_url}: {type(err).__name__}: {err}") from err
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            usage = data.get("usage") or {}
        except (KeyError, IndexError, TypeError) as err:
            raise EndpointError(f"malformed completion from {self._client.base_url}: {str(data)[:300]}") from err
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        return Completion(text.strip(), finish, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0)))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        self._count("http_requests")
        resp = self._client.post("/chat/completions", json=body)
        resp.raise_for_status()
        return resp.json()

    def close(self) -> None:
        self._client.close()
