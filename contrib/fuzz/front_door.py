"""Fuzz Switchboard's front door for a while and print what broke.

The generators and checks are those of ``tests/test_fuzz_front_door.py``
(``switchboard.testing.fuzz``); this runs them for a time instead of a fixed
number of examples, never stops at a failure, and prints a summary: cases and
answers per family, then each distinct failure with its smallest reproducer.

    python contrib/fuzz/front_door.py --seconds 600            # its own server, in-process
    python contrib/fuzz/front_door.py --seconds 600 --port 8080 --server-log serve.log

See README.md beside this file.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from typing import Any

import attrs
import trio
from hypothesis import HealthCheck, Phase, given, seed, settings
from switchboard.testing import TEST_API_KEY, TEST_SECRET
from switchboard.testing.fuzz import (
    FAMILIES,
    PROFILED,
    Failure,
    FrontDoor,
    InProcessTarget,
    Outcome,
    RemoteTarget,
    Target,
    fuzz_config,
    strategy_for,
)


@attrs.define
class Seen:
    """One distinct failure: how often, and its smallest reproducer."""

    failure: Failure
    outcome: Outcome
    count: int = 0


@attrs.define
class Stats:
    cases: collections.Counter[str] = attrs.Factory(collections.Counter)
    failed: collections.Counter[str] = attrs.Factory(collections.Counter)
    seconds: collections.Counter[str] = attrs.Factory(collections.Counter)
    answers: dict[str, collections.Counter[str]] = attrs.Factory(dict)
    distinct: dict[str, Seen] = attrs.Factory(dict)
    stopped: str | None = None

    def record(self, outcome: Outcome) -> None:
        family = outcome.case.family
        self.cases[family] += 1
        self.seconds[family] += outcome.seconds
        self.answers.setdefault(family, collections.Counter())[_answer_kind(outcome.answer)] += 1
        if outcome.failures:
            self.failed[family] += 1
        for failure in outcome.failures:
            seen = self.distinct.get(failure.signature)
            if seen is None or len(outcome.case.data) < len(seen.outcome.case.data):
                self.distinct[failure.signature] = seen = Seen(
                    failure, outcome, seen.count if seen else 0)
            seen.count += 1
            if seen.count == 1:
                print(f"new failure after {sum(self.cases.values())} cases: "
                      f"{failure.signature}", file=sys.stderr, flush=True)


def _answer_kind(answer: str) -> str:
    """An answer without the details that vary from case to case."""
    return answer.split(" [")[0] if answer.startswith("poll") or ", poll" in answer else answer


def explore(door: FrontDoor, families: list[str], stats: Stats, *, deadline: float,
            first_seed: int, batch: int, ws_profile: str = "") -> None:
    """Rounds of ``batch`` cases per family (a new seed each) until ``deadline``."""
    for round_number in range(10**9):
        for family in families:
            if time.monotonic() >= deadline or stats.stopped:
                return
            _batch(door, family, stats, seed_value=first_seed + round_number, count=batch,
                   deadline=deadline, ws_profile=ws_profile)


def _batch(door: FrontDoor, family: str, stats: Stats, *, seed_value: int, count: int,
           deadline: float, ws_profile: str) -> None:
    @settings(database=None, deadline=None, max_examples=count, phases=(Phase.generate,),
              suppress_health_check=list(HealthCheck), print_blob=False)
    @seed(seed_value)
    @given(case=strategy_for(family, ws_profile))
    def one(case: Any) -> None:
        if time.monotonic() >= deadline or stats.stopped:
            return
        try:
            stats.record(door.run_blocking(case))
        except RuntimeError as exc:  # a remote server that stopped answering
            stats.stopped = str(exc)

    one()


def summary(stats: Stats, elapsed: float, restarts: int | None) -> str:
    lines = [f"{sum(stats.cases.values())} cases in {elapsed:.0f} s"
             + (f", server restarted {restarts} times" if restarts else ""), ""]
    lines.append(f"{'family':<20} {'cases':>7} {'failed':>7} {'ms/case':>8}  answers (most common)")
    for family in FAMILIES:
        if not stats.cases[family]:
            continue
        common = ", ".join(f"{answer} x{n}"
                           for answer, n in stats.answers[family].most_common(4))
        lines.append(f"{family:<20} {stats.cases[family]:>7} {stats.failed[family]:>7} "
                     f"{1000 * stats.seconds[family] / stats.cases[family]:>8.1f}  {common}")
    lines += ["", f"{len(stats.distinct)} distinct failures"]
    ordered = sorted(stats.distinct.items(), key=lambda item: -item[1].count)
    for number, (signature, seen) in enumerate(ordered, 1):
        lines += ["", f"{number}. {signature}  ({seen.count} cases)",
                  "   smallest: " + seen.outcome.case.reproducer().replace("\n", "\n   "),
                  f"   answer: {seen.outcome.answer}",
                  "   " + seen.failure.report().replace("\n", "\n   ")]
    if stats.stopped:
        lines += ["", f"stopped early: {stats.stopped}"]
    return "\n".join(lines)


def report(stats: Stats) -> list[dict[str, Any]]:
    return [{"signature": signature, "count": seen.count, "kind": seen.failure.kind,
             "summary": seen.failure.summary, "frames": list(seen.failure.frames),
             "family": seen.outcome.case.family, "label": seen.outcome.case.label,
             "setup": seen.outcome.case.setup,
             "chunks": [repr(chunk) for chunk in seen.outcome.case.chunks],
             "answer": seen.outcome.answer}
            for signature, seen in stats.distinct.items()]


async def run(args: argparse.Namespace, stats: Stats) -> int | None:
    """Fuzz until ``args.seconds`` have passed; the number of server restarts."""
    families = [f for f in FAMILIES if not args.families or any(
        word.strip() in f for word in args.families.split(","))]
    if not families:
        raise SystemExit(f"--families {args.families!r} names none of: {', '.join(FAMILIES)}")
    started = time.monotonic()
    async with trio.open_nursery() as nursery:
        target: Target
        if args.port:
            target = RemoteTarget(args.host, args.port, secret=args.secret,
                                  api_key=args.api_key, intruder_key=args.intruder_key,
                                  guest_widget=args.guest_widget, log_file=args.server_log)
        else:
            target = InProcessTarget(
                nursery, config=lambda: fuzz_config(args.ws_profile, args.store, args.broker))
        door = FrontDoor(target, nursery)
        await door.start()
        try:
            await trio.to_thread.run_sync(lambda: explore(
                door, families, stats, deadline=started + args.seconds, first_seed=args.seed,
                batch=args.batch, ws_profile=args.ws_profile))
        finally:
            await door.stop()
            nursery.cancel_scope.cancel()
    restarts: int | None = getattr(target, "restarts", None)
    return restarts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="how long to fuzz (60)")
    parser.add_argument("--port", type=int, help="fuzz a server already listening on this "
                        "port (else start one in this process)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--secret", default=TEST_SECRET,
                        help="the server's auth.secret, to sign client tokens")
    parser.add_argument("--api-key", default=TEST_API_KEY, help="an API key with tenant '*'")
    parser.add_argument("--intruder-key", default="", help="an API key with tenant "
                        "'intruder' on the server at --port (the tenant fence's HTTP cases)")
    parser.add_argument("--guest-widget", default="", help="the key of a chat widget of "
                        "tenant 'fuzz' on the server at --port (the tenant fence's guests)")
    parser.add_argument("--server-log", help="the server's log file, read for tracebacks")
    parser.add_argument("--families", help="comma-separated words of the families to run: "
                        f"{', '.join(FAMILIES)} (e.g. head,polling)")
    parser.add_argument("--ws-profile", default="", choices=["", *PROFILED.values()],
                        help="the compatibility profile bound to the plain WebSocket (of the "
                        "server it starts, or of the one at --port); its events are sent there")
    parser.add_argument("--store", default="", help="the SQLAlchemy URL of the database of "
                        "the server it starts (else an in-memory SQLite), e.g. "
                        "postgresql+psycopg://postgres@127.0.0.1:5432/fuzz")
    parser.add_argument("--broker", default="", help="the broker URL of the server it starts "
                        "(else in memory), e.g. redis://127.0.0.1:6379/0 (a key prefix of "
                        "its own)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (one per batch)")
    parser.add_argument("--batch", type=int, default=50, help="cases per family per seed")
    parser.add_argument("--out", help="write the distinct failures as JSON to this file")
    args = parser.parse_args(argv)
    stats = Stats()
    started = time.monotonic()
    restarts = trio.run(run, args, stats)
    print(summary(stats, time.monotonic() - started, restarts))
    if args.out:
        with open(args.out, "w") as file:
            json.dump(report(stats), file, indent=2)
    return 1 if stats.distinct or stats.stopped else 0


if __name__ == "__main__":
    sys.exit(main())
