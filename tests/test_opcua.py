"""The second protocol: a real asyncua client on loopback reads the station's state, last result and counters."""

from __future__ import annotations

import asyncio
import socket
import threading
import time

from asyncua import Client

from station.plc.handshake import Handshake, Outcome
from station.plc.opcua import NAMESPACE, OpcUaMirror
from station.plc.registers import Result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def read_all(url: str) -> dict:
    async with Client(url, timeout=5) as client:
        idx = await client.get_namespace_index(NAMESPACE)
        root = await client.nodes.objects.get_child(f"{idx}:InspectionStation")
        out = {}
        for path in ("SystemState", "Phase", "Ready", "ActiveRecipe", "LastResult/PartId", "LastResult/Result",
                     "LastResult/Cell", "LastResult/LatencyMs", "Counters/Total", "Counters/Ng"):
            node = await root.get_child([f"{idx}:{p}" for p in path.split("/")])
            out[path] = await node.read_value()
        return out


def test_opcua_client_reads_state_last_result_and_counters():
    hs = Handshake(active_recipe=3)
    mirror = OpcUaMirror(hs, port=free_port())
    mirror.start()
    try:
        before = asyncio.run(read_all(mirror.endpoint))
        assert before["SystemState"] == "Halted" and before["Ready"] is False and before["ActiveRecipe"] == 3
        hs.set_available(True)
        taken = []
        hs.on_trigger = taken.append
        hs.write_commands(0, [0, 4242, 1])  # the PLC's part 4242 and a trigger
        assert hs.finish(taken[0], Outcome(Result.NG, 1, (2, 5)), {"part": "4242"})
        deadline = time.monotonic() + 5
        while True:
            after = asyncio.run(read_all(mirror.endpoint))
            if after["Counters/Total"] == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert after["SystemState"] == "Operational" and after["Phase"] == "done"
        assert after["LastResult/PartId"] == "4242" and after["LastResult/Result"] == "NG"
        assert after["LastResult/Cell"] == "2,5" and after["LastResult/LatencyMs"] > 0
        assert after["Counters/Total"] == 1 and after["Counters/Ng"] == 1
    finally:
        assert mirror.stop()
    assert not [t for t in threading.enumerate() if t.name == "plc-opcua"]
