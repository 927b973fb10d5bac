"""Prometheus metrics, one registry per server (tests run many servers)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

#: Distinct names of events no plugin declares (those an event proxy takes:
#: any name its patterns match, which a client chooses) counted under their
#: own name; the events of further names are counted as :data:`OTHER_EVENTS`,
#: so that clients cannot grow the metrics without bound.
MAX_UNDECLARED_EVENT_LABELS = 100
OTHER_EVENTS = "(other)"
#: Distinct codes counted on their own by each counter of refusals and error
#: answers (a backend behind the proxy plugin, or a plugin, chooses them: one
#: that puts an id or a time in its codes must not grow the metrics without
#: bound); further codes are counted as :data:`OTHER_CODES`.
MAX_CODE_LABELS = 100
OTHER_CODES = "(other)"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.connections = Gauge("switchboard_connections", "Open sessions", ["protocol"],
                                 registry=r)
        self.connects = Counter("switchboard_connects", "Sessions opened", ["protocol"],
                                registry=r)
        self.disconnects = Counter("switchboard_disconnects", "Sessions closed, by reason",
                                   ["reason"], registry=r)
        self.slow_consumers = Counter("switchboard_slow_consumer_disconnects",
                                      "Clients cut because their outgoing queue was full",
                                      registry=r)
        self.handshake_rejects = Counter("switchboard_handshake_rejects",
                                         "Handshakes refused, by reason", ["reason"],
                                         registry=r)
        self.events_in = Counter("switchboard_events_received", "Client events handled",
                                 ["event"], registry=r)
        self.client_errors = Counter("switchboard_client_errors",
                                     "Error answers sent to clients, by code", ["code"],
                                     registry=r)
        self.publications = Counter("switchboard_publications",
                                    "Events published through the broker", registry=r)
        self.deliveries = Counter("switchboard_deliveries",
                                  "Frames queued to local sessions by fan-out", registry=r)

        self.connection_failures = Counter(
            "switchboard_connection_failures",
            "Connections ended by an unexpected error on the server side", registry=r)
        self.plugin_failures = Counter(
            "switchboard_plugin_failures",
            "Plugin hooks and plugin tasks that raised (logged; the server ran on)",
            ["plugin", "hook"], registry=r)

        #: Labelled children, looked up once (``labels`` costs 1-2 us a call,
        #: several times per connection and once per event).
        self._events: dict[str, Any] = {}
        self._undeclared = 0
        self._by_protocol: dict[str, tuple[Any, Any]] = {}
        self._disconnects: dict[str, Any] = {}
        self._rejects: dict[str, Any] = {}
        self._client_errors: dict[str, Any] = {}

    def event_received(self, name: str, *, declared: bool) -> None:
        """Count a client event (``declared``: by a plugin; else taken by an
        event proxy, whose names are bounded by
        :data:`MAX_UNDECLARED_EVENT_LABELS`)."""
        child = self._events.get(name)
        if child is None:
            if not declared:
                if self._undeclared >= MAX_UNDECLARED_EVENT_LABELS:
                    name = OTHER_EVENTS
                else:
                    self._undeclared += 1
            child = self._events.get(name)
            if child is None:
                child = self._events[name] = self.events_in.labels(name)
        child.inc()

    def handshake_rejected(self, code: str) -> None:
        """Count a refused handshake by its code (bounded: :data:`MAX_CODE_LABELS`)."""
        _count_code(self.handshake_rejects, self._rejects, code)

    def client_error(self, code: str) -> None:
        """Count an error answer by its code (bounded: :data:`MAX_CODE_LABELS`)."""
        _count_code(self.client_errors, self._client_errors, code)

    def session_opened(self, protocol: str) -> None:
        open_, opened = self._protocol(protocol)
        open_.inc()
        opened.inc()

    def session_closed(self, protocol: str, reason: str) -> None:
        self._protocol(protocol)[0].dec()
        child = self._disconnects.get(reason)
        if child is None:
            child = self._disconnects[reason] = self.disconnects.labels(reason)
        child.inc()

    def _protocol(self, protocol: str) -> tuple[Any, Any]:
        children = self._by_protocol.get(protocol)
        if children is None:
            children = self._by_protocol[protocol] = (
                self.connections.labels(protocol), self.connects.labels(protocol))
        return children

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _count_code(counter: Counter, children: dict[str, Any], code: str) -> None:
    child = children.get(code)
    if child is None:
        if len(children) >= MAX_CODE_LABELS:
            code = OTHER_CODES
            child = children.get(code)
        if child is None:
            child = children[code] = counter.labels(code)
    child.inc()
