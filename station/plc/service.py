"""The station's side of the line in one piece: the handshake, the Modbus TCP server, the link to the
live line and, if chosen, the OPC UA server, built from the settings and started and stopped together."""

from __future__ import annotations

import logging
from collections.abc import Callable

from station.core.errors import StationError
from station.core.inspector import Inspector
from station.core.live import LivePipeline
from station.plc.handshake import Handshake
from station.plc.link import PlcLink
from station.plc.modbus import ModbusPlcServer
from station.plc.registers import RegisterMap

logger = logging.getLogger(__name__)


class PlcService:
    def __init__(self, pipeline: LivePipeline, host: str = "127.0.0.1", port: int = 5020, unit_id: int = 1,
                 registers: RegisterMap | None = None, result_timeout_s: float = 5.0,
                 recipes: dict[int, str] | None = None, active_recipe: int = 0,
                 load_recipe: Callable[[int], Inspector] | None = None,
                 opcua_port: int | None = None, opcua_host: str = "127.0.0.1") -> None:
        self.handshake = Handshake(recipes, active_recipe)
        self.server = ModbusPlcServer(self.handshake, host, port, unit_id, registers)
        self.pipeline, self.result_timeout_s, self.load_recipe = pipeline, result_timeout_s, load_recipe
        self.link: PlcLink | None = None
        self.opcua = None
        if opcua_port is not None:
            from station.plc.opcua import OpcUaMirror

            self.opcua = OpcUaMirror(self.handshake, opcua_host, opcua_port)

    @classmethod
    def from_settings(cls, settings, pipeline: LivePipeline,
                      load_recipe: Callable[[int], Inspector] | None = None) -> PlcService:
        recipes = {int(k): v for k, v in settings.plc_recipes.items()}
        return cls(pipeline, settings.plc_host, settings.plc_port, settings.plc_unit_id,
                   RegisterMap(settings.plc_status_address, settings.plc_command_address),
                   settings.plc_result_timeout_s, recipes, load_recipe=load_recipe or recipe_loader(recipes),
                   opcua_port=settings.opcua_port if settings.opcua_enabled else None, opcua_host=settings.plc_host)

    def start(self) -> None:
        self.link = PlcLink(self.pipeline, self.handshake, self.result_timeout_s, self.load_recipe)
        try:
            self.server.start()
            if self.opcua is not None:
                self.opcua.start()
        except StationError:
            self.stop()
            raise

    def stop(self) -> bool:
        """Stop all of it; True when every thread ended."""
        ok = self.server.stop()
        if self.opcua is not None:
            ok = self.opcua.stop() and ok
        if self.link is not None:
            ok = self.link.close() and ok
        return ok


def recipe_loader(recipes: dict[int, str]) -> Callable[[int], Inspector]:
    """Recipe number -> a ready Inspector, loading the folder `recipes` names (StationError when it cannot:
    not found, damaged, or not trusted by this station)."""
    def load(number: int) -> Inspector:
        from station.core.recipe import Recipe

        if number not in recipes:
            raise StationError(f"no recipe has the number {number}")
        return Inspector(Recipe.load(recipes[number]))
    return load
