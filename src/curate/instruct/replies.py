"""The shape of an OpenAI-compatible chat-completion reply: what counts as malformed.

The client builds its response models without validation, so a reply that parses as JSON can
still lack the protocol's shape; those are `llm_malformed_response` (retried), while an empty
or null content is an empty answer.
"""

from __future__ import annotations

from typing import Any


class MalformedReply(ValueError):
    """A reply that parsed but is not a chat completion."""


def _field(value: Any, name: str) -> Any:
    # The client builds its response models without validation: a field may be a plain dict
    # member, an attribute, or absent.
    if isinstance(value, dict):
        return value.get(name)
    return getattr(value, name, None)


def reply_content(response: Any) -> tuple[str | None, Any]:
    """(content, finish_reason) of a chat completion's first choice; `MalformedReply` when the
    reply lacks the protocol's shape (no choices list, a choice without a message object, a
    content that is not text). An empty or null content is an empty answer, not a malformed one."""
    choices = _field(response, "choices")
    if not isinstance(choices, list) or not choices:
        raise MalformedReply(f"no choices list in the reply (choices={choices!r:.80})")
    message = _field(choices[0], "message")
    if message is None or isinstance(message, str | int | float | list):
        raise MalformedReply(f"the first choice has no message object ({message!r:.80})")
    content = _field(message, "content")
    if content is not None and not isinstance(content, str):
        raise MalformedReply(f"the message content is not text ({content!r:.80})")
    return content, _field(choices[0], "finish_reason")
