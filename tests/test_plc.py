"""The PLC over Modbus TCP: a real pymodbus client on loopback against the station's server, the handshake's
answer to every kind of write, log-before-tell, and a PLC that goes away mid-part."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from pymodbus.client import ModbusTcpClient
from sqlalchemy import create_engine, text

from station.core.errors import StationError
from station.core.inspector import Inspector
from station.core.live import LivePipeline
from station.core.recipe import Recipe
from station.core.results import ResultStore
from station.core.sources import FolderSource, Source
from station.core.trigger import ExternalTrigger, TriggerMode
from station.plc.handshake import Handshake, Outcome, Phase
from station.plc.modbus import ModbusPlcServer
from station.plc.registers import Command, ErrorCode, RegisterMap, Result, Status, join_u32, split_u32
from station.plc.service import PlcService

S, C = 0, 100  # the default map: status block at 0, command block at 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def no_plc_threads() -> bool:
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if not [t for t in threading.enumerate() if t.name.startswith("plc-")]:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def bench():
    """A handshake behind a real server, and a real client: (handshake, client, triggers taken)."""
    hs = Handshake(recipes={1: "a", 2: "b"}, active_recipe=1)
    hs.set_available(True)
    taken = []
    hs.on_trigger = taken.append
    server = ModbusPlcServer(hs, port=free_port())
    server.start()
    client = ModbusTcpClient("127.0.0.1", port=server.port, timeout=2)
    assert client.connect()
    yield hs, client, taken
    client.close()
    assert server.stop()
    assert no_plc_threads()


def status(client) -> list[int]:
    r = client.read_holding_registers(S, count=22, device_id=1)
    assert not r.isError(), r
    return r.registers


def test_register_map_is_read_and_a_trigger_with_its_part_id_is_taken(bench):
    hs, client, taken = bench
    s = status(client)
    assert s[Status.READY] == 1 and s[Status.BUSY] == 0 and s[Status.MAP_VERSION] == 1 and s[Status.ACTIVE_RECIPE] == 1
    hi, lo = split_u32(123456789)
    assert not client.write_registers(C + Command.PART_ID, [hi, lo, 1], device_id=1).isError()
    assert [t.part_id for t in taken] == [123456789]
    s = status(client)
    assert s[Status.READY] == 0 and s[Status.BUSY] == 1
    assert client.read_holding_registers(C, count=6, device_id=1).registers[Command.TRIGGER] == 0  # taken: cleared
    # the station tells the result: DONE, the part's ID echoed, counters, latency
    assert hs.finish(taken[0], Outcome(Result.NG, 100, (3, 1)))
    s = status(client)
    assert (s[Status.DONE], s[Status.BUSY], s[Status.READY], s[Status.RESULT]) == (1, 0, 0, Result.NG)
    assert join_u32(s[Status.RESULT_PART_ID], s[Status.RESULT_PART_ID + 1]) == 123456789
    assert (s[Status.DEFECT_CLASS], s[Status.DEFECT_COL], s[Status.DEFECT_ROW]) == (100, 4, 2)
    assert join_u32(s[Status.COUNT_TOTAL], s[Status.COUNT_TOTAL + 1]) == 1
    assert join_u32(s[Status.COUNT_NG], s[Status.COUNT_NG + 1]) == 1
    assert not client.write_register(C + Command.ACK, 1, device_id=1).isError()
    s = status(client)
    assert (s[Status.DONE], s[Status.READY]) == (0, 1) and s[Status.RESULT] == Result.NG  # the result stays readable


def test_trigger_while_busy_or_before_ack_is_refused_with_device_busy(bench):
    hs, client, taken = bench
    assert not client.write_register(C + Command.TRIGGER, 1, device_id=1).isError()
    r = client.write_register(C + Command.TRIGGER, 1, device_id=1)
    assert r.isError() and r.exception_code == 6
    assert status(client)[Status.ERROR_CODE] == ErrorCode.TRIGGER_WHILE_BUSY and len(taken) == 1
    hs.finish(taken[0], Outcome(Result.OK))
    r = client.write_register(C + Command.TRIGGER, 1, device_id=1)
    assert r.isError() and r.exception_code == 6
    assert status(client)[Status.ERROR_CODE] == ErrorCode.TRIGGER_BEFORE_ACK and hs.phase is Phase.DONE
    assert not client.write_register(C + Command.ERROR_RESET, 1, device_id=1).isError()
    assert status(client)[Status.ERROR_CODE] == 0


def test_nonsense_writes_are_refused_and_change_nothing(bench):
    hs, client, taken = bench
    before = client.read_holding_registers(C, count=6, device_id=1).registers
    r = client.write_registers(C + Command.PART_ID, [7, 7, 2], device_id=1)  # TRIGGER takes 0 or 1
    assert r.isError() and r.exception_code == 3
    assert client.read_holding_registers(C, count=6, device_id=1).registers == before  # the part ID did not land
    assert status(client)[Status.ERROR_CODE] == ErrorCode.BAD_VALUE and not taken
    r = client.write_register(S + Status.RESULT, 1, device_id=1)  # the status block is the station's
    assert r.isError() and r.exception_code == 2 and status(client)[Status.ERROR_CODE] == ErrorCode.READ_ONLY
    r = client.write_register(C + Command.RECIPE_SELECT, 9, device_id=1)  # no recipe 9
    assert r.isError() and r.exception_code == 3 and status(client)[Status.ERROR_CODE] == ErrorCode.UNKNOWN_RECIPE
    assert client.read_holding_registers(50, count=1, device_id=1).exception_code == 2  # between the blocks
    assert client.read_coils(0, count=1, device_id=1).exception_code == 1  # registers only
    assert client.read_holding_registers(S, count=1, device_id=9).exception_code == 11  # another unit ID
    assert hs.refused == 3 and hs.phase is Phase.READY


def test_recipe_switch_is_refused_under_a_part_and_taken_between_parts(bench):
    hs, client, taken = bench
    asked = []
    hs.on_recipe = asked.append
    assert not client.write_register(C + Command.TRIGGER, 1, device_id=1).isError()
    r = client.write_register(C + Command.RECIPE_SELECT, 2, device_id=1)
    assert r.isError() and r.exception_code == 6 and not asked
    assert status(client)[Status.ERROR_CODE] == ErrorCode.RECIPE_WHILE_BUSY
    hs.finish(taken[0], Outcome(Result.OK))
    client.write_register(C + Command.ACK, 1, device_id=1)
    assert not client.write_register(C + Command.RECIPE_SELECT, 2, device_id=1).isError()
    assert asked == [2] and status(client)[Status.READY] == 0  # not ready while it loads
    r = client.write_register(C + Command.TRIGGER, 1, device_id=1)
    assert r.isError() and r.exception_code == 6
    hs.recipe_done(2, True)
    s = status(client)
    assert s[Status.ACTIVE_RECIPE] == 2 and s[Status.READY] == 1


def test_register_map_offsets_are_settings_and_are_checked():
    with pytest.raises(StationError, match="overlap"):
        RegisterMap(0, 10)
    with pytest.raises(StationError, match="must start"):
        RegisterMap(65530, 100)
    hs = Handshake()
    hs.set_available(True)
    server = ModbusPlcServer(hs, port=free_port(), unit_id=0, registers=RegisterMap(4000, 3000))
    server.start()
    client = ModbusTcpClient("127.0.0.1", port=server.port, timeout=2)
    try:
        assert client.connect()
        assert client.read_holding_registers(4000 + Status.READY, count=1, device_id=5).registers == [1]  # unit 0: any
        assert not client.write_register(3000 + Command.TRIGGER, 1, device_id=5).isError()
        assert hs.phase is Phase.BUSY
    finally:
        client.close()
        assert server.stop()


def test_a_port_in_use_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        server = ModbusPlcServer(Handshake(), port=s.getsockname()[1])
        with pytest.raises(StationError, match="cannot listen"):
            server.start()


class Parts(FolderSource):
    """The synthetic images as a live line at 50 fps."""

    live = True

    def read(self):
        time.sleep(0.02)
        if self._pos >= len(self.files):
            self._pos = 0
        return super().read()


def _run_line(tmp_path, synthetic_data, synthetic_recipe, store, timeout_s=5.0):
    pipeline = LivePipeline(Parts(synthetic_data / "test"), Inspector(Recipe.load(synthetic_recipe)), store=store,
                            gate=ExternalTrigger(TriggerMode.PLC))
    service = PlcService(pipeline, port=free_port(), result_timeout_s=timeout_s, recipes={1: "synthetic"},
                         active_recipe=1)
    service.start()
    pipeline.start()
    return pipeline, service


def _plc_cycle(client, part: int, reconnect: bool = False) -> list[int]:
    hi, lo = split_u32(part)
    deadline = time.monotonic() + 10
    while not status(client)[Status.READY]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert not client.write_registers(C + Command.PART_ID, [hi, lo, 1], device_id=1).isError()
    if reconnect:
        client.close()
        time.sleep(0.2)  # the result comes while the PLC is away
        assert client.connect()
    while True:
        s = status(client)
        if s[Status.DONE] and join_u32(s[Status.RESULT_PART_ID], s[Status.RESULT_PART_ID + 1]) == part:
            break
        assert time.monotonic() < deadline, s
        time.sleep(0.005)
    assert not client.write_register(C + Command.ACK, 1, device_id=1).isError()
    return s


def test_each_plc_trigger_gives_one_logged_row_with_the_plc_part_id_also_across_a_reconnect(
        tmp_path, synthetic_data, synthetic_recipe):
    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = ResultStore(url, archive="none")
    told_before_logged = []
    pipeline, service = _run_line(tmp_path, synthetic_data, synthetic_recipe, store)
    service.handshake.changed.connect(lambda snap: told_before_logged.append(store.pending) if snap["phase"] == "done" else None)
    client = ModbusTcpClient("127.0.0.1", port=service.server.port, timeout=2)
    try:
        assert client.connect()
        results = [_plc_cycle(client, 500 + i, reconnect=(i == 3)) for i in range(8)]
    finally:
        client.close()
        pipeline.stop()
        assert service.stop()
        assert store.close()
    assert all(s[Status.RESULT] in (Result.OK, Result.NG, Result.REVIEW) for s in results)
    assert all(0 < s[Status.LATENCY_MS] < 5000 for s in results)
    with create_engine(url).connect() as conn:
        rows = conn.execute(text("SELECT part_id, trigger_time, verdict FROM inspections ORDER BY id")).all()
    assert [r[0] for r in rows] == [str(500 + i) for i in range(8)]
    assert all(r[1] is not None for r in rows)
    assert service.link.told == 8 and service.link.late == 0
    assert no_plc_threads()


def test_a_part_whose_row_cannot_be_logged_is_not_told_ok(tmp_path, synthetic_data, synthetic_recipe):
    class Unloggable:
        """A result log whose rows never become safe."""

        hold_line = False

        def add(self, *args, **kwargs):
            from station.core.log_ticket import LogTicket

            return LogTicket("x", "OK")  # stays queued

    pipeline, service = _run_line(tmp_path, synthetic_data, synthetic_recipe, Unloggable(), timeout_s=0.5)
    client = ModbusTcpClient("127.0.0.1", port=service.server.port, timeout=2)
    try:
        assert client.connect()
        s = _plc_cycle(client, 77)
    finally:
        client.close()
        pipeline.stop()
        assert service.stop()
    assert s[Status.RESULT] == Result.NO_RESULT and s[Status.ERROR_CODE] in (ErrorCode.NOT_LOGGED,
                                                                             ErrorCode.RESULT_TIMEOUT)


def test_a_part_with_no_frame_in_time_is_answered_no_result(tmp_path, synthetic_recipe):
    class Late(Source):
        """A camera whose frames all arrive long after they were taken: none shows a part triggered now."""

        live = True

        def read(self):
            time.sleep(0.02)
            frame = self._frame(np.zeros((32, 32, 3), np.uint8), f"late #{self._index}")
            frame.timestamp -= 1000.0
            return frame

    pipeline = LivePipeline(Late(), Inspector(Recipe.load(synthetic_recipe)),
                            gate=ExternalTrigger(TriggerMode.PLC))
    service = PlcService(pipeline, port=free_port(), result_timeout_s=0.3)
    service.start()
    pipeline.start()
    client = ModbusTcpClient("127.0.0.1", port=service.server.port, timeout=2)
    try:
        assert client.connect()
        s = _plc_cycle(client, 5)
        assert pipeline.gate.pending == 0  # the trigger does not linger to pick a later part's frame
    finally:
        client.close()
        pipeline.stop()
        assert service.stop()
    assert s[Status.RESULT] == Result.NO_RESULT and s[Status.ERROR_CODE] == ErrorCode.RESULT_TIMEOUT


def test_the_plc_selects_a_recipe_and_the_line_uses_it(tmp_path, synthetic_data, synthetic_recipe):
    loaded = []

    def load(number):
        loaded.append(number)
        return Inspector(Recipe.load(synthetic_recipe))

    pipeline = LivePipeline(Parts(synthetic_data / "test"), Inspector(Recipe.load(synthetic_recipe)),
                            gate=ExternalTrigger(TriggerMode.PLC))
    first = pipeline.inspector
    service = PlcService(pipeline, port=free_port(), recipes={1: "a", 7: "b"}, active_recipe=1, load_recipe=load)
    service.start()
    pipeline.start()
    client = ModbusTcpClient("127.0.0.1", port=service.server.port, timeout=2)
    try:
        assert client.connect()
        assert not client.write_register(C + Command.RECIPE_SELECT, 7, device_id=1).isError()
        deadline = time.monotonic() + 5
        while status(client)[Status.ACTIVE_RECIPE] != 7:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert loaded == [7] and pipeline.inspector is not first
        assert client.read_holding_registers(C + Command.RECIPE_SELECT, count=1, device_id=1).registers == [0]
        _plc_cycle(client, 1)
    finally:
        client.close()
        pipeline.stop()
        assert service.stop()


def test_heartbeat_counts_while_the_line_runs(tmp_path, synthetic_data, synthetic_recipe):
    pipeline = LivePipeline(Parts(synthetic_data / "test"), Inspector(Recipe.load(synthetic_recipe)),
                            gate=ExternalTrigger(TriggerMode.PLC))
    service = PlcService(pipeline, port=free_port())
    service.start()
    client = ModbusTcpClient("127.0.0.1", port=service.server.port, timeout=2)
    try:
        assert client.connect()
        time.sleep(0.4)
        idle = status(client)
        assert idle[Status.READY] == 0  # the line is not running: no trigger is taken
        r = client.write_register(C + Command.TRIGGER, 1, device_id=1)
        assert r.isError() and r.exception_code == 6 and status(client)[Status.ERROR_CODE] == ErrorCode.NOT_RUNNING
        pipeline.start()
        time.sleep(0.8)
        running = status(client)
        assert running[Status.READY] == 1 and running[Status.HEARTBEAT] >= idle[Status.HEARTBEAT] + 2
    finally:
        client.close()
        pipeline.stop()
        assert service.stop()


def test_the_plc_link_needs_the_plc_trigger_mode(synthetic_recipe, tmp_path):
    pipeline = LivePipeline(FolderSource(tmp_path), None)
    with pytest.raises(StationError, match="trigger mode must be plc"):
        PlcService(pipeline, port=free_port()).start()


def test_the_service_is_built_from_the_settings(synthetic_data, synthetic_recipe):
    from station.core.settings import make_settings

    settings = make_settings(plc_port=free_port(), plc_unit_id=3, plc_status_address=200, plc_command_address=300,
                             plc_recipes={5: str(synthetic_recipe)})
    pipeline = LivePipeline(Parts(synthetic_data / "test"), Inspector(Recipe.load(synthetic_recipe)),
                            gate=ExternalTrigger(TriggerMode.PLC))
    service = PlcService.from_settings(settings, pipeline)
    service.start()
    pipeline.start()
    client = ModbusTcpClient("127.0.0.1", port=settings.plc_port, timeout=2)
    try:
        assert client.connect()
        assert not client.write_register(300 + Command.RECIPE_SELECT, 5, device_id=3).isError()
        deadline = time.monotonic() + 10
        while client.read_holding_registers(200 + Status.ACTIVE_RECIPE, count=1, device_id=3).registers != [5]:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert client.read_holding_registers(200, count=1, device_id=1).exception_code == 11
    finally:
        client.close()
        pipeline.stop()
        assert service.stop()


def test_a_line_held_by_its_failing_result_log_refuses_triggers(synthetic_data, synthetic_recipe):
    class Failing:
        """A result log with on_failure=stop that cannot write: the line is held."""

        hold_line = True

    pipeline = LivePipeline(Parts(synthetic_data / "test"), Inspector(Recipe.load(synthetic_recipe)), store=Failing(),
                            gate=ExternalTrigger(TriggerMode.PLC))
    service = PlcService(pipeline, port=free_port())
    service.start()
    pipeline.start()
    client = ModbusTcpClient("127.0.0.1", port=service.server.port, timeout=2)
    try:
        assert client.connect()
        time.sleep(0.6)
        assert pipeline.running and status(client)[Status.READY] == 0
        r = client.write_register(C + Command.TRIGGER, 1, device_id=1)
        assert r.isError() and r.exception_code == 6 and status(client)[Status.ERROR_CODE] == ErrorCode.NOT_RUNNING
    finally:
        client.close()
        pipeline.stop()
        assert service.stop()


def test_the_headless_line_serves_the_plc_from_the_settings(tmp_path, monkeypatch, synthetic_data, synthetic_recipe):
    from station.core.settings import make_settings
    from station.plc.serve import open_line, serve

    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path))
    with pytest.raises(StationError, match="needs trigger_mode plc"):
        open_line(make_settings(plc_enabled=True))
    port = free_port()
    settings = make_settings(plc_enabled=True, trigger_mode="plc", plc_port=port, source=f"demo:{synthetic_data / 'test'}",
                             recipe=str(synthetic_recipe), results_db=f"sqlite:///{tmp_path / 'r.db'}")
    stop = threading.Event()
    out = {}
    runner = threading.Thread(target=lambda: out.update(serve(settings, 30, stop)))
    runner.start()
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    try:
        deadline = time.monotonic() + 10
        while not client.connect():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        s = _plc_cycle(client, 31337)
    finally:
        client.close()
        stop.set()
        runner.join(10)
    assert s[Status.RESULT] != Result.NONE and out["told"] == 1 and out["log_closed_clean"]


@pytest.mark.gui
def test_the_window_serves_the_plc_when_the_settings_enable_it(qtbot, tmp_path, monkeypatch, synthetic_data,
                                                               synthetic_recipe):
    """The station window, not only the headless line, answers a PLC: a trigger gives one logged row."""
    from station.core.settings import make_settings
    from station.ui.app import create_window

    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    port = free_port()
    db = tmp_path / "r.db"
    settings = make_settings(plc_enabled=True, trigger_mode="plc", plc_port=port, results_db=f"sqlite:///{db}")
    window = create_window(f"demo:{synthetic_data / 'test'}", str(synthetic_recipe), settings, save_settings=False)
    qtbot.addWidget(window)
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=2)
    try:
        assert window.service.plc is not None and client.connect()
        done = threading.Event()
        out = {}

        def cycle():  # the client waits in its own thread: the window's thread must keep turning
            out["status"] = _plc_cycle(client, 4242)
            done.set()

        threading.Thread(target=cycle, daemon=True).start()
        qtbot.waitUntil(done.is_set, timeout=15000)
        assert out["status"][Status.RESULT] != Result.NONE
    finally:
        client.close()
        window.close()
    assert no_plc_threads()
    with create_engine(f"sqlite:///{db}").connect() as c:
        assert c.execute(text("select part_id from inspections")).scalars().all() == ["4242"]


@pytest.mark.gui
def test_in_software_trigger_mode_the_button_inspects_one_part(qtbot, tmp_path, monkeypatch, synthetic_data,
                                                               synthetic_recipe):
    from station.core.settings import make_settings
    from station.ui.app import create_window

    monkeypatch.setenv("STATION_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("STATION_DATA_DIR", str(tmp_path / "data"))
    settings = make_settings(trigger_mode="software", results_db=f"sqlite:///{tmp_path / 'r.db'}")
    window = create_window(f"demo:{synthetic_data / 'test'}", str(synthetic_recipe), settings, save_settings=False)
    qtbot.addWidget(window)
    try:
        time.sleep(0.5)
        qtbot.wait(200)
        assert window.service.pipeline.tally.total == 0  # the line runs, but no part was triggered
        window.service.trigger()
        qtbot.waitUntil(lambda: window.service.pipeline.tally.total == 1, timeout=10000)
        qtbot.wait(500)
        assert window.service.pipeline.tally.total == 1  # one trigger, one part: not every frame after it
    finally:
        window.close()
