"""The station as a Modbus TCP server (pymodbus), in its own thread with its own asyncio loop.

Every request goes through `_action`, which answers from the Handshake: a read gets the registers as the
station holds them now, a write to the command block is checked and applied (or refused with a Modbus
exception), a write to the status block is refused, coil and other function codes are refused.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from station.core.errors import StationError
from station.plc.handshake import Handshake
from station.plc.loop_thread import LoopThread
from station.plc.registers import COMMAND_LEN, STATUS_LEN, RegisterMap

logger = logging.getLogger(__name__)

READS, WRITES = (3, 4), (6, 16)


class ModbusPlcServer(LoopThread):
    """`start()` binds and serves (StationError when the port cannot be bound); `stop()` closes it."""

    _what = "Modbus server"

    def __init__(self, handshake: Handshake, host: str = "127.0.0.1", port: int = 5020, unit_id: int = 1,
                 registers: RegisterMap | None = None) -> None:
        if not 1 <= int(port) <= 65535:
            raise StationError(f"the Modbus port must be 1..65535, not {port}")
        if not 0 <= int(unit_id) <= 247:
            raise StationError(f"the Modbus unit ID must be 0..247, not {unit_id}")
        self.handshake, self.host, self.port, self.unit_id = handshake, host, int(port), int(unit_id)
        self.map = registers or RegisterMap()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusTcpServer | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error = ""

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 5.0) -> None:
        if self.running:
            return
        self._started.clear()
        self._error = ""
        self._thread = threading.Thread(target=self._run, name="plc-modbus", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise StationError(f"the Modbus server did not start within {timeout:g} s")
        if self._error:
            self._thread.join(timeout)
            raise StationError(f"the Modbus server cannot listen on {self.host}:{self.port}: {self._error}")
        logger.info("Modbus TCP server on %s:%d, unit %d", self.host, self.port, self.unit_id)

    def stop(self, timeout: float = 5.0) -> bool:
        """Close the server; True when its thread ended."""
        loop, server = self._loop, self._server
        if loop is not None and server is not None and loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(server.shutdown(), loop).result(timeout)
            except (TimeoutError, RuntimeError) as exc:
                logger.warning("the Modbus server did not shut down cleanly: %s", exc)
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    # -- the server's thread ---------------------------------------------------------------------
    def _devices(self) -> list[SimDevice]:
        """The station at its unit ID; with a unit ID other than 0, every other unit ID is answered by a
        device that refuses all (exception 11, "gateway target failed to respond")."""
        def blocks() -> list[SimData]:
            return [SimData(self.map.status_address, count=STATUS_LEN, values=0, datatype=DataType.REGISTERS),
                    SimData(self.map.command_address, count=COMMAND_LEN, values=0, datatype=DataType.REGISTERS)]
        devices = [SimDevice(self.unit_id, simdata=blocks(), action=self._action)]
        if self.unit_id != 0:
            devices.append(SimDevice(0, simdata=blocks(), action=_other_unit))
        return devices

    async def _serve(self) -> None:
        self._server = ModbusTcpServer(self._devices(), address=(self.host, self.port),
                                       trace_connect=self.handshake.connected)
        await self._server.serve_forever(background=True)
        self._started.set()
        await self._server.serving

    async def _action(self, function_code: int, start_address: int, address: int, count: int,
                      registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        """Called by pymodbus for every request, before a write lands in `registers`."""
        status_at = self.map.status_address - start_address
        command_at = self.map.command_address - start_address
        if set_values is None:
            if function_code not in READS + WRITES:  # pymodbus reads back what a write function wrote
                return ExcCodes.ILLEGAL_FUNCTION
            registers[status_at:status_at + STATUS_LEN] = self.handshake.status_registers()
            registers[command_at:command_at + COMMAND_LEN] = self.handshake.command_registers()
            return None
        if function_code not in WRITES:
            return ExcCodes.ILLEGAL_FUNCTION
        m = self.map
        if not (m.command_address <= address and address + count <= m.command_address + COMMAND_LEN):
            return ExcCodes(self.handshake.refuse_status_write().exception)
        refusal, after = self.handshake.write_commands(address - m.command_address, [int(v) for v in set_values])
        if refusal is not None:
            return ExcCodes(refusal.exception)
        set_values[:] = after  # the station's answer (a trigger taken reads back as 0)
        registers[status_at:status_at + STATUS_LEN] = self.handshake.status_registers()
        return None


async def _other_unit(*_request) -> ExcCodes:
    return ExcCodes.GATEWAY_NO_RESPONSE
