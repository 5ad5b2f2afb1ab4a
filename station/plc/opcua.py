"""The second protocol: an OPC UA server (asyncua) that mirrors the handshake for an integrator who
prefers OPC UA to Modbus. Read-only, after the basics of the machine-vision companion specification
(OPC 40100): the system state, the last result and the active recipe, plus the counters.

    Objects/InspectionStation
        SystemState   String   Operational (ready for parts) | Halted (line not running) | Error
        Phase         String   ready | busy | done
        Ready, Busy   Boolean
        ActiveRecipe  UInt32   the recipe number
        ErrorCode     UInt32   as the Modbus register ERROR_CODE (docs/integration.md)
        LastResult/   PartId String, Result String (OK|NG|REVIEW|NO_RESULT), DefectClass UInt32,
                      Cell String ("col,row" or ""), LatencyMs Double, TriggerTime DateTime
        Counters/     Total, Ok, Ng, Review  UInt32
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime, timezone

from asyncua import Server, ua

from station.core.errors import StationError
from station.plc.handshake import Handshake
from station.plc.loop_thread import LoopThread

logger = logging.getLogger(__name__)

NAMESPACE = "urn:inspection-station"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def system_state(snapshot: dict) -> str:
    if snapshot["error_code"]:
        return "Error"
    return "Operational" if snapshot["available"] else "Halted"


class OpcUaMirror(LoopThread):
    _what = "OPC UA server"

    def __init__(self, handshake: Handshake, host: str = "127.0.0.1", port: int = 4840) -> None:
        if not 1 <= int(port) <= 65535:
            raise StationError(f"the OPC UA port must be 1..65535, not {port}")
        self.handshake = handshake
        self.endpoint = f"opc.tcp://{host}:{int(port)}/station/"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._updates: asyncio.Queue | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error = ""
        self._nodes: dict[str, object] = {}

    def start(self, timeout: float = 15.0) -> None:
        self._started.clear()
        self._thread = threading.Thread(target=self._run, name="plc-opcua", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise StationError(f"the OPC UA server did not start within {timeout:g} s")
        if self._error:
            raise StationError(f"the OPC UA server cannot serve {self.endpoint}: {self._error}")
        self.handshake.changed.connect(self._on_change)
        self._on_change(self.handshake.snapshot())
        logger.info("OPC UA server on %s", self.endpoint)

    def stop(self, timeout: float = 10.0) -> bool:
        self.handshake.changed.disconnect(self._on_change)
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and loop.is_running():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _on_change(self, snapshot: dict) -> None:
        loop, updates = self._loop, self._updates
        if loop is not None and updates is not None and loop.is_running():
            loop.call_soon_threadsafe(updates.put_nowait, snapshot)

    # -- the server's thread -------------------------------------------------------------------------
    async def _serve(self) -> None:
        self._updates, self._stop = asyncio.Queue(), asyncio.Event()
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Inspection station")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace(NAMESPACE)
        station = await server.nodes.objects.add_object(idx, "InspectionStation")
        last = await station.add_object(idx, "LastResult")
        counters = await station.add_object(idx, "Counters")
        u32 = ua.VariantType.UInt32
        for parent, name, value, kind in (
                (station, "SystemState", "Halted", ua.VariantType.String),
                (station, "Phase", "ready", ua.VariantType.String),
                (station, "Ready", False, ua.VariantType.Boolean), (station, "Busy", False, ua.VariantType.Boolean),
                (station, "ActiveRecipe", 0, u32), (station, "ErrorCode", 0, u32),
                (last, "PartId", "", ua.VariantType.String), (last, "Result", "", ua.VariantType.String),
                (last, "DefectClass", 0, u32), (last, "Cell", "", ua.VariantType.String),
                (last, "LatencyMs", 0.0, ua.VariantType.Double), (last, "TriggerTime", EPOCH, ua.VariantType.DateTime),
                (counters, "Total", 0, u32), (counters, "Ok", 0, u32), (counters, "Ng", 0, u32),
                (counters, "Review", 0, u32)):
            self._nodes[name] = (await parent.add_variable(idx, name, ua.Variant(value, kind)), kind)
        async with server:
            self._started.set()
            waiter = asyncio.ensure_future(self._stop.wait())
            while not self._stop.is_set():
                getter = asyncio.ensure_future(self._updates.get())
                done, _ = await asyncio.wait({getter, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    snapshot = getter.result()
                    while not self._updates.empty():  # only the newest state matters
                        snapshot = self._updates.get_nowait()
                    await self._write(snapshot)
                else:
                    getter.cancel()

    async def _write(self, snap: dict) -> None:
        last, counts = snap["last"], snap["counts"]
        cell = last.get("cell")
        values = {"SystemState": system_state(snap), "Phase": snap["phase"], "Ready": snap["ready"],
                  "Busy": snap["phase"] == "busy", "ActiveRecipe": snap["active_recipe"],
                  "ErrorCode": snap["error_code"], "Total": counts["total"], "Ok": counts["ok"], "Ng": counts["ng"],
                  "Review": counts["review"]}
        if last:
            values.update({"PartId": str(last.get("part", last["part_id"])), "Result": last["result"],
                           "DefectClass": last["defect_class"], "Cell": f"{cell[0]},{cell[1]}" if cell else "",
                           "LatencyMs": float(last["latency_ms"]), "TriggerTime": last["trigger_time"]})
        for name, value in values.items():
            node, kind = self._nodes[name]
            await node.write_value(ua.Variant(value, kind))
