"""A PLC on the bench: a real Modbus TCP client (pymodbus) that triggers the station every `--period`
seconds, waits for DONE, reads the result and acknowledges, exactly as docs/integration.md tells a PLC
programmer to. It drops its connection every `--reconnect-every` seconds in the middle of a part and
comes back for that part's result.

With no --connect it starts the station itself in this process (the demo line, the bundled recipe, a
fresh SQLite result log under --out) and at the end checks the log: one row per trigger, with the PLC's
part ID. Prints one JSON object.

    python scripts/plc_simulator.py --minutes 10 --out /tmp/plc-run
    python scripts/plc_simulator.py --connect 192.168.0.10:5020      # a running station
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from pymodbus.client import ModbusTcpClient

from station.plc.registers import Command, RegisterMap, Result, Status, join_u32, split_u32

FIRST_PART = 1_000_001


class Plc:
    """The PLC's side of the handshake."""

    def __init__(self, host: str, port: int, unit: int, registers: RegisterMap, poll_s: float) -> None:
        self.host, self.port, self.unit, self.map, self.poll_s = host, port, unit, registers, poll_s
        self.client = ModbusTcpClient(host, port=port, timeout=2, retries=1)
        self.reconnects = 0

    def connect(self) -> None:
        for _ in range(100):
            if self.client.connect():
                return
            time.sleep(0.1)
        raise SystemExit(f"cannot connect to {self.host}:{self.port}")

    def drop(self) -> None:
        self.client.close()
        self.reconnects += 1
        time.sleep(0.05)
        self.connect()

    def status(self) -> list[int]:
        r = self.client.read_holding_registers(self.map.status_address, count=Status.MAP_VERSION + 1,
                                               device_id=self.unit)
        if r.isError():
            raise RuntimeError(f"status read failed: {r}")
        return r.registers

    def wait_ready(self, timeout: float) -> bool:
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            if self.status()[Status.READY]:
                return True
            time.sleep(self.poll_s)
        return False

    def trigger(self, part: int) -> int:
        """0 when taken, else the Modbus exception code."""
        hi, lo = split_u32(part)
        r = self.client.write_registers(self.map.command(Command.PART_ID), [hi, lo, 1], device_id=self.unit)
        return r.exception_code if r.isError() else 0

    def wait_done(self, part: int, timeout: float) -> list[int] | None:
        end = time.perf_counter() + timeout
        while time.perf_counter() < end:
            s = self.status()
            if s[Status.DONE] and join_u32(s[Status.RESULT_PART_ID], s[Status.RESULT_PART_ID + 1]) == part:
                return s
            time.sleep(self.poll_s)
        return None

    def ack(self) -> None:
        r = self.client.write_register(self.map.command(Command.ACK), 1, device_id=self.unit)
        if r.isError():
            raise RuntimeError(f"ack refused: {r}")


