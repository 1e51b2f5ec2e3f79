"""The AMQP frames of a job message, made from a template instead of field by field.

Every job message of one attempt number and one priority is the same but for its task
id and its job id, and encoding its Celery headers table field by field costs more CPU
than the broker spends on the message. So, for each such pair, one message's properties
and body are encoded once, through the client library, with stand-ins of the ids'
length, and each message after that is the template with its ids written in: exactly
the bytes the library would have sent (checked against the library's own encoding of a
real message when the template is made). A batch's frames then go out in one write.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from amqp import spec
from amqp.serialization import dumps as encode_arguments

TASK_PLACEHOLDER = "7a5b0c1d-0000-4000-8000-00000000a5c0"
JOB_PLACEHOLDER = "0b1e2c3d-0000-4000-8000-00000000b0b0"
"""Stand-ins of the length of a task id and a job id (canonical UUIDs), which occur
nowhere else in a message."""

ID_LENGTH = len(TASK_PLACEHOLDER)

Encode = Callable[[str, str], tuple[bytes, bytes]]
"""``(task id, job id) -> (properties, body)``, as the client library sends them."""


class FrameTemplate:
    """The frames of messages alike but for their two ids.

    :raises ValueError: the library's encoding of a real message is not the template
        with its ids written in (so the template must not be used).
    """

    def __init__(self, encode: Encode, *, sample_task: str, sample_job: str) -> None:
        self._properties, self._body = encode(TASK_PLACEHOLDER, JOB_PLACEHOLDER)
        self._methods: dict[tuple[str, str], bytes] = {}
        if encode(sample_task, sample_job) != self._fill(sample_task, sample_job):
            raise ValueError("the message's ids are not all the template's stand-ins")

    def frames(
        self, channel_id: int, exchange: str, routing_key: str, task_id: str, job_id: str
    ) -> bytes:
        """The method, header and body frames of one message, as one byte string.

        :raises ValueError: an id is not of a canonical UUID's length.
        """
        if len(task_id) != ID_LENGTH or len(job_id) != ID_LENGTH:
            raise ValueError(f"ids of {ID_LENGTH} characters only, not {task_id!r}, {job_id!r}")
        properties, body = self._fill(task_id, job_id)
        header = struct.pack(">HHQ", spec.Basic.Publish[0], 0, len(body)) + properties
        return b"".join(
            (
                _frame(1, channel_id, self._method(exchange, routing_key)),
                _frame(2, channel_id, header),
                _frame(3, channel_id, body),
            )
        )

    def _fill(self, task_id: str, job_id: str) -> tuple[bytes, bytes]:
        replacements = ((TASK_PLACEHOLDER.encode(), task_id.encode()),
                        (JOB_PLACEHOLDER.encode(), job_id.encode()))  # fmt: skip
        filled = []
        for data in (self._properties, self._body):
            for placeholder, value in replacements:
                data = data.replace(placeholder, value)
            filled.append(data)
        return filled[0], filled[1]

    def _method(self, exchange: str, routing_key: str) -> bytes:
        key = (exchange, routing_key)
        method = self._methods.get(key)
        if method is None:
            # basic.publish: reserved, exchange, routing key, mandatory, immediate.
            arguments = encode_arguments("Bssbb", (0, exchange, routing_key, True, False))
            method = struct.pack(">HH", *spec.Basic.Publish) + arguments
            self._methods[key] = method
        return method


def _frame(kind: int, channel_id: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel_id, len(payload)) + payload + b"\xce"


def serialized(message: Any) -> tuple[bytes, bytes]:
    """What the client library sends of an ``amqp.Message``: its properties, its body."""
    body = message.body
    if isinstance(body, str):
        body = body.encode(message.properties.get("content_encoding", "utf-8"))
    return bytes(message._serialize_properties()), bytes(body)
