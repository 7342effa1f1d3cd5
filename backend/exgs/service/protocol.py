"""The HTTP protocol ``exgs serve`` runs: uvicorn's h11 protocol with a header read timeout.

uvicorn closes idle keep-alive connections, but a connection that sends its request line and
headers slowly (or never) was held forever (issue 19: slowloris without a token; with a low
fd limit, idle sockets stalled ``/v1/health``). Here a connection must complete its request
headers within ``header_timeout`` seconds of connecting (or of its previous response), else it
is closed. Slow *bodies* are bounded by :class:`exgs.service.app.BodyLimitMiddleware`.
"""

from __future__ import annotations

from uvicorn.protocols.http.h11_impl import H11Protocol


def timed_protocol(header_timeout: float) -> type:
    """An :class:`H11Protocol` subclass closing connections whose headers take longer than
    ``header_timeout`` seconds."""

    class TimedH11Protocol(H11Protocol):
        _header_timer = None
        _cycle_seen = None

        def connection_made(self, transport):
            super().connection_made(transport)
            self._arm()

        def _arm(self):
            self._disarm()
            self._header_timer = self.loop.call_later(header_timeout, self._timed_out)

        def _disarm(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _timed_out(self):
            self._header_timer = None
            busy = self.cycle is not None and self.cycle is not self._cycle_seen \
                and not self.cycle.response_complete
            if not busy and not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not None and self.cycle is not self._cycle_seen:
                self._cycle_seen = self.cycle  # headers complete: a request is being served
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc):
            self._disarm()
            super().connection_lost(exc)

    return TimedH11Protocol