def run_plc(plc: Plc, seconds: float, period: float, reconnect_every: float, timeout: float) -> dict:
    plc.connect()
    if not plc.wait_ready(30):
        raise SystemExit("the station never became ready")
    parts, results, latencies, refused, over = [], {}, [], 0, 0
    part = FIRST_PART
    start = time.perf_counter()
    next_drop = start + reconnect_every if reconnect_every > 0 else float("inf")
    next_trigger = start
    while time.perf_counter() - start < seconds:
        now = time.perf_counter()
        if now < next_trigger:
            time.sleep(next_trigger - now)
        elif now - next_trigger > period:
            over += 1  # the last part took longer than the period
        next_trigger = max(next_trigger + period, time.perf_counter())
        t0 = time.perf_counter()
        code = plc.trigger(part)
        if code:
            refused += 1
            plc.wait_ready(timeout)
            continue
        parts.append(part)
        if time.perf_counter() >= next_drop:  # the PLC goes away mid-part and comes back for the result
            plc.drop()
            next_drop += reconnect_every
        s = plc.wait_done(part, timeout)
        if s is None:
            results[part] = "no answer"
        else:
            latencies.append((time.perf_counter() - t0) * 1e3)
            results[part] = Result(s[Status.RESULT]).name
            plc.ack()
        part += 1
    plc.client.close()
    lat = np.array(latencies) if latencies else np.array([np.nan])
    counts: dict[str, int] = {}
    for r in results.values():
        counts[r] = counts.get(r, 0) + 1
    return {"triggers": len(parts), "answered": sum(r != "no answer" for r in results.values()),
            "results": counts, "refused_triggers": refused, "cycles_over_period": over,
            "reconnects": plc.reconnects, "plc_latency_ms": {"p50": round(float(np.percentile(lat, 50)), 2),
                                                            "p95": round(float(np.percentile(lat, 95)), 2),
                                                            "max": round(float(np.max(lat)), 2)},
            "_parts": parts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connect", help="host:port of a running station (default: start one here)")
    ap.add_argument("--port", type=int, default=0, help="port of the station started here (0: a free one)")
    ap.add_argument("--unit", type=int, default=1)
    ap.add_argument("--status-address", type=int, default=0)
    ap.add_argument("--command-address", type=int, default=100)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--period", type=float, default=0.1, help="seconds between triggers")
    ap.add_argument("--reconnect-every", type=float, default=30.0, help="seconds; 0: never")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds a part may take")
    ap.add_argument("--poll", type=float, default=0.005, help="seconds between the PLC's status reads")
    ap.add_argument("--fps", type=float, default=30.0, help="the demo line's frame rate (station started here)")
    ap.add_argument("--out", help="folder for the result log of the station started here")
    ap.add_argument("--db", help="the result log's database URL instead of a SQLite file in --out "
                                 "(e.g. postgresql://user@127.0.0.1:5432/results, an empty database)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    registers = RegisterMap(args.status_address, args.command_address)
    if args.connect:
        host, _, port = args.connect.rpartition(":")
        report = run_plc(Plc(host, int(port), args.unit, registers, args.poll), args.minutes * 60, args.period,
                         args.reconnect_every, args.timeout)
        report.pop("_parts")
        print(json.dumps(report))
        return 0
    return _with_station(args, registers)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _with_station(args, registers: RegisterMap) -> int:
    from sqlalchemy import create_engine, text

    from station.core.inspector import Inspector
    from station.core.live import LivePipeline
    from station.core.recipe import Recipe
    from station.core.resources import bundled_recipe
    from station.core.database import engine_url
    from station.core.results import ResultStore, shown_url
    from station.core.sources import make_source
    from station.core.trigger import ExternalTrigger, TriggerMode
    from station.plc.service import PlcService

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="plc-sim-"))
    out.mkdir(parents=True, exist_ok=True)
    db = out / "results.db"
    if args.db:  # the same run into another database (a PostgreSQL URL); it must hold no rows yet
        url = args.db
    elif db.exists():
        raise SystemExit(f"{db} exists: give an empty --out folder")
    else:
        url = f"sqlite:///{db}"
    store = ResultStore(url, archive_dir=out / "archive", archive="ng")
    recipe = Recipe.load(bundled_recipe())
    pipeline = LivePipeline(make_source("demo", fps=args.fps), Inspector(recipe), store=store,
                            gate=ExternalTrigger(TriggerMode.PLC))
    port = args.port or _free_port()
    service = PlcService(pipeline, "127.0.0.1", port, args.unit, registers, args.timeout, {1: recipe.doc.name},
                         active_recipe=1)
    service.start()
    pipeline.start()
    try:
        report = run_plc(Plc("127.0.0.1", port, args.unit, registers, args.poll), args.minutes * 60, args.period,
                         args.reconnect_every, args.timeout)
    finally:
        pipeline.stop()
        service.stop()
        closed = store.close(timeout=30)
    parts = report.pop("_parts")
    with create_engine(engine_url(url)).connect() as conn:
        rows = conn.execute(text("SELECT part_id, trigger_time FROM inspections")).all()
    ids = [r[0] for r in rows]
    want = {str(p) for p in parts}
    station_lat = np.array(service.link.latencies_ms or [np.nan])
    report.update({
        "station": {"minutes": args.minutes, "period_s": args.period, "demo_fps": args.fps, "recipe": recipe.doc.name,
                    "log": shown_url(url), "log_closed_clean": closed},
        "rows": len(rows), "rows_with_plc_part_id": sum(i in want for i in ids),
        "triggers_without_row": len(want - set(ids)), "duplicate_part_ids": len(ids) - len(set(ids)),
        "rows_without_trigger_time": sum(r[1] is None for r in rows),
        "trigger_to_result_ms": {"p50": round(float(np.percentile(station_lat, 50)), 2),
                                 "p95": round(float(np.percentile(station_lat, 95)), 2),
                                 "max": round(float(np.max(station_lat)), 2), "n": len(service.link.latencies_ms)},
        "late_results": service.link.late, "refused_writes": service.handshake.refused,
    })
    print(json.dumps(report))
    ok = (report["answered"] == report["triggers"] == report["rows"] == report["rows_with_plc_part_id"]
          and not report["duplicate_part_ids"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
