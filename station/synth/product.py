"""A rendered product's settings, checked on the station's side before Blender sees them (`station synth --product`).

A product is a JSON object; every key it leaves out keeps the reference connector's value
(``product_params.DEFAULT_PRODUCT``), so ``{}`` is the demo.  A bad key or value ends in one line naming it.
``--product`` takes a file holding such an object, ``demo``, or the name of a product of the suite file
(``$STATION_PRODUCTS``, else ``scripts/product_suite.json`` of this checkout).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from station.synth import SynthError
from station.synth import product_params as pp

__all__ = ["ProductError", "Product", "load_product", "suite_file", "SUITE_ENV_VAR"]

SUITE_ENV_VAR = "STATION_PRODUCTS"
DEMO_NAMES = ("demo", "connector")
D = pp.DEFAULT_PRODUCT

Unit = Annotated[float, Field(ge=0.0, le=1.0)]
Rgb = tuple[Unit, Unit, Unit]

# light settings: the bounds a range must stay within
LIGHT_BOUNDS = {"sun_strength": (0.0, 20.0), "sun_azimuth_deg": (-360.0, 360.0), "sun_elevation_deg": (5.0, 90.0),
                "fill_energy": (0.0, 10000.0), "ambient": (0.0, 5.0)}


class ProductError(SynthError, ValueError):
    """A product's settings are not valid, or the product cannot be found."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Camera(_Strict):
    tilt_deg: float = Field(D["camera"]["tilt_deg"], ge=0.0, le=45.0)
    azimuth_deg: float = Field(D["camera"]["azimuth_deg"], ge=-180.0, le=180.0)
    distance: float = Field(D["camera"]["distance"], ge=5.0, le=300.0)
    lens_mm: float = Field(D["camera"]["lens_mm"], ge=15.0, le=600.0)
    target_dx: float = Field(D["camera"]["target_dx"], ge=-30.0, le=30.0)
    target_dy: float = Field(D["camera"]["target_dy"], ge=-30.0, le=30.0)


class Light(_Strict):
    """Each setting is a [low, high] range drawn from per image, or one nominal value (a range as wide as the
    demo's around it)."""
    sun_strength: tuple[float, float] = tuple(D["light"]["sun_strength"])
    sun_azimuth_deg: tuple[float, float] = tuple(D["light"]["sun_azimuth_deg"])
    sun_elevation_deg: tuple[float, float] = tuple(D["light"]["sun_elevation_deg"])
    fill_energy: tuple[float, float] = tuple(D["light"]["fill_energy"])
    ambient: tuple[float, float] = tuple(D["light"]["ambient"])

    @field_validator("*", mode="before")
    @classmethod
    def _nominal_or_range(cls, value, info):
        if isinstance(value, bool):
            raise ValueError("must be a number or a [low, high] pair")
        if isinstance(value, (int, float)):
            return tuple(pp.light_range(info.field_name, value))
        return value

    @field_validator("*")
    @classmethod
    def _ordered_and_bounded(cls, value, info):
        lo, hi = value
        bound_lo, bound_hi = LIGHT_BOUNDS[info.field_name]
        if lo > hi:
            raise ValueError(f"low {lo} is above high {hi}")
        if lo < bound_lo or hi > bound_hi:
            raise ValueError(f"must lie within [{bound_lo}, {bound_hi}]")
        return value


