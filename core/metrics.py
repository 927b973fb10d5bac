"""Prometheus metrics, one registry per server (tests run many servers)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


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

    def render(self) -> bytes:
        return generate_latest(self.registry)
