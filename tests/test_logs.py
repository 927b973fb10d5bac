"""The log's limit on records of one kind (``core/logs.py``), on a clock of
the test's own."""

from __future__ import annotations

import json
import logging
import re
import sys

from switchboard.core.logs import MAX_KINDS, JsonFormatter, RepeatLimit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def record(message: str, *args: object, level: int = logging.INFO,
           name: str = "switchboard.ws") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_records_of_one_kind_past_the_limit_are_left_out_and_then_counted() -> None:
    clock = Clock()
    limit = RepeatLimit(3, 10.0, clock)
    passed = [limit.filter(record("client error %s on %s", "unknown_event", n))
              for n in range(10)]
    assert passed == [True] * 3 + [False] * 7
    clock.now = 9.9
    assert not limit.filter(record("client error %s on %s", "unknown_event", 10))
    clock.now = 10.0  # a new window: the first record says what was left out
    first = record("client error %s on %s", "unknown_event", 11)
    assert limit.filter(first)
    assert first.getMessage() == ("client error unknown_event on 11 (8 more like this left "
                                  "out before it)")
    second = record("client error %s on %s", "unknown_event", 12)
    assert limit.filter(second) and "more like this" not in second.getMessage()


def test_kinds_are_counted_apart_and_errors_always_pass() -> None:
    limit = RepeatLimit(1, 10.0, Clock())
    assert limit.filter(record("session %s opened"))
    assert not limit.filter(record("session %s opened"))
    assert limit.filter(record("session %s closed"))  # another template
    assert limit.filter(record("session %s opened", name="switchboard.socketio"))
    assert all(limit.filter(record("store failed", level=logging.ERROR)) for _ in range(5))


def test_no_limit_lets_every_record_through() -> None:
    limit = RepeatLimit(0, 10.0, Clock())
    assert all(limit.filter(record("client error")) for _ in range(100))


def test_kinds_made_of_what_clients_sent_do_not_grow_without_bound() -> None:
    clock = Clock()
    limit = RepeatLimit(1, 10.0, clock)
    for n in range(3 * MAX_KINDS):
        limit.filter(record(f"client sent {n}"))
    assert len(limit._kinds) <= MAX_KINDS
    clock.now = 20.0
    limit.filter(record("a new kind"))
    assert len(limit._kinds) == 1  # (every window was over)


def test_a_json_record_is_one_line_with_its_fields_and_traceback() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = logging.LogRecord("switchboard.http", logging.ERROR, __file__, 1,
                                   "route %s failed\n2026-12-01 ERROR forged\x1b[2J",
                                   ("/api",), sys.exc_info())
    line = JsonFormatter().format(failed)
    assert "\n" not in line and "\x1b" not in line
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["logger"] == "switchboard.http"
    assert entry["message"] == "route /api failed\n2026-12-01 ERROR forged\x1b[2J"
    assert entry["exception"].startswith("Traceback") and "ValueError: boom" in entry["exception"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])
    plain = json.loads(JsonFormatter().format(record("session %s opened", "s1")))
    assert set(plain) == {"time", "level", "logger", "message"}
    assert plain["message"] == "session s1 opened"
