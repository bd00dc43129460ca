"""LLM conversation generator plumbing: prompt, content-addressed cache, budget, retrying client.

Lessons from the reference implementations: LLaVA-Med keeps results in memory until the end
and drops a failed batch after a sleep. Here every answer is written to the cache atomically
the moment it arrives (so a crash loses nothing answered and a rerun makes no call for it), a
failed request is retried with our own backoff and then becomes a named error, and a budget
cap turns the remaining records into `budget_exceeded` errors instead of losing them.

The API key is read from the environment variable the config names, handed to the client, and
never written: neither the cache entries nor the records hold it.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import yaml

from curate import fs
from curate.errors import BudgetExceeded, CurateError, SpecError
from curate.instruct import records as R
from curate.instruct.config import LLMOptions
from curate.instruct.replies import MalformedReply, reply_content
from curate.resources import resource_dir
from curate.stages import Record

CACHE_FORMAT = 1


class LLMRequestFailed(CurateError):
    """The endpoint did not give a usable answer (after retries where retrying makes sense)."""

    reason = "llm_request_failed"


class MissingAPIKey(CurateError):
    """The environment variable named by `api_key_env` is not set."""

    reason = "missing_api_key"


# ---------------------------------------------------------------------------------------------
# Prompt


@dataclass(frozen=True)
class Prompt:
    ref: str
    sha: str  # of the file's content: an edit without a new version still changes cache keys
    system: str
    user_template: str
    report_template: str
    examples: tuple[tuple[str, str], ...]  # (user message, assistant message)
    max_mentions: int
    max_source_chars: int

    def user_message(self, caption: str, mentions: list[str]) -> str:
        caption = caption[: self.max_source_chars]
        chosen = [m.strip() for m in mentions if m and m.strip()][: self.max_mentions]
        return self.user_template.format(
            caption=caption, mentions=" ".join(chosen) or "(none)"
        ).strip()

    def messages(self, user_message: str) -> list[dict[str, str]]:
        messages = [{"role": "system", "content": self.system.strip()}]
        for example_user, example_assistant in self.examples:
            messages.append({"role": "user", "content": example_user})
            messages.append({"role": "assistant", "content": example_assistant})
        messages.append({"role": "user", "content": user_message})
        return messages


@cache
def load_prompt(ref: str) -> Prompt:
    path = resource_dir("curation_rules") / "prompts" / f"{ref}.yaml"
    if not path.is_file():
        raise SpecError(f"unknown prompt file {ref!r} (looked for {path})")
    raw = path.read_bytes()
    data = yaml.safe_load(raw) or {}
    where = str(path)
    if f"{data.get('name')}.v{data.get('version')}" != ref:
        raise SpecError(
            f"{where}: declares {data.get('name')}.v{data.get('version')}, file name says {ref}"
        )
    for key in ("system", "user_template", "examples"):
        if not data.get(key):
            raise SpecError(f"{where}: needs `{key}`")
    params = data.get("params") or {}
    for key, entry in params.items():
        if not isinstance(entry, dict) or "value" not in entry or not entry.get("why"):
            raise SpecError(f"{where}: params.{key} needs `value` and a one-line `why`")
    prompt = Prompt(
        ref=ref,
        sha=hashlib.sha256(raw).hexdigest()[:16],
        system=data["system"],
        user_template=data["user_template"],
        report_template=data.get("report_template")
        or "Findings: {findings}\nImpression: {impression}",
        examples=(),
        max_mentions=int(params.get("max_mentions", {}).get("value", 3)),
        max_source_chars=int(params.get("max_source_chars", {}).get("value", 4000)),
    )
    examples = []
    for index, example in enumerate(data["examples"]):
        if not example.get("caption") or not example.get("conversation"):
            raise SpecError(f"{where}: examples[{index}] needs `caption` and `conversation`")
        user = prompt.user_message(example["caption"], list(example.get("mentions") or []))
        examples.append((user, str(example["conversation"]).strip()))
    return Prompt(**{**prompt.__dict__, "examples": tuple(examples)})


def prompt_input(record: Record, prompt: Prompt) -> str:
    """The user message for a record: caption + mentions, or a report's findings + impression."""
    if R.source_schema(record) == R.FIGURE:
        caption = " ".join(
            p for p in (R.text(record, "figure_title"), R.text(record, "caption")) if p
        )
        mentions = R.mentions(record)
        return prompt.user_message(caption, mentions) if caption else ""
    findings, impression = R.text(record, "findings"), R.text(record, "impression")
    if not (findings or impression):
        return ""
    limit = prompt.max_source_chars
    return prompt.report_template.format(
        findings=findings[:limit] or "(none)", impression=impression[:limit] or "(none)"
    ).strip()


