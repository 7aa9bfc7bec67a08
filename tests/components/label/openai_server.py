"""A small OpenAI-compatible chat server over the embedded HF model, for the `openai` backend test.

Run as its own process: `python openai_server.py --model DIR --fd N [--fail-first K]`
(N: a listening loopback socket passed in by the test).
The first K chat requests answer HTTP 500, so client retries are exercised.
GET /stats reports how many requests came and how many were failed on purpose.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from components.label.backends.base import Request as GenRequest
from components.label.backends.hf import HFBackend


def build_app(backend: HFBackend, fail_first: int) -> FastAPI:
    app = FastAPI()
    state = {"requests": 0, "failed": 0}
    lock = threading.Lock()

    @app.get("/health")
    def health() -> dict:
        return {"ok": True}

    @app.get("/stats")
    def stats() -> dict:
        return dict(state)

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": "embedded", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        with lock:
            state["requests"] += 1
            fail = state["failed"] < fail_first
            if fail:
                state["failed"] += 1
        if fail:
            return JSONResponse({"error": {"message": "injected failure"}}, status_code=500)
        temp = float(body.get("temperature") or 0.0)
        req = GenRequest(
            key="", messages=tuple(body["messages"]), max_new_tokens=int(body.get("max_tokens") or 128),
            temperature=temp, top_p=float(body.get("top_p") or 1.0), seed=body.get("seed"),
        )
        # generate() holds the model lock; run it off the event loop so /health stays responsive.
        (c,) = await asyncio.to_thread(backend.generate, [req])
        return {
            "id": f"chatcmpl-{state['requests']}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", "embedded"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": c.text},
                         "finish_reason": c.finish}],
            "usage": {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
                      "total_tokens": c.prompt_tokens + c.completion_tokens},
        }

    return app


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--fd", type=int, required=True, help="a listening socket the test bound (no port race)")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--fail-first", type=int, default=0)
    args = ap.parse_args()
    backend = HFBackend(args.model, precision=args.precision, threads=args.threads)
    uvicorn.run(build_app(backend, args.fail_first), fd=args.fd, log_level="warning")


if __name__ == "__main__":
    main()
