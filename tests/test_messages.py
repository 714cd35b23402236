"""The versioned msgpack schema: round trips and refusals with a reason."""

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xpstream.contract import GRID_SIZE, ModelMetadata, Prediction
from xpstream.daemon.messages import (
    SCHEMA,
    MessageError,
    decode_spectrum,
    encode_prediction,
    encode_spectrum,
    pack_array,
)


def test_grid_message_round_trip():
    x = np.random.default_rng(0).random(GRID_SIZE, dtype=np.float32)
    msg = decode_spectrum(encode_spectrum("s-1", "esca1", intensities=x, metadata={"operator": "ada"}))
    assert msg.id == "s-1" and msg.instrument == "esca1" and msg.metadata == {"operator": "ada"}
    assert np.array_equal(msg.spectrum, x)
    assert msg.measured is None  # no mask: the whole grid was recorded


def test_grid_message_carries_its_measured_region_mask():
    x = np.zeros(GRID_SIZE, dtype=np.float32)
    mask = np.zeros(GRID_SIZE, dtype=np.float32)
    mask[2380:2600] = 1.0  # C 1s only
    x[2450:2460] = 1.0
    msg = decode_spectrum(encode_spectrum("s-1", "esca1", intensities=x, measured=mask))
    assert np.array_equal(msg.measured, mask)
    with pytest.raises(MessageError, match="0 or 1"):
        decode_spectrum(encode_spectrum("s-1", "esca1", intensities=x, measured=mask * 0.5))


def test_regions_above_the_grid_are_kept_aside_for_the_out_of_library_check():
    c1s = ("C 1s", np.linspace(280.0, 295.0, 151), 1.0 + np.hanning(151))
    cu2p = ("Cu 2p", np.linspace(925.0, 965.0, 401), np.ones(401))
    msg = decode_spectrum(encode_spectrum("s-3", "esca1", regions=[c1s, cu2p]))
    assert [r.name for r in msg.regions] == ["C 1s"] and [r.name for r in msg.recorded] == ["C 1s", "Cu 2p"]


def test_kinetic_regions_are_converted_with_the_source_energy():
    ke = np.linspace(1190.0, 1210.0, 201)
    payload = encode_spectrum(
        "s-2", "esca1", regions=[("C 1s", ke, 1.0 + np.hanning(201))], axis="kinetic", source_energy_ev=1486.6
    )
    (region,) = decode_spectrum(payload).regions
    assert region.name == "C 1s"
    assert region.binding_energy_ev[0] == pytest.approx(276.6, abs=1e-3)
    assert region.binding_energy_ev[-1] == pytest.approx(296.6, abs=1e-3)


def _raw(**overrides):
    body = {
        "schema": SCHEMA,
        "id": "a",
        "instrument": "i",
        "kind": "grid",
        "intensities": pack_array(np.ones(GRID_SIZE)),
    }
    body.update(overrides)
    return msgpack.packb(body, use_bin_type=True)


@pytest.mark.parametrize(
    "payload, reason, text",
    [
        (b"\xc1\xc1garbage", "msgpack", "not a msgpack message"),
        (msgpack.packb([1, 2, 3]), "type", "must be a msgpack map"),
        (_raw(schema="xpstream.spectrum/2"), "version", "'xpstream.spectrum/2' is not"),
        (_raw(schema="other"), "schema", "is not"),
        (_raw(kind="image"), "schema", "neither 'grid' nor 'regions'"),
        (_raw(instrument=""), "type", "instrument non-empty"),
        (_raw(instrument="a/b"), "type", "without '/'"),
        (_raw(intensities=pack_array(np.ones(10))), "shape", "shape (10,)"),
        (_raw(intensities={"shape": [GRID_SIZE], "data": b"\0" * 7}), "shape", "do not hold float32"),
        (_raw(intensities=pack_array(np.full(GRID_SIZE, np.nan))), "nan", "NaN"),
        (_raw(intensities=[1, 2, 3]), "type", "must be a map"),
        (_raw(kind="regions", axis="binding", regions=[]), "schema", "non-empty list"),
        (_raw(kind="regions", axis="kinetic", regions=[{}]), "schema", "source_energy_ev"),
        (
            _raw(
                kind="regions",
                axis="binding",
                regions=[
                    {"name": "x", "energy": pack_array(np.linspace(800, 820, 5)), "counts": pack_array(np.ones(5))}
                ],
            ),
            "energy",
            "no core-level region or survey on the grid",
        ),
        (
            _raw(
                kind="regions",
                axis="binding",
                regions=[
                    {"name": "x", "energy": pack_array(np.linspace(280, 290, 5)), "counts": pack_array(np.ones(4))}
                ],
            ),
            "shape",
            "differ",
        ),
    ],
)
def test_bad_messages_are_refused_with_a_reason(payload, reason, text):
    with pytest.raises(MessageError, match=text.replace("(", r"\(").replace(")", r"\)")) as err:
        decode_spectrum(payload)
    assert err.value.reason == reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_random_bytes_end_in_a_message_error(data):
    try:
        decode_spectrum(data)
    except MessageError as err:
        assert err.reason
    else:  # random bytes will not spell a valid message
        raise AssertionError("random bytes decoded")


def test_prediction_payload_carries_id_labels_shift_and_timings():
    outputs = {
        "probabilities": np.full(32, 0.9),
        "shift_ev": 1.5,
        "determined": np.ones(32),
        "out_of_library_score": 0.0,
        "group_fraction": np.full(32, 1 / 32),
        "group_fraction_std": np.full(32, 0.01),
        "level_recorded": np.ones(9),
        "level_area": np.full(9, 1 / 9),
    }
    composition = ({"C": 75.0, "O": 25.0}, {})
    pred = Prediction.from_outputs("f.vms", outputs, ModelMetadata("xpstream-stn", "1.0.0"), (), composition)
    body = msgpack.unpackb(encode_prediction(pred, "s-1", {"inference": 1.2}))
    assert body["id"] == "s-1" and body["shift_ev"] == 1.5 and len(body["labels"]) == 32
    assert body["in_library"] is True and body["undetermined"] == []
    assert body["model"] == "xpstream-stn" and body["timings_ms"] == {"inference": 1.2}
    assert body["group_percent"]["alkane"] == pytest.approx(3.12) and body["atomic_percent"] == {"C": 75.0, "O": 25.0}


def test_an_all_zero_grid_is_refused_as_empty():
    with pytest.raises(MessageError) as err:
        decode_spectrum(encode_spectrum("z", "esca1", intensities=np.zeros(6601, dtype=np.float32)))
    assert err.value.reason == "empty"
