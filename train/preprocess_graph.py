"""The daemon's batched preprocessing as an ONNX graph, written in torch and exported once
(`xpstream export-preprocess` writes models/preprocess.onnx, which ships).

Inputs (see xpstream.spectrum.pad_regions): counts [M, L] float32, start [M] and
step [M] float64, length [M] int64, owner [M] int64 (the spectrum each region belongs to; every
spectrum 0..N-1 has at least one region). Output: spectra [N, 6601] float32, the same as the
numpy reference `regions_to_grid` for each spectrum; the arithmetic inside is float64.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch
from torch import nn
from torch.nn import functional as F

from xpstream.contract import CONTRACT_VERSION, GRID_SIZE, GRID_START_EV, GRID_STEP_EV
from xpstream.spectrum import BACKGROUND_SEARCH_EV, LIMIT_SMOOTHING_EV, SHIRLEY_ITERATIONS

INPUTS = ("counts", "start", "step", "length", "owner")


class RegionsToGrid(nn.Module):
    """Regions of N spectra -> N grid spectra (see the module docstring)."""

    def forward(self, counts, start, step, length, owner):
        # float64 inside: energies near 700 eV and cumulative areas need more than float32
        counts = counts.double()
        width = counts.shape[1]
        index = torch.arange(width, device=counts.device)[None, :]
        inside = (index < length[:, None]).to(counts.dtype)
        counts = counts * inside
        # background limits (xpstream.spectrum.background_limits): the minimum of the counts
        # averaged over 2h + 1 points (cut at the region's ends), within `search` points of each end
        last_index = (length - 1)[:, None]
        half = torch.minimum(
            torch.floor(LIMIT_SMOOTHING_EV / 2 / step + 0.5).long(), torch.div(length - 1, 8, rounding_mode="floor")
        )
        search = torch.floor(BACKGROUND_SEARCH_EV / step + 0.5).long()
        search = torch.minimum(search, torch.div(length, 4, rounding_mode="floor")).clamp(min=1)[:, None]
        cumulative = F.pad(torch.cumsum(counts, dim=1), (1, 0))
        first = (index - half[:, None]).clamp(min=0)
        last = torch.minimum(index + half[:, None], last_index)
        sums = torch.gather(cumulative, 1, last + 1) - torch.gather(cumulative, 1, first)
        smooth = sums / (last - first + 1).to(counts.dtype)
        infinity = torch.full_like(smooth, float("inf"))
        low_limit = torch.argmin(torch.where(index < search, smooth, infinity), dim=1, keepdim=True)
        in_last = (index >= length[:, None] - search) & (index < length[:, None])
        high_limit = torch.argmin(torch.where(in_last, smooth, infinity), dim=1, keepdim=True)
        low, high = torch.gather(smooth, 1, low_limit), torch.gather(smooth, 1, high_limit)
        within = ((index >= low_limit) & (index <= high_limit)).to(counts.dtype)
        background = low.expand_as(counts)
        segment = ((index[:, :-1] >= low_limit) & (index[:, :-1] < high_limit)).to(counts.dtype)
        for _ in range(SHIRLEY_ITERATIONS):
            signal = counts - background
            trapezoids = 0.5 * (signal[:, 1:] + signal[:, :-1]) * step[:, None] * segment
            area = F.pad(torch.cumsum(trapezoids, dim=1), (1, 0))
            total = torch.gather(area, 1, high_limit)
            ratio = torch.where(total > 0, area / torch.where(total > 0, total, torch.ones_like(total)), 0.0)
            background = low + (high - low) * ratio
        signal = (counts - background) * within
        # linear interpolation onto the grid points each region covers (a window of W points
        # starting at the first grid point at or above the region's start), zero elsewhere
        first_point = torch.ceil((start - GRID_START_EV) / GRID_STEP_EV - 1e-9).clamp(min=0)
        stop = start + (length - 1).double() * step
        last_point = torch.floor((stop - GRID_START_EV) / GRID_STEP_EV + 1e-9).clamp(max=GRID_SIZE - 1)
        window = (last_point - first_point).max().long() + 1
        point = first_point[:, None] + torch.arange(window, device=counts.device)[None, :]
        energy = GRID_START_EV + point * GRID_STEP_EV
        position = (energy - start[:, None]) / step[:, None]
        left = torch.floor(position)
        frac = position - left
        on_region = (position >= 0) & (position <= last_index.double()) & (point <= GRID_SIZE - 1)
        left = left.clamp(0, width - 1).long()
        right = (left + 1).clamp(max=width - 1)
        values = torch.gather(signal, 1, left) * (1 - frac) + torch.gather(signal, 1, right) * frac
        values = torch.where(on_region, values, torch.zeros_like(values))
        # add each region's window into its spectrum (flat index owner * GRID_SIZE + point)
        n_spectra = owner.max() + 1
        flat = (owner[:, None] * GRID_SIZE + point.long().clamp(max=GRID_SIZE - 1)).reshape(-1)
        spectra = torch.zeros(n_spectra * GRID_SIZE, dtype=values.dtype, device=counts.device)
        spectra = spectra.scatter_add(0, flat, values.reshape(-1)).reshape(-1, GRID_SIZE)
        spectra = F.relu(spectra)
        total = spectra.sum(dim=1, keepdim=True)
        return (spectra / torch.where(total > 0, total, torch.ones_like(total))).float()


def export_preprocess(path: str | Path, opset: int = 17) -> Path:
    """Write the preprocessing graph (dynamic region, length and spectrum counts)."""
    example = (
        torch.rand(3, 50),
        torch.tensor([280.0, 525.0, 280.0], dtype=torch.float64),
        torch.tensor([0.1, 0.1, 0.05], dtype=torch.float64),
        torch.tensor([50, 40, 50]),
        torch.tensor([0, 0, 1]),
    )
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            RegionsToGrid().eval(),
            example,
            buffer,
            input_names=list(INPUTS),
            output_names=["spectra"],
            dynamic_axes={
                "counts": {0: "regions", 1: "points"},
                "start": {0: "regions"},
                "step": {0: "regions"},
                "length": {0: "regions"},
                "owner": {0: "regions"},
                "spectra": {0: "spectra"},
            },
            opset_version=opset,
            dynamo=False,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    for key, value in {
        "purpose": "xpstream batched preprocessing: regions -> grid spectra",
        "contract_version": CONTRACT_VERSION,
        "shirley_iterations": str(SHIRLEY_ITERATIONS),
        "background_search_ev": str(BACKGROUND_SEARCH_EV),
        "limit_smoothing_ev": str(LIMIT_SMOOTHING_EV),
    }.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(graph)
    path = Path(path)
    onnx.save(graph, path)
    return path
