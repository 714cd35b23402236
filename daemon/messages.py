"""The ZeroMQ message schema (msgpack), version 1.

A spectrum message is a msgpack map:

    schema       "xpstream.spectrum/1"
    id           str, the sender's identifier, echoed in the prediction
    instrument   str, used in the topics xps/<instrument>/prediction and .../error
    kind         "grid"     intensities on the contract grid, or
                 "regions"  core-level regions on their own energy axes
    intensities  (grid)    array, shape [6601]
    measured     (grid, optional) array, shape [6601]: 1 where the grid was recorded, 0 where
                 not (the model's measured-region mask); absent = the whole grid was recorded
    regions      (regions) list of {"name": str, "energy": array, "counts": array}; regions are
                 sorted like a file's (daemon.parse.select_regions): core levels on the grid
                 are used, a survey only when there is none, and every region is checked
                 for peaks of elements the library lacks
    axis         (regions) "binding" or "kinetic"
    source_energy_ev (regions, kinetic axis) photon energy in eV
    metadata     map, optional, passed through

An array is {"shape": [n, ...], "data": raw little-endian float32 bytes}. Anything else is
refused with a MessageError whose `reason` is a short code (for metrics labels) and whose text
says what is wrong.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import msgpack
import numpy as np

from xpstream.contract import GRID_SIZE, ContractError, Prediction, Region
from xpstream.daemon.parse import ParseError, select_regions

SCHEMA = "xpstream.spectrum/1"
PREDICTION_SCHEMA = "xpstream.prediction/1"


class MessageError(ValueError):
    """A message that cannot be used. `reason` is a short code, e.g. 'schema' or 'shape'."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class SpectrumMessage:
    id: str
    instrument: str
    spectrum: np.ndarray | None = None  # grid-ready intensities (GRID_SIZE,)
    measured: np.ndarray | None = None  # its measured-region mask (GRID_SIZE,); None = whole grid
    regions: list[Region] = field(default_factory=list)
    recorded: list[Region] = field(default_factory=list)  # every region but surveys (out-of-library check)
    metadata: dict = field(default_factory=dict)


MAX_AXIS_LENGTH = 1 << 24  # no spectrum has more points; larger shapes are refused before reshaping
# Regions are padded to the longest in the preprocessing graph: a message whose padded size
# (regions x longest region) exceeds this is refused with reason "size" (16 regions of 16,384 points fit).
MAX_PADDED_POINTS = 1 << 18


ID_HASH_CHARS = 16


def measurement_id(name: str, instrument: str, content: bytes) -> str:
    """'NAME@HASH' for a file's spectrum: the same content from the same instrument always gets
    the same id, another measurement under the same name another one."""
    digest = hashlib.sha256(instrument.encode() + b"\0" + content).hexdigest()[:ID_HASH_CHARS]
    return f"{name}@{digest}"


def pack_array(array) -> dict:
    """An array as {"shape", "data"} with little-endian float32 bytes."""
    arr = np.ascontiguousarray(array, dtype="<f4")
    return {"shape": list(arr.shape), "data": arr.tobytes()}


def unpack_array(obj, what: str) -> np.ndarray:
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), bytes) or not isinstance(obj.get("shape"), list):
        raise MessageError("type", f"{what} must be a map with 'shape' (list) and 'data' (bytes)")
    shape = obj["shape"]
    if not (1 <= len(shape) <= 2 and all(isinstance(n, int) and 0 <= n <= MAX_AXIS_LENGTH for n in shape)):
        raise MessageError(
            "shape", f"{what}: shape {repr(shape)[:60]} is not 1 or 2 lengths of 0 to {MAX_AXIS_LENGTH:,} values"
        )
    expected = math.prod(shape) * 4
    if len(obj["data"]) != expected:
        raise MessageError("shape", f"{what}: {len(obj['data'])} bytes do not hold float32 of shape {shape}")
    array = np.frombuffer(obj["data"], dtype="<f4").reshape(shape).astype(np.float32)
    if not np.isfinite(array).all():
        raise MessageError("nan", f"{what} contains NaN or Inf")
    return array


def encode_spectrum(
    id: str,
    instrument: str,
    *,
    intensities=None,
    measured=None,
    regions: list[tuple[str, np.ndarray, np.ndarray]] | None = None,
    axis: str = "binding",
    source_energy_ev: float | None = None,
    metadata: dict | None = None,
) -> bytes:
    """A spectrum message, either grid-ready intensities (and optionally their measured-region
    mask) or (name, energy, counts) regions."""
    body = {"schema": SCHEMA, "id": id, "instrument": instrument, "metadata": metadata or {}}
    if intensities is not None:
        body.update(kind="grid", intensities=pack_array(intensities))
        if measured is not None:
            body["measured"] = pack_array(measured)
    else:
        body.update(
            kind="regions",
            axis=axis,
            source_energy_ev=source_energy_ev,
            regions=[{"name": n, "energy": pack_array(e), "counts": pack_array(c)} for n, e, c in regions or []],
        )
    return msgpack.packb(body, use_bin_type=True)


