"""The dashboard's event-stream parser, run in the browser on the chunkings a network
can produce."""

from __future__ import annotations

from typing import Any

from dashboard import KEY, Service, open_dashboard
from playwright.sync_api import Page, expect

PARSE = """async (chunks) => {
  const { SseParser } = await import(new URL("sse.js", location.href).href);
  const events = [];
  const comments = [];
  const parser = new SseParser((event) => events.push(event), {
    onComment: (text) => comments.push(text),
  });
  for (const chunk of chunks) parser.push(chunk);
  return { events, comments, retry: parser.retry, lastEventId: parser.lastEventId };
}"""


def parse(page: Page, chunks: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = page.evaluate(PARSE, chunks)
    return result


def test_events_are_parsed_however_they_are_cut(service: Service, page: Page) -> None:
    open_dashboard(page, service.url, "#/plugins", key=KEY)
    expect(page.locator("#plugins-loaded")).to_be_visible()
    stream = (
        ": keepalive\r\n\r\n"
        "id: 1700000000000-0\r\nevent: transition\r\n"
        'data: {"job_id": "a",\r\ndata:"seq": 1}\r\n\r\n'
        "retry: 2500\n"
        "data\n\n"
        "event: ignored-without-data\n\n"
        "id: 7\rdata: second\r\r"
        "data: third keeps id 7\n\n"
        "data: never finished"
    )
    expected = [
        {"type": "transition", "data": '{"job_id": "a",\n"seq": 1}', "id": "1700000000000-0"},
        {"type": "message", "data": "", "id": "1700000000000-0"},
        {"type": "message", "data": "second", "id": "7"},
        {"type": "message", "data": "third keeps id 7", "id": "7"},
    ]
    # Whole, one character at a time, and split right inside every CRLF.
    cuttings = [
        [stream],
        list(stream),
        stream.replace("\r\n", "\r\x00\n").split("\x00"),
    ]
    for chunks in cuttings:
        result = parse(page, chunks)
        assert result["events"] == expected, chunks
        assert result["comments"] == ["keepalive"]
        assert result["retry"] == 2500
        assert result["lastEventId"] == "7"