# ---------------------------------------------------------------------------------------------
# Cache


def generation_identity(model: str, prompt: Prompt, params: dict[str, Any]) -> str:
    """Everything but the input that decides an answer, as one canonical string."""
    return json.dumps(
        {
            "format": CACHE_FORMAT,
            "model": model,
            "prompt_version": prompt.ref,
            "prompt_sha": prompt.sha,
            "params": params,
        },
        sort_keys=True,
    )


def cache_key(
    model: str, prompt: Prompt, input_hash: str, params: dict[str, Any], identity: str | None = None
) -> str:
    """Content address of an answer: sha256 over (model, prompt version and hash, parameters,
    input hash). `identity` may be passed precomputed (it is the same for a whole run)."""
    identity = identity if identity is not None else generation_identity(model, prompt, params)
    return hashlib.sha256(f"{identity}\n{input_hash}".encode()).hexdigest()


class AnswerCache:
    """One JSON file per answer at <root>/<key[:2]>/<key>.json, written atomically."""

    def __init__(self, root: str) -> None:
        self.local = fs.is_local(root)
        self.root = root.rstrip("/") if not self.local else os.path.abspath(root)
        self._folders: set[str] = set()

    def path(self, key: str) -> str:
        if self.local:
            return f"{self.root}/{key[:2]}/{key}.json"
        return fs.join(self.root, key[:2], f"{key}.json")

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.path(key)
        try:
            if self.local:
                with open(path, "rb", buffering=0) as handle:
                    raw = handle.readall()
            elif fs.exists(path):
                raw = fs.read_bytes(path)
            else:
                return None
        except FileNotFoundError:
            return None
        try:
            entry = json.loads(raw)
        except json.JSONDecodeError:
            return None  # a torn file cannot exist (atomic rename); treat anything odd as a miss
        return entry if isinstance(entry, dict) and entry.get("cache_key") == key else None

    def put(self, key: str, entry: dict[str, Any]) -> None:
        data = json.dumps(entry, sort_keys=True).encode()
        path = self.path(key)
        if not self.local:
            fs.write_bytes_atomic(path, data)
            return
        folder = os.path.dirname(path)
        if folder not in self._folders:
            os.makedirs(folder, exist_ok=True)
            self._folders.add(folder)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Usage and budget


@dataclass
class Usage:
    requests: int = 0  # HTTP requests sent, retries included
    answers: int = 0  # new answers received and cached
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    failed: int = 0
    budget_exceeded: int = 0
    price_per_1k_input: float = 0.0
    price_per_1k_output: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, **counts: int) -> None:
        with self.lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, Any]:
        cost = (
            self.prompt_tokens / 1000 * self.price_per_1k_input
            + self.completion_tokens / 1000 * self.price_per_1k_output
        )
        return {
            "requests": self.requests,
            "answers": self.answers,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "failed": self.failed,
            "budget_exceeded": self.budget_exceeded,
            "estimated_cost": round(cost, 6),
        }


