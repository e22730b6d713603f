"""Talking to an OpenAI-compatible server, on the wire and with the ``openai`` client. Lesson 10.

vLLM, llama.cpp's server, Ollama, TensorRT-LLM's ``trtllm-serve`` and most hosted APIs speak the
same HTTP protocol, so one client measures them all:

* ``POST /v1/completions`` with JSON ``{"model", "prompt", "max_tokens", "temperature",
  "stream"}`` (``/v1/chat/completions`` takes ``messages`` instead of ``prompt``).
* With ``"stream": true`` the reply is **server-sent events**: lines ``data: {json}``, separated
  by blank lines, each JSON holding the next piece of text in ``choices[0].text`` (or
  ``choices[0].delta.content`` for chat), and a last line ``data: [DONE]``.
  ``"stream_options": {"include_usage": true}`` asks for a final chunk with token counts.

``stream_completion`` does this with the standard library only (``http.client``), recording when
each chunk arrives - the raw material of TTFT and inter-token latency (see ``latency``).
``openai_client`` returns the official client pointed at a local server.
"""
from __future__ import annotations

import http.client
import json
import time
import urllib.parse
import urllib.request
from typing import Iterable, Iterator

from .latency import RequestTrace


def iter_sse_data(lines: Iterable[bytes | str]) -> Iterator[dict]:
    """The JSON payloads of a server-sent-event stream, until ``data: [DONE]``.

    Blank lines separate events, lines starting with ``:`` are keep-alive comments, other
    fields (``event:``, ``id:``) are not used by the OpenAI protocol.
    """
    for raw in lines:
        line = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        line = line.rstrip("\r\n")
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        if payload:
            yield json.loads(payload)


def chunk_text(chunk: dict) -> str:
    """The text a streamed chunk adds (completions or chat format); '' for a usage-only chunk."""
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    choice = choices[0]
    if "text" in choice:
        return choice.get("text") or ""
    return (choice.get("delta") or {}).get("content") or ""


def completion_body(model: str, prompt: str, max_tokens: int, *, stream: bool = True,
                    fixed_length: bool = True, temperature: float = 0.0, banned_tokens=()) -> dict:
    """The JSON of a completions request. ``fixed_length`` asks for exactly ``max_tokens``, so
    every engine does the same amount of work: vLLM understands ``ignore_eos``/``min_tokens``;
    llama.cpp's server ignores them, so the end-of-sequence ids go in ``banned_tokens``, sent as
    the standard ``logit_bias`` (-100 = never pick this token)."""
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens,
            "temperature": temperature, "stream": stream}
    if stream:
        body["stream_options"] = {"include_usage": True}
    if fixed_length:
        body.update(ignore_eos=True, min_tokens=max_tokens)
        if banned_tokens:
            body["logit_bias"] = {str(int(t)): -100 for t in banned_tokens}
    return body


def stream_completion(base_url: str, model: str, prompt: str, max_tokens: int, *,
                      timeout: float = 300.0, fixed_length: bool = True,
                      banned_tokens=()) -> RequestTrace:
    """Send one streaming completion with plain HTTP; return its ``RequestTrace``.

    Errors (refused connection, HTTP error, broken stream) are recorded in ``trace.error``
    rather than raised, so a load test reports failures instead of dying on the first one.
    """
    parts = urllib.parse.urlsplit(base_url)
    body = json.dumps(completion_body(model, prompt, max_tokens, fixed_length=fixed_length,
                                      banned_tokens=banned_tokens))
    trace = RequestTrace(start=time.perf_counter())
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("POST", "/v1/completions", body=body,
                           headers={"Content-Type": "application/json",
                                    "Accept": "text/event-stream"})
        reply = connection.getresponse()
        if reply.status != 200:
            trace.error = f"HTTP {reply.status}: {reply.read()[:300]!r}"
            return trace
        pieces = []
        for chunk in iter_sse_data(reply):
            text = chunk_text(chunk)
            if text:
                trace.token_times.append(time.perf_counter())
                pieces.append(text)
            usage = chunk.get("usage")
            if usage:
                trace.n_tokens = usage.get("completion_tokens")
                trace.prompt_tokens = usage.get("prompt_tokens")
        trace.text = "".join(pieces)
    except (OSError, http.client.HTTPException, ValueError) as error:
        trace.error = f"{error.__class__.__name__}: {error}"
    finally:
        connection.close()
    return trace


def get_json(url: str, timeout: float = 10.0) -> dict:
    """GET a JSON document (e.g. ``/v1/models``)."""
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return json.loads(reply.read())


def get_text(url: str, timeout: float = 10.0) -> str:
    """GET a text document (e.g. a server's Prometheus ``/metrics``)."""
    with urllib.request.urlopen(url, timeout=timeout) as reply:
        return reply.read().decode("utf-8", "replace")


def post_json(url: str, body: dict, timeout: float = 300.0) -> dict:
    """POST JSON, return the JSON reply (non-streaming)."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def openai_client(base_url: str, timeout: float = 300.0):
    """The official ``openai`` client for a local OpenAI-compatible server (no API key needed)."""
    from openai import OpenAI
    return OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key="not-needed-locally",
                  timeout=timeout, max_retries=0)
