"""Frames made from a template are exactly the frames the client library writes."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass, field

import pytest
from amqp import spec
from amqp.basic_message import Message as AmqpMessage
from amqp.method_framing import frame_writer

from orchestrator_core.dispatch.frames import FrameTemplate, serialized


def message(task_id: str, job_id: str) -> AmqpMessage:
    return AmqpMessage(
        f'[["{job_id}", 2], {{}}, {{"chord": null}}]',
        content_type="application/json",
        content_encoding="utf-8",
        delivery_mode=2,
        correlation_id=task_id,
        application_headers={"task": "orchestrator.run_job", "id": task_id, "argsrepr": job_id},
    )


def encode(task_id: str, job_id: str) -> tuple[bytes, bytes]:
    return serialized(message(task_id, job_id))


@dataclass
class Capture:
    """The transport and connection a frame writer needs: it keeps what is written."""

    frame_max: int = 131072
    bytes_sent: int = 0
    written: list[bytes] = field(default_factory=list)

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))


def test_the_frames_are_the_librarys_own() -> None:
    template = FrameTemplate(encode, sample_task=str(uuid.uuid4()), sample_job=str(uuid.uuid4()))
    capture = Capture()
    write = frame_writer(capture, capture)
    for task_id, job_id in ((str(uuid.uuid4()), str(uuid.uuid4())) for _ in range(3)):
        capture.written.clear()
        args = b"\x00\x00" + b"\x05jobs!" + b"\x07queue.a" + b"\x01"
        write(1, 7, spec.Basic.Publish, args, message(task_id, job_id))
        ours = template.frames(7, "jobs!", "queue.a", task_id, job_id)
        assert ours == b"".join(capture.written)


def test_a_message_whose_ids_are_not_all_stand_ins_gets_no_template() -> None:
    counter = itertools.count()

    def stamped(task_id: str, job_id: str) -> tuple[bytes, bytes]:
        properties, body = encode(task_id, job_id)
        return properties, body + str(next(counter)).encode()  # differs message to message

    with pytest.raises(ValueError, match="stand-ins"):
        FrameTemplate(stamped, sample_task=str(uuid.uuid4()), sample_job=str(uuid.uuid4()))


def test_ids_of_another_length_are_refused() -> None:
    template = FrameTemplate(encode, sample_task=str(uuid.uuid4()), sample_job=str(uuid.uuid4()))
    with pytest.raises(ValueError, match="36 characters"):
        template.frames(1, "x", "q", "short", str(uuid.uuid4()))