class Product(_Strict):
    name: str = Field(D["name"], pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    cols: int = Field(D["cols"], ge=1, le=40)
    rows: int = Field(D["rows"], ge=1, le=40)
    pitch: float = Field(D["pitch"], ge=0.3, le=5.0)
    pins: Literal["mixed", "cube", "cylinder"] = D["pins"]
    cube_side: float = Field(D["cube_side"], ge=0.05, le=4.5)
    cylinder_radius: float = Field(D["cylinder_radius"], ge=0.025, le=2.25)
    pin_height: float = Field(D["pin_height"], ge=0.2, le=5.0)
    housing_margin_x: float = Field(D["housing_margin_x"], ge=0.05, le=30.0)
    housing_margin_y: float = Field(D["housing_margin_y"], ge=0.05, le=30.0)
    housing_rgb: Rgb = tuple(D["housing_rgb"])
    pin_rgb: Rgb = tuple(D["pin_rgb"])
    table_rgb: Rgb = tuple(D["table_rgb"])
    camera: Camera = Camera()
    light: Light = Light()
    background: Literal["plain", "clutter"] = D["background"]
    clutter_count: tuple[Annotated[int, Field(ge=0, le=40)], Annotated[int, Field(ge=0, le=40)]] = \
        tuple(D["clutter_count"])

    @model_validator(mode="after")
    def _fits_together(self):
        # a pin wider than the pitch would touch its neighbour; one wider than the margin would hang off the housing
        widths = []
        if self.pins in ("mixed", "cube"):
            widths.append(("cube_side", self.cube_side))
        if self.pins in ("mixed", "cylinder"):
            widths.append(("cylinder_radius x 2", 2 * self.cylinder_radius))
        for what, width in widths:
            if width > 0.9 * self.pitch:
                raise ValueError(f"{what} = {width:g} leaves no gap between pins at pitch {self.pitch:g}")
            for margin in ("housing_margin_x", "housing_margin_y"):
                if width / 2 > getattr(self, margin):
                    raise ValueError(f"{margin} = {getattr(self, margin):g} is less than half the {what} "
                                     f"({width:g}): the outer pins would hang off the housing")
        if self.clutter_count[0] > self.clutter_count[1]:
            raise ValueError(f"clutter_count {list(self.clutter_count)}: low is above high")
        if self.background == "clutter" and self.camera.tilt_deg > 40.0:
            raise ValueError("with background 'clutter' camera.tilt_deg must be <= 40 (clutter could hide pins)")
        return self

    def settings(self) -> dict:
        """Every setting as the renderer reads it (lists, light as [low, high])."""
        return json.loads(self.model_dump_json())

    def is_demo(self) -> bool:
        return self.settings() == pp.DEFAULT_PRODUCT


def _one_line(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def validate_product(data, source: str = "product") -> Product:
    if isinstance(data, Product):
        return data
    if not isinstance(data, dict):
        raise ProductError(f"{source}: a product must be a JSON object, not {type(data).__name__}")
    try:
        return Product.model_validate(data)
    except ValidationError as exc:
        raise ProductError(f"{source}: {_one_line(exc)}") from None


def suite_file() -> Path:
    """The suite settings file that names products: $STATION_PRODUCTS, else this checkout's scripts/ one."""
    env = os.environ.get(SUITE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "scripts" / "product_suite.json"


def read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProductError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ProductError(f"{path} is not valid JSON: {exc}") from None


def suite_products(path: Path) -> dict[str, dict]:
    """{name: product settings} of a suite file (``{"products": [{"name", "product", ...}, ...]}``)."""
    doc = read_json(path)
    entries = doc.get("products") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ProductError(f"{path}: a suite file needs a 'products' list")
    out = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ProductError(f"{path}: every product entry needs a 'name'")
        product = entry.get("product", {})
        if not isinstance(product, dict):
            raise ProductError(f"{path}: product {entry['name']!r}: 'product' must be a JSON object")
        out[entry["name"]] = {"name": entry["name"], **product}
    return out


def load_product(spec=None) -> Product:
    """A validated product from None / 'demo' (the connector), a dict, a Product, a JSON file, or a suite name."""
    if spec is None or (isinstance(spec, str) and spec in DEMO_NAMES):
        return Product()
    if not isinstance(spec, (str, os.PathLike)):
        return validate_product(spec)
    path = Path(str(spec)).expanduser()
    if path.is_file() or path.suffix == ".json" or os.sep in str(spec):
        return validate_product(read_json(path), str(path))
    suite = suite_file()
    known = suite_products(suite) if suite.is_file() else {}
    if spec not in known:
        names = ", ".join([*DEMO_NAMES[:1], *known]) or "demo"
        raise ProductError(f"no product file or name {spec!r}; names: {names} (from {suite})")
    return validate_product(known[spec], f"{suite}: product {spec!r}")