def decode_spectrum(payload: bytes) -> SpectrumMessage:
    """Validate and decode one spectrum message."""
    try:
        body = msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except Exception as err:  # msgpack raises several types for corrupt input
        raise MessageError("msgpack", f"not a msgpack message ({type(err).__name__})") from None
    if not isinstance(body, dict):
        raise MessageError("type", "message must be a msgpack map")
    schema = body.get("schema")
    if schema != SCHEMA:
        reason = "version" if isinstance(schema, str) and schema.startswith("xpstream.spectrum/") else "schema"
        raise MessageError(reason, f"schema {schema!r} is not {SCHEMA!r}")
    ident, instrument = body.get("id"), body.get("instrument")
    if not isinstance(ident, str) or not isinstance(instrument, str) or not instrument:
        raise MessageError("type", "'id' and 'instrument' must be strings (instrument non-empty)")
    if "/" in instrument or len(instrument) > 64:
        raise MessageError("type", f"instrument {instrument[:64]!r} must be at most 64 characters without '/'")
    metadata = body.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise MessageError("type", "'metadata' must be a map")
    message = SpectrumMessage(ident, instrument, metadata=metadata)
    kind = body.get("kind")
    if kind == "grid":
        spectrum = unpack_array(body.get("intensities"), "intensities")
        if spectrum.shape != (GRID_SIZE,):
            raise MessageError("shape", f"intensities have shape {spectrum.shape}, the grid has ({GRID_SIZE},)")
        if not (spectrum > 0).any():
            raise MessageError("empty", "intensities hold no signal (no positive value)")
        message.spectrum = spectrum
        if body.get("measured") is not None:
            measured = unpack_array(body["measured"], "measured")
            if measured.shape != (GRID_SIZE,) or not np.isin(measured, (0.0, 1.0)).all():
                raise MessageError("shape", f"measured must hold {GRID_SIZE} values of 0 or 1")
            message.measured = measured
    elif kind == "regions":
        try:
            parsed = select_regions(ident or "message", _decode_regions(body))
        except ParseError as err:
            raise MessageError("energy" if err.reason == "parse" else err.reason, str(err)) from None
        message.regions, message.recorded = parsed.regions, parsed.recorded
        padded = padded_points(message.regions)
        if padded > MAX_PADDED_POINTS:
            raise MessageError(
                "size", f"{len(message.regions)} regions padded to {padded:,} points, above {MAX_PADDED_POINTS:,}"
            )
    else:
        raise MessageError("schema", f"kind {kind!r} is neither 'grid' nor 'regions'")
    return message


def padded_points(regions: list[Region]) -> int:
    """Points the preprocessing graph holds for these regions (each padded to the longest)."""
    return len(regions) * max((len(r.counts) for r in regions), default=0)


def _decode_regions(body: dict) -> list[Region]:
    axis = body.get("axis")
    if axis not in ("binding", "kinetic"):
        raise MessageError("schema", f"axis {axis!r} is neither 'binding' nor 'kinetic'")
    source = body.get("source_energy_ev")
    if axis == "kinetic" and (not isinstance(source, int | float) or not np.isfinite(source) or source <= 0):
        raise MessageError("schema", "a kinetic-energy axis needs a positive source_energy_ev")
    items = body.get("regions")
    if not isinstance(items, list) or not items:
        raise MessageError("schema", "'regions' must be a non-empty list")
    regions = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name", ""), str):
            raise MessageError("type", f"region {i} must be a map with a string 'name'")
        energy = unpack_array(item.get("energy"), f"region {i} energy").astype(np.float64)
        counts = unpack_array(item.get("counts"), f"region {i} counts")
        if axis == "kinetic":
            energy = source - energy
        try:
            region = Region(item.get("name") or f"region {i}", energy, counts)
        except ContractError as err:
            raise MessageError("shape", str(err)) from None
        regions.append(region)
    return regions


def encode_prediction(prediction: Prediction, id: str, timings: dict[str, float]) -> bytes:
    """The msgpack payload published on xps/<instrument>/prediction."""
    body = {"schema": PREDICTION_SCHEMA, "id": id, **prediction.to_dict(), "timings_ms": timings}
    return msgpack.packb(body, use_bin_type=True)


def encode_error(id: str | None, source: str, reason: str, message: str) -> bytes:
    """The msgpack payload published on xps/<instrument>/error."""
    return msgpack.packb(
        {"schema": "xpstream.error/1", "id": id, "source": source, "reason": reason, "message": message},
        use_bin_type=True,
    )
