"""The ``text/event-stream`` format the API's event routes speak, read a line at a time."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from orchestrator_client.responses import Document


@dataclass
class ServerEvent:
    """One message of a ``text/event-stream``: a named event with its id and data, or
    (``event`` empty, ``comment`` set) a comment line such as a keepalive."""

    event: str = ""
    id: str | None = None
    data: str = ""
    comment: str | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def json(self) -> Document:
        """The data, which the API always sends as one JSON object.

        :raises ValueError: when the data is not JSON, or not an object.
        """
        value = json.loads(self.data)
        if not isinstance(value, dict):
            raise ValueError(f"event data is not a JSON object: {self.data[:200]!r}")
        return value


class EventStreamParser:
    """Builds the messages of an event stream from its lines, fed one at a time as they
    arrive (without their line ending, as httpx's ``iter_lines`` gives them)."""

    def __init__(self) -> None:
        self._message = ServerEvent()
        self._data: list[str] = []

    def feed(self, line: str) -> ServerEvent | None:
        """Take the next line; return the message it completes, if any.

        A comment line is a message of its own, at once; any other message ends at the
        blank line after it.
        """
        if not line:
            message, data = self._message, self._data
            self._message, self._data = ServerEvent(), []
            if not (message.event or data):
                return None
            message.data = "\n".join(data)
            return message
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if not name:
            return ServerEvent(comment=value)
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._message.event = value
        elif name == "id":
            self._message.id = value
        else:
            self._message.fields[name] = value
        return None


def parse_event_stream(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Parse ``text/event-stream`` lines into messages (comments included)."""
    parser = EventStreamParser()
    for line in lines:
        if (message := parser.feed(line)) is not None:
            yield message