class Budget:
    """Request and token caps for one run. A request reserves its worst case (estimated prompt
    tokens + max_tokens) before it is sent, so concurrent requests cannot overshoot the cap;
    once refused, the budget stays closed so the outcome does not depend on timing luck."""

    def __init__(self, max_requests: int | None, max_tokens: int | None) -> None:
        self.max_requests, self.max_tokens = max_requests, max_tokens
        self.requests = 0
        self.tokens = 0  # settled + reserved
        self.closed = False
        self.lock = threading.Lock()

    def reserve(self, tokens: int) -> None:
        with self.lock:
            over_requests = self.max_requests is not None and self.requests + 1 > self.max_requests
            over_tokens = self.max_tokens is not None and self.tokens + tokens > self.max_tokens
            if self.closed or over_requests or over_tokens:
                self.closed = True
                raise BudgetExceeded(
                    f"budget exhausted: {self.requests}/{self.max_requests} requests, "
                    f"{self.tokens}/{self.max_tokens} tokens"
                )
            self.requests += 1
            self.tokens += tokens

    def settle(self, reserved: int, actual: int) -> None:
        with self.lock:
            self.tokens += actual - reserved


# ---------------------------------------------------------------------------------------------
# Client


@dataclass(frozen=True)
class Answer:
    content: str
    cache_key: str
    cached: bool


