"""The thread a protocol server (Modbus, OPC UA) runs its asyncio loop in: the loop is published while it
runs, a failure is kept for `start()` to raise and logged, and `start()` is released either way."""

from __future__ import annotations

import asyncio
import logging
import threading

logger = logging.getLogger(__name__)


class LoopThread:
    """Mixin: `_run` (the thread's target) runs `self._serve()` on a new loop; sets `_loop`, `_error`, `_started`."""

    _what = "server"  # the name in the log

    _loop: asyncio.AbstractEventLoop | None
    _started: threading.Event
    _error: str

    async def _serve(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except Exception as exc:  # noqa: BLE001 - the reason reaches start() and the log
            self._error = f"{type(exc).__name__}: {exc}"
            logger.error("%s failed: %s", self._what, self._error)
        finally:
            self._started.set()
            self._loop = None
            loop.close()
