"""What a connection does when the server stops (shared by both protocols).

The server asks every connection to shut down at once (:meth:`Draining.shut_down`).
An idle one (no event being handled, no answer due) is closed on the spot:
its close frame is written if the socket takes it now and the socket is
closed, without a task and without waiting for the peer (see
:meth:`~.wschannel.WsChannel.close_now`), so that stopping a server that
holds tens of thousands of connections costs little more than closing their
sockets. A connection with work in hand first refuses new events, lets the
events it already read be handled and their answers (a stored chat
message's ack) go out, then closes the same way; the server's drain timeout
bounds how long that may take.
"""

from __future__ import annotations

from typing import Any

import trio

from .answers import OrderedAnswers
from .inbox import Inbox


class Draining:
    """Mixed into a connection: its part of the server's stop.

    The class provides ``_nursery`` (the connection's, once it runs),
    ``_answers`` (its :class:`OrderedAnswers`, once it has deferred one),
    :meth:`_start_draining` (from then on new events are refused), its
    handler's inbox and the item that tells the handler to stop
    (:meth:`_shutdown_inbox`) and how it closes for the stop
    (:meth:`_close_for_shutdown`).
    """

    __slots__ = ()
    _nursery: trio.Nursery | None
    _answers: OrderedAnswers | None

    def _start_draining(self) -> bool:
        """Refuse new events from now on; False if already draining or closing."""
        raise NotImplementedError

    def _shutdown_inbox(self) -> tuple[Inbox[Any] | None, Any]:
        raise NotImplementedError

    def _close_for_shutdown(self) -> None:
        raise NotImplementedError

    def shut_down(self) -> None:
        """The server is stopping: refuse new events, send the answers still due,
        then close (1001 on a WebSocket); at once when there are none."""
        if not self._start_draining():
            return
        inbox, stop = self._shutdown_inbox()
        if inbox is not None and inbox.put_last(stop):
            # Events are queued or being handled: the handler closes when it
            # gets to this item, behind them (``closing_after_answers``).
            return
        answers = self._answers
        if answers is not None and answers.pending and self._nursery is not None:
            self._nursery.start_soon(self.closing_after_answers)
            return
        self._close_for_shutdown()

    async def closing_after_answers(self) -> None:
        """Once the answers due are out, close for the stop."""
        if self._answers is not None:
            await self._answers.wait_idle()
        self._close_for_shutdown()


__all__ = ["Draining"]
