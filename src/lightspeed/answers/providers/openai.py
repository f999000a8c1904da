"""The `openai` provider: any OpenAI-compatible `/v1/chat/completions` endpoint.

vLLM, Ollama, llama.cpp and OpenAI itself. The retrieved passages go into the
system message as context. Failures to reach the endpoint are 503, answers
that are errors or unusable are 502.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import aiohttp

from lightspeed.answers.providers.base import Completion, Question, Usage, count_tokens, user_text
from lightspeed_common.errors import BadGateway, ServiceUnavailable
from lightspeed_common.http.outbound import Outbound

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful assistant. Answer the question using the context passages when they "
    "are relevant, and say so when they do not contain the answer."
)
HEALTH_CACHE_SECONDS = 10.0
UNAVAILABLE = "Unable to connect to the answer provider"
FAILED = "The answer provider returned an error"


def user_content(question: Question) -> str | list[dict[str, Any]]:
    """The question and its text attachments; with images, a list of parts: the text, then each image
    as an `image_url` part holding a data URL (what vision models behind this API read)."""
    text = user_text(question)
    images = [a for a in question.attachments if a.is_image]
    if not images:
        return text
    parts: list[dict[str, Any]] = [{"type": "text", "text": text}]
    for image in images:
        parts.append({"type": "image_url", "image_url": {"url": f"data:{image.content_type};base64,{image.content}"}})
    return parts


def _estimate(messages: list[dict[str, Any]]) -> int:
    """Tokens of the text in `messages`, for a server that reports no usage."""
    texts = [m["content"] if isinstance(m["content"], str) else m["content"][0]["text"] for m in messages]
    return sum(count_tokens(text) for text in texts)


def build_messages(question: Question) -> list[dict[str, Any]]:
    system = question.system_prompt or DEFAULT_SYSTEM_PROMPT
    if question.hits:
        context = "\n\n---\n\n".join(hit.passage.text for hit in question.hits)
        system = f"{system}\n\nContext:\n{context}"
    user = user_content(question)
    earlier = []
    for exchange in question.history:
        earlier += [{"role": "user", "content": exchange.question}, {"role": "assistant", "content": exchange.answer}]
    return [{"role": "system", "content": system}, *earlier, {"role": "user", "content": user}]


class OpenAIProvider:
    name = "openai"

    def __init__(
        self, base_url: str, model: str, api_key: str | None, timeout: float, max_tokens: int, *, outbound: Outbound
    ) -> None:
        self._base = base_url.rstrip("/")
        self.models: Sequence[str] = (model,)
        self._max_tokens = max_tokens
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._via = outbound.via(self._base)
        self._session = outbound.session(
            headers=headers, timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10))
        )
        self._health: tuple[float, str | None] = (0.0, None)

    def _body(self, question: Question, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": question.model,
            "messages": build_messages(question),
            "max_tokens": self._max_tokens,
            "stream": stream,
        }
        if stream:  # the last chunk then carries the usage
            body["stream_options"] = {"include_usage": True}
        return body

    async def complete(self, question: Question) -> Completion:
        url = f"{self._base}/chat/completions"
        try:
            async with self._session.post(url, json=self._body(question, False), **self._via) as resp:
                await _raise_for_status(resp)
                payload = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceUnavailable(UNAVAILABLE, _describe(exc)) from exc
        except ValueError as exc:
            raise BadGateway(FAILED, "the reply is not JSON") from exc
        text = _completion_text(payload)
        usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
        return Completion(
            text,
            int(usage.get("prompt_tokens") or _estimate(build_messages(question))),
            int(usage.get("completion_tokens") or count_tokens(text)),
        )

    async def stream(self, question: Question, usage: Usage) -> AsyncGenerator[str, None]:
        url = f"{self._base}/chat/completions"
        received: list[str] = []
        try:
            async with self._session.post(url, json=self._body(question, True), **self._via) as resp:
                await _raise_for_status(resp)
                async for raw in resp.content:
                    line = raw.decode("utf-8", errors="replace").strip()
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    piece = _delta_text(data, usage)
                    if piece:
                        received.append(piece)
                        yield piece
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ServiceUnavailable(UNAVAILABLE, _describe(exc)) from exc
        if not usage.output_tokens:  # the server sent no usage chunk
            usage.input_tokens = _estimate(build_messages(question))
            usage.output_tokens = count_tokens("".join(received))

    async def unready_reason(self) -> str | None:
        checked_at, reason = self._health
        if time.monotonic() - checked_at < HEALTH_CACHE_SECONDS:
            return reason
        try:
            async with self._session.get(
                f"{self._base}/models", timeout=aiohttp.ClientTimeout(total=2), **self._via
            ) as resp:
                reason = None if resp.status < 500 else f"the provider answered {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = f"the provider cannot be reached: {_describe(exc)}"
        self._health = (time.monotonic(), reason)
        return reason

    async def close(self) -> None:
        await self._session.close()


async def _raise_for_status(resp: aiohttp.ClientResponse) -> None:
    if resp.status < 400:
        return
    detail = (await resp.text())[:200]
    cause = f"the provider answered HTTP {resp.status}: {detail}"
    if resp.status in (408, 429) or resp.status >= 500:
        raise ServiceUnavailable(UNAVAILABLE, cause)
    raise BadGateway(FAILED, cause)


def _completion_text(payload: Any) -> str:
    try:
        content = payload["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError) as exc:
        raise BadGateway(FAILED, "the reply has no choices[0].message.content") from exc
    if not isinstance(content, str):
        raise BadGateway(FAILED, "the reply's message content is not text")
    return content


def _delta_text(data: str, usage: Usage) -> str:
    """A chunk's text; the chunk with `usage` (sent last, with no choices) fills `usage`."""
    try:
        chunk = json.loads(data)
        content = chunk["choices"][0]["delta"].get("content") if chunk["choices"] else None
        reported = chunk.get("usage")
        if isinstance(reported, dict):
            usage.input_tokens = int(reported.get("prompt_tokens") or 0)
            usage.output_tokens = int(reported.get("completion_tokens") or 0)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise BadGateway(FAILED, "a streamed chunk is not a chat completion delta") from exc
    return content if isinstance(content, str) else ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the request timed out"
    if isinstance(exc, aiohttp.ClientConnectorError) and not str(exc.os_error):
        # A reset during the TLS handshake (no common version, a refused client certificate) says nothing.
        return f"cannot connect to {exc.host}:{exc.port}: {type(exc.os_error).__name__} (ssl: {exc.ssl is not False})"
    return str(exc) or type(exc).__name__