def _retry_after_seconds(headers: Any) -> float | None:
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class ChatClient:
    """One chat completion per call, through the `openai` client with its retries disabled."""

    def __init__(self, options: LLMOptions) -> None:
        self.options = options
        self.prompt = load_prompt(options.prompt)
        self.cache = AnswerCache(options.cache_dir)
        self.params = {"temperature": options.temperature, "max_tokens": options.max_tokens}
        self.usage = Usage(
            price_per_1k_input=options.price_per_1k_input,
            price_per_1k_output=options.price_per_1k_output,
        )
        self.budget = Budget(options.budget_requests, options.budget_tokens)
        self.identity = generation_identity(options.model, self.prompt, self.params)
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._jitter = random.Random()  # timing only: never affects outputs

    def _api_key(self) -> str:
        if not self.options.api_key_env:
            return "no-key"  # endpoints such as a local vLLM accept any key
        api_key = os.environ.get(self.options.api_key_env)
        if not api_key:
            raise MissingAPIKey(f"environment variable {self.options.api_key_env} is not set")
        return api_key

    def setup(self) -> None:
        """Check the key now (fail before any work); the HTTP client is built on the first miss,
        so a fully cached rerun never opens one."""
        self._api_key()

    def _connect(self) -> Any:
        with self._client_lock:
            if self._client is None:
                self._client = self._build_client(self._api_key())
        return self._client

    def _build_client(self, api_key: str) -> Any:
        import openai
        from openai.types.chat import ChatCompletion

        try:  # recent openai releases ship their own fork of httpx
            import httpx2 as httpx
        except ImportError:  # pragma: no cover - older openai releases use httpx itself
            import httpx  # type: ignore[no-redef]

        self._response_model = ChatCompletion
        limits = httpx.Limits(
            max_connections=self.options.concurrency,
            max_keepalive_connections=self.options.concurrency,
        )
        return openai.OpenAI(
            base_url=self.options.base_url,
            api_key=api_key,
            max_retries=0,
            timeout=self.options.timeout_s,
            http_client=openai.DefaultHttpxClient(limits=limits),
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def key_for(self, user_message: str) -> str:
        input_hash = hashlib.sha256(user_message.encode()).hexdigest()
        return cache_key(self.options.model, self.prompt, input_hash, self.params, self.identity)

    def cached(self, user_message: str) -> Answer | None:
        key = self.key_for(user_message)
        entry = self.cache.get(key)
        if entry is None:
            return None
        self.usage.add(cache_hits=1)
        return Answer(str(entry.get("content") or ""), key, cached=True)

    def answer(self, user_message: str) -> Answer:
        """The cached answer, or a new one (cached as soon as it arrives)."""
        hit = self.cached(user_message)
        if hit is not None:
            return hit
        client = self._connect()
        key = self.key_for(user_message)
        messages = self.prompt.messages(user_message)
        estimate = sum(len(m["content"]) for m in messages) // 3 + self.options.max_tokens
        last: tuple[str, str] = ("llm_request_failed", "no attempt made")
        for attempt in range(self.options.max_retries + 1):
            if attempt:
                self.usage.add(retries=1)
            self.budget.reserve(estimate)
            self.usage.add(requests=1)
            delay: float | None = None
            try:
                # `post` is the client's documented route for raw requests: same transport,
                # errors and response model as chat.completions.create, without its per-call
                # TypedDict transform of the few-shot messages (3 ms of CPU per request).
                response = client.post(
                    "/chat/completions",
                    cast_to=self._response_model,
                    body={"model": self.options.model, "messages": messages, **self.params},
                )
            except Exception as exc:  # noqa: BLE001 - classified below, re-raised when fatal
                self.budget.settle(estimate, 0)
                reason, retryable, delay = self._classify(exc)
                last = (reason, f"{type(exc).__name__}: {exc}")
                if not retryable:
                    break
                self._sleep(attempt, delay)
                continue
            usage = getattr(response, "usage", None)
            prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
            completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
            self.budget.settle(estimate, prompt_tokens + completion_tokens)
            self.usage.add(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
            try:
                content, finish_reason = reply_content(response)
            except MalformedReply as exc:  # parsed, but not a chat completion: retried
                last = ("llm_malformed_response", str(exc))
                self._sleep(attempt, None)
                continue
            if content is None or not content.strip():
                last = ("llm_empty_answer", "the endpoint answered without content")
                self._sleep(attempt, None)
                continue
            self.cache.put(
                key,
                {
                    "cache_key": key,
                    "format": CACHE_FORMAT,
                    "model": self.options.model,
                    "prompt_version": self.prompt.ref,
                    "prompt_sha": self.prompt.sha,
                    "params": self.params,
                    "input_hash": hashlib.sha256(user_message.encode()).hexdigest(),
                    "content": content,
                    "finish_reason": finish_reason,
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                    },
                },
            )
            self.usage.add(answers=1)
            return Answer(content, key, cached=False)
        raise LLMRequestFailed(
            f"{last[1]} (after {self.options.max_retries + 1} attempts at most)", reason=last[0]
        )

    def _classify(self, exc: Exception) -> tuple[str, bool, float | None]:
        """(reason, retryable, server-requested delay)."""
        import openai

        if isinstance(exc, openai.RateLimitError):
            return "llm_rate_limited", True, _retry_after_seconds(exc.response.headers)
        if isinstance(exc, openai.APITimeoutError):
            return "llm_timeout", True, None
        if isinstance(exc, openai.APIConnectionError):
            return "llm_connection_error", True, None
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            if status >= 500 or status in (408, 409):
                return "llm_server_error", True, _retry_after_seconds(exc.response.headers)
            if status in (401, 403):
                return "llm_auth_error", False, None
            return ("llm_bad_request" if status == 400 else f"llm_http_{status}"), False, None
        if isinstance(exc, (ValueError, openai.APIResponseValidationError)):
            # JSONDecodeError is a ValueError: the endpoint sent a body that is not the protocol
            return "llm_malformed_response", True, None
        raise exc

    def _sleep(self, attempt: int, requested: float | None) -> None:
        if attempt >= self.options.max_retries:
            return  # no retry follows
        cap = self.options.backoff_max_s
        if requested is not None:
            delay = min(requested, cap) * (1 + 0.1 * self._jitter.random())
        else:
            ceiling = min(cap, self.options.backoff_base_s * (2**attempt))
            delay = ceiling / 2 + self._jitter.uniform(0, ceiling / 2)  # "equal jitter"
        time.sleep(delay)
