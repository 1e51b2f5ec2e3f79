"""The event-stream parser fed a line at a time, as both clients feed it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator_client import ServerEvent, parse_event_stream
from orchestrator_client.stream import EventStreamParser


def fed(lines: list[str]) -> list[ServerEvent | None]:
    """What one parser hands back for each of ``lines`` in turn."""
    parser = EventStreamParser()
    return [parser.feed(line) for line in lines]


def test_a_message_comes_at_the_blank_line_after_it() -> None:
    lines = ["id: 7", "event: transition", 'data: {"seq": 7}', ""]
    assert fed(lines) == [
        None,
        None,
        None,
        ServerEvent(event="transition", id="7", data='{"seq": 7}'),
    ]


def test_a_comment_is_a_message_at_once_and_leaves_the_one_being_built() -> None:
    results = fed(["event: progress", ": keepalive", "data: 1", ""])
    assert results == [
        None,
        ServerEvent(comment="keepalive"),
        None,
        ServerEvent("progress", data="1"),
    ]


def test_data_lines_join_and_only_one_space_after_the_colon_goes() -> None:
    [*_, message] = fed(["data:a", "data:  b", "data: ", "retry: 10", "event", ""])
    assert message == ServerEvent(event="", data="a\n b\n", fields={"retry": "10"})


def test_blank_lines_with_nothing_before_them_make_no_message() -> None:
    assert fed(["", "", "id: 3", ""]) == [None, None, None, None]


def test_each_message_starts_afresh() -> None:
    parser = EventStreamParser()
    first = [parser.feed(line) for line in ["id: 1", "event: a", "x: y", "data: 1", ""]]
    second = [parser.feed(line) for line in ["data: 2", ""]]
    assert first[-1] == ServerEvent("a", id="1", data="1", fields={"x": "y"})
    assert second[-1] == ServerEvent(data="2")


def test_parse_event_stream_takes_any_iterable_and_drops_an_unfinished_message() -> None:
    lines = [": hello", "event: transition", "data: {}", "", "event: cut", "data: off"]
    assert list(parse_event_stream(lines)) == [
        ServerEvent(comment="hello"),
        ServerEvent(event="transition", data="{}"),
    ]


def test_event_data_is_read_as_one_json_object() -> None:
    assert ServerEvent(data='{"a": [1]}').json() == {"a": [1]}
    with pytest.raises(ValueError, match="not a JSON object"):
        ServerEvent(data="[1, 2]").json()
    with pytest.raises(json.JSONDecodeError):
        ServerEvent(data="{oops").json()


line_text = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]))
names = st.text(st.characters(categories=["Ll"]), min_size=1, max_size=10)


@given(
    st.lists(
        st.tuples(names, st.none() | line_text, st.lists(line_text, min_size=1, max_size=4)),
        max_size=5,
    )
)
def test_messages_written_as_the_api_writes_them_read_back_the_same(
    messages: list[tuple[str, str | None, list[str]]],
) -> None:
    lines: list[str] = []
    for event, event_id, data in messages:
        lines += [f"event: {event}", *([f"id: {event_id}"] if event_id is not None else [])]
        lines += [*(f"data: {part}" for part in data), ""]
    expected = [ServerEvent(e, id=i, data="\n".join(d)) for e, i, d in messages]
    assert list(parse_event_stream(lines)) == expected
    assert [message for message in fed(lines) if message is not None] == expected
