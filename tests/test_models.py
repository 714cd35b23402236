"""Models, the 1D warp, ONNX export parity and metadata, and short real training runs."""

import json

import numpy as np
import onnx
import pytest
import torch

from tests.conftest import draw, run_cli
from xpstream.contract import GRID_SIZE, LABEL_NAMES, MODEL_OUTPUTS, ContractError, ModelMetadata
from xpstream.daemon.infer import load_model
from xpstream.models import default_model_path
from xpstream.train.export import Deployed, export_onnx, weights_from_onnx
from xpstream.train.mixtures import MixtureGenerator, MixtureSettings
from xpstream.train.models import (
    Localisation,
    build_model,
    normalised_to_samples,
    paper_grid_sample_warp,
    shift_warp,
    shifted_samples,
)

pytestmark = pytest.mark.slow


def spectra_batch(library, n=64, seed=0, **settings):
    return draw(library, n, seed, **settings)[1]


def test_1d_warp_equals_grid_sample(library):
    torch.manual_seed(0)
    t = (torch.rand(64, dtype=torch.float64) - 0.5) * 0.03  # about +-5 eV
    x64 = torch.rand(64, GRID_SIZE, dtype=torch.float64)
    assert torch.allclose(paper_grid_sample_warp(x64, t), shift_warp(x64, normalised_to_samples(t)), atol=1e-10)
    real = torch.from_numpy(spectra_batch(library).spectra)  # float32, unit area
    a = paper_grid_sample_warp(real, t.float())
    b = shift_warp(real, normalised_to_samples(t.float()))
    assert (a - b).abs().max() < 1e-5


def test_warp_aligns_integer_shifts_exactly_and_zero_fills():
    x = torch.zeros(1, GRID_SIZE)
    x[0, 100] = 1.0
    assert shift_warp(x, torch.tensor([30.0]))[0, 70] == 1.0  # peak 30 samples too high -> back by 30
    assert shift_warp(x, torch.tensor([0.5]))[0, 99:101].tolist() == [0.5, 0.5]
    assert shift_warp(torch.ones(1, GRID_SIZE), torch.tensor([10.0]))[0, -10:].sum() == 0


def test_window_warp_reads_the_points_of_the_full_warp():
    """shifted_samples (the region model's warp of its windows only) equals the full-grid warp
    at those points, for fractional shifts and shifts that carry points off either edge."""
    torch.manual_seed(3)
    x = torch.rand(6, GRID_SIZE)
    edges = (torch.arange(0, 40), torch.arange(GRID_SIZE - 40, GRID_SIZE))
    index = torch.cat([edges[0], torch.randint(0, GRID_SIZE, (200,)), edges[1]])
    shifts = torch.tensor([0.0, 0.37, -0.37, 25.5, -61.25, 7000.0])
    assert torch.equal(shifted_samples(x, index, shifts), shift_warp(x, shifts)[:, index])


def centroid_localisation(pool: int, reference_ev: float, gain: float) -> Localisation:
    """A localisation net that reads gain x (centroid - reference_ev) of a unit-area spectrum:
    one that recovers only part of a shift, as a trained one does far from zero."""
    from xpstream.contract import energy_grid

    full = Localisation()
    with torch.no_grad():
        for layer in (full[1], full[3], full[5]):
            layer.weight.zero_()
            layer.bias.zero_()
        offset = torch.from_numpy(energy_grid() - reference_ev).float() / 100.0  # the net reads x100
        full[1].weight[0], full[1].weight[1] = offset, -offset  # relu(c), relu(-c)
        full[3].weight[0, :2], full[3].weight[1, :2] = torch.tensor([1.0, -1.0]), torch.tensor([-1.0, 1.0])
        full[5].weight[0, :2] = torch.tensor([gain, -gain])
    net = Localisation(pool)
    state = full.state_dict()
    net.pool_state(state, prefix="")
    net.load_state_dict(state)
    return net


@pytest.mark.parametrize("pool", [1, 4])
def test_alignment_passes_settle_on_the_shift(pool):
    """Each further pass reads the shift left after the last alignment and adds it: a net that
    recovers 80 % of a shift gives 80 % after one pass, 96 % after two, 99.2 % after three,
    also when it reads 0.4 eV bins (pool 4) with weights summed from the full-grid net."""
    from xpstream.contract import energy_grid

    grid = energy_grid()
    line = np.exp(-0.5 * ((grid - 303.0) / 0.6) ** 2)  # a line 3 eV above where the net expects it
    x = torch.from_numpy(line / line.sum()).float()[None, :]
    net = centroid_localisation(pool, reference_ev=300.0, gain=0.8)
    with torch.no_grad():
        estimates = [net.estimate(x, passes)[0].item() for passes in (1, 2, 3)]
    assert estimates == pytest.approx([2.4, 2.88, 2.976], abs=0.01)


def test_warm_start_gives_a_pooled_localisation_the_summed_full_grid_weights():
    """`train --init-from` a one-pass region model into the two-pass one: the localisation's
    first layer takes the full-grid weights summed over each 0.4 eV bin, so on a spectrum that
    is constant within the bins it reads exactly what the full-grid net read."""
    from xpstream.train.trainer import warm_start

    torch.manual_seed(5)
    source = build_model("stn-region-lite").eval()
    target = build_model("stn-region-lite-2pass").eval()
    warm_start(target, source.state_dict())
    full, pooled = source.state_dict()["localisation.1.weight"], target.state_dict()["localisation.1.weight"]
    assert pooled.shape == (64, -(-GRID_SIZE // 4))
    assert torch.allclose(pooled[:, 10], full[:, 40:44].sum(dim=1))
    x = torch.rand(3, -(-GRID_SIZE // 4)).repeat_interleave(4, dim=1)[:, :GRID_SIZE]
    x = x / x.sum(dim=1, keepdim=True)
    with torch.no_grad():
        one_full = source.localisation.read(x)
        one_pooled = target.localisation.read(target.localisation.pooled(x))
    assert torch.allclose(one_full, one_pooled, atol=1e-5)


@pytest.mark.parametrize(
    "name",
    [
        "mlp",
        "cnn",
        "stn",
        "stn-shift",
        "stn-shift-convloc",
        "stn-shift-linear",
        "stn-acq-shares",
        "stn-region",
        "stn-region-lite-2pass",
    ],
)
def test_models_output_logits_and_shift_for_any_scale(library, name):
    model = build_model(name).eval()
    x = torch.from_numpy(spectra_batch(library, n=4).spectra)
    with torch.no_grad():
        out = model(x)
        scaled = model(x * 1234.5)
    assert out.logits.shape == (4, 32) and out.shift_ev.shape == (4,)
    assert torch.allclose(out.logits, scaled.logits, atol=1e-4)  # normalisation is inside the model
    if out.share_logits is not None:  # the composition head
        assert out.share_logits.shape == out.share_log_scale.shape == (4, 32)
        assert torch.allclose(out.share_logits, scaled.share_logits, atol=1e-4)


@pytest.mark.parametrize("name", ["mlp", "stn", "stn-shift", "stn-acq", "stn-region", "stn-region-lite-2pass"])
def test_onnx_export_matches_torch_and_carries_metadata(tmp_path, library, name):
    torch.manual_seed(1)
    model = build_model(name).eval()
    for m in model.modules():  # non-trivial BatchNorm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    meta = ModelMetadata("test-" + name, "7", thresholds=[0.3] * 32, metrics={"exact_match": 0.5})
    temperature, share_scale = np.linspace(0.5, 2.0, 32), np.linspace(1.0, 3.0, 32)
    path = export_onnx(model, meta, tmp_path / "m.onnx", temperature=temperature, share_scale=share_scale)
    loaded = load_model(path)
    assert loaded.metadata == meta and loaded.provider == "CPUExecutionProvider"
    batch = spectra_batch(library, n=37, max_shift_ev=5.0, acquisition="random")
    x = batch.spectra * 250.0  # any positive scale
    measured = batch.measured()
    out = loaded.run(x, measured)
    with torch.no_grad():
        expected = Deployed(model, temperature, share_scale)(torch.from_numpy(x), torch.from_numpy(measured))
    for name_out, want in zip(MODEL_OUTPUTS, expected, strict=True):
        assert out[name_out].shape == want.shape
        np.testing.assert_allclose(out[name_out], want.numpy(), atol=1e-4, err_msg=name_out)  # NaN: no share head
    if name == "stn-region":
        assert np.allclose(out["group_fraction"].sum(axis=1), 1.0, atol=1e-5) and (out["group_fraction_std"] > 0).all()
    assert (out["determined"] == 0).any() and (out["probabilities"][out["determined"] == 0] == 0.5).all()
    assert {p.key for p in onnx.load(path).metadata_props} >= {"labels", "thresholds", "grid", "version"}


def test_the_shipped_model_loads_for_training_and_evaluation(library):
    """`train --init-from` and `evaluate` take models/xpstream-stn.onnx: the torch model rebuilt
    from the graph's initializers, with its thresholds, calibration and generator settings,
    computes what the shipped graph does."""
    from xpstream.train.trainer import TrainConfig, load_trained

    shipped = load_model(default_model_path())
    model, thresholds, best = load_trained(default_model_path())
    weights = weights_from_onnx(default_model_path())
    assert weights and all(torch.equal(model.state_dict()[key], value) for key, value in weights.items())
    assert not torch.equal(build_model("stn-acq").state_dict()["classifier.0.weight"], weights["classifier.0.weight"])
    assert thresholds.tolist() == pytest.approx(shipped.metadata.thresholds)
    assert best["out_of_library_threshold"] == shipped.metadata.out_of_library_threshold
    generator = shipped.metadata.training_data["generator"]
    assert TrainConfig.from_json(best["config"]).mixtures == MixtureSettings.from_dict(generator)
    batch = spectra_batch(library, n=29, seed=4, max_shift_ev=5.0, acquisition="random")
    out = shipped.run(batch.spectra, batch.measured())
    with torch.no_grad():
        expected = Deployed(model, best["temperature"], best["share_scale"])(
            torch.from_numpy(batch.spectra), torch.from_numpy(batch.measured())
        )
    for name_out, want in zip(MODEL_OUTPUTS, expected, strict=True):
        np.testing.assert_allclose(out[name_out], want.numpy(), atol=1e-4, err_msg=name_out)


def test_model_with_foreign_metadata_is_refused(tmp_path):
    path = export_onnx(build_model("mlp"), ModelMetadata("m", "1"), tmp_path / "m.onnx")
    graph = onnx.load(path)
    for key, value, message in [
        ("labels", json.dumps(["alkane"] * 32), "labels disagree"),
        ("grid", json.dumps({"start": 0.0, "stop": 700.0, "step": 0.1}), "grid"),
        ("contract_version", "99", "version '99'"),
    ]:
        bad = onnx.ModelProto()
        bad.CopyFrom(graph)
        for prop in bad.metadata_props:
            if prop.key == key:
                prop.value = value
        onnx.save(bad, tmp_path / "bad.onnx")
        with pytest.raises(ContractError, match=message):
            load_model(tmp_path / "bad.onnx")
    with pytest.raises(ContractError, match="labels disagree"):
        export_onnx(build_model("mlp"), ModelMetadata("m", "1", labels=["x"] * 32), tmp_path / "never.onnx")
    assert not (tmp_path / "never.onnx").exists()


TINY = [
    "--polymers",
    "PMMA",
    "PS",
    "PVC",
    "PTFE",
    "PEG",
    "--min-components",
    1,
    "--max-components",
    2,
    "--max-shift",
    2,
    "--train-size",
    3072,
    "--val-size",
    512,
    "--batch-size",
    128,
    "--lr",
    3e-3,
    "--seed",
    3,
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    run_cli("train", "--model", "stn-shift", "--epochs", 4, "--out", out, *TINY, timeout=600)
    return out


def test_tiny_trained_model_beats_chance_on_held_out_data(tiny_run, library):
    from xpstream.train.metrics import exact_match
    from xpstream.train.trainer import load_trained, predict

    model, thresholds, best = load_trained(tiny_run / "best.pt")
    settings = MixtureSettings(
        max_shift_ev=2.0, min_components=1, max_components=2, polymers=("PMMA", "PS", "PVC", "PTFE", "PEG")
    )
    test = MixtureGenerator(library, settings, seed=99).generate(1000)
    out = predict(model, test, best["temperature"])
    probs, shift = out["probabilities"], out["shift_ev"]
    _, counts = np.unique(test.labels, axis=0, return_counts=True)
    chance = counts.max() / len(test.labels)  # always answering the commonest label set
    judged = out["determined"] > 0  # alkene is never judged
    assert exact_match(test.labels, probs >= thresholds, judged) > chance + 0.3
    assert np.mean(np.abs(shift - test.shift_ev)) < 0.5  # predicting 0 would give 1.0 eV


def test_best_weights_are_a_real_copy_of_the_best_epoch(tiny_run, library):
    from xpstream.train.metrics import exact_match
    from xpstream.train.trainer import (
        VALIDATION_SEED_OFFSET,
        TrainConfig,
        headline,
        load_trained,
        predict,
        rule_scoring,
    )

    model, _, best = load_trained(tiny_run / "best.pt")
    config = TrainConfig.from_json(best["config"])
    val = MixtureGenerator(library, config.mixtures, seed=config.seed + VALIDATION_SEED_OFFSET).generate(
        config.val_size
    )
    probs = predict(model, val)["probabilities"]
    judged = headline(rule_scoring(library, val)[1])
    assert exact_match(val.labels, probs >= 0.5, judged) == pytest.approx(best["val_exact_match"])
    assert best["val_exact_match"] == max(h["val_exact_match"] for h in best["history"])


def test_killed_run_resumes_to_the_same_result(tiny_run, tmp_path):
    """SIGKILL a training run after two epochs, resume it: same history as the uninterrupted run."""
    import subprocess
    import sys
    import time

    run = tmp_path / "killed"
    args = [sys.executable, "-m", "xpstream", "train", "--model", "stn-shift", "--epochs", "4", "--out", str(run)]
    args += [str(a) for a in TINY]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        history = run / "history.json"
        if history.exists() and len(json.loads(history.read_text() or "[]")) >= 2:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait(timeout=30)
    assert 2 <= len(json.loads((run / "history.json").read_text())) < 4, "the run was not interrupted"
    run_cli(*args[3:], "--resume", timeout=600)
    resumed = json.loads((run / "history.json").read_text())
    uninterrupted = json.loads((tiny_run / "history.json").read_text())
    assert [h["epoch"] for h in resumed] == [0, 1, 2, 3]
    for a, b in zip(resumed, uninterrupted, strict=True):
        assert a["val_exact_match"] == b["val_exact_match"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
    proc = run_cli(*args[3:-2], "--seed", 4, "--resume", check=False)
    assert proc.returncode == 2 and "settings differ from the interrupted run: seed" in proc.stderr


def test_shift_stability_moves_spectra_on_the_grid_and_counts_changed_calls(library):
    """The transfer report's shift-stability set: move_on_grid moves a line by the asked eV, and
    shift_stability's shares are consistent (right-and-unchanged never above either part; moving
    by 0 eV changes nothing)."""
    from xpstream.contract import energy_grid
    from xpstream.train import transfer
    from xpstream.train.trainer import TrainConfig, load_trained

    grid = energy_grid()
    line = np.exp(-0.5 * ((grid - 285.0) / 0.5) ** 2)[None, :].astype(np.float32)
    for shift in (-5.0, -3.0, 3.0, 5.0):
        moved = transfer.move_on_grid(line, shift)
        assert (moved * grid).sum() / moved.sum() == pytest.approx(285.0 + shift, abs=1e-3)
    model, thresholds, best = load_trained(default_model_path())
    settings = TrainConfig.from_json(best["config"]).mixtures
    result = transfer.shift_stability(model, thresholds, best, settings, n=48)
    for size in ("3", "5"):
        unchanged, both = result[f"unchanged_{size}ev"], result[f"right_and_unchanged_{size}ev"]
        assert 0 <= both <= min(unchanged, result["right_unmoved"]) and unchanged <= 1
    still = transfer.shift_stability(model, thresholds, best, settings, n=48, sizes_ev=(0.0,))
    assert still["unchanged_0ev"] == 1.0 and still["right_and_unchanged_0ev"] == still["right_unmoved"]
    assert still["shift_mae_0ev"] == pytest.approx(still["shift_mae_unmoved_ev"]) and 0 < result["shift_mae_5ev"] < 1


def test_export_and_evaluate_commands(tiny_run, tmp_path):
    onnx_path = tmp_path / "tiny.onnx"
    run_cli("export", tiny_run / "best.pt", "--out", onnx_path, "--model-id", "tiny", "--version", "0.1")
    loaded = load_model(onnx_path)
    assert loaded.metadata.model_id == "tiny" and loaded.metadata.training_data["model"] == "stn-shift"
    run_cli(
        "evaluate",
        tiny_run / "best.pt",
        "--n",
        300,
        "--out",
        tmp_path / "ev",
        "--exclude-labels",
        "alkene",
        "--transfer",
    )
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    (entry,) = report["models"].values()
    (complete,) = report["transfer"]["in-distribution"].values()
    losses = complete["losses"]  # where the in-distribution exact match is lost
    assert losses["exact_match_at_detection_limit"]["0.1"] >= complete["exact_match"]
    assert sum(r["n"] for r in losses["missed_by_share"]) > 0 and set(losses["by_components"]) <= {"1", "2", "3", "4"}
    assert "Where the in-distribution exact match is lost" in (tmp_path / "ev" / "report.md").read_text()
    assert 0 <= entry["exact_match"] <= 1 and len(entry["per_label"]) == 32
    # fewer labels to get right: never a lower exact match
    assert entry["exact_match_excluding"]["labels"] == ["alkene"]
    assert entry["exact_match"] <= entry["exact_match_excluding"]["exact_match"] <= 1
    assert "exact match without alkene" in (tmp_path / "ev" / "report.md").read_text()
    for png in ("sensitivity.png", f"alignment-{tiny_run.name}.png"):
        assert (tmp_path / "ev" / png).read_bytes().startswith(b"\x89PNG")


def test_lpo_scores_each_fold_on_its_held_out_polymers_and_names_labels_never_taught(tmp_path, library):
    """`xpstream lpo`, two folds, tiny runs: each fold's report names the labels only its
    held-out polymers carry (no model can learn them) and scores the held-out mixtures without
    them too, never lower than with them."""
    from xpstream.train.transfer import polymer_folds

    result = run_cli(
        "lpo", "--model", "mlp", "--folds", 2, "--epochs", 1, "--train-size", 256, "--val-size", 128,
        "--test-size", 200, "--threads", 1, "--out", tmp_path, timeout=600,
    )  # fmt: skip
    summary = json.loads((tmp_path / "lpo.json").read_text())
    for fold, row in zip(polymer_folds(library, 2), summary["folds"], strict=True):
        assert row["held_out"] == list(fold)
        taught = {label for p in library.polymers if p.abbr not in fold for label in p.labels}
        carried = {label for p in library.polymers for label in p.labels}
        assert row["labels_never_taught"] == [name for name in LABEL_NAMES if name in carried - taught]
        assert row["labels_never_taught"]  # two folds of 108: some group's only carriers fall in one
        assert row["exact_match_held_out_taught_labels"] >= row["exact_match_held_out"]
    assert "without the labels no training polymer carries" in result.stdout


def test_sweep_and_ablation_commands_write_their_tables(tmp_path):
    tiny = [
        "--polymers",
        "PMMA",
        "PS",
        "--min-components",
        1,
        "--max-components",
        2,
        "--train-size",
        256,
        "--val-size",
        128,
        "--epochs",
        1,
        "--test-size",
        128,
        "--out",
        tmp_path,
    ]
    run_cli("sweep", "--models", "mlp", "stn-shift", "--shifts", 0, 2, *tiny, timeout=600)
    table = json.loads((tmp_path / "sweep.json").read_text())["results"]
    assert set(table) == {"mlp", "stn-shift"} and set(table["mlp"]) == {"0.0", "2.0"}
    assert "shift_mae_ev" in table["stn-shift"]["2.0"] and "shift_mae_ev" not in table["mlp"]["2.0"]
    assert (tmp_path / "accuracy_vs_shift.png").read_bytes().startswith(b"\x89PNG")
    run_cli("sweep", "--ablations", "--max-shift", 2, *tiny, timeout=600)
    rows = (tmp_path / "ablation.md").read_text().splitlines()
    assert len(rows) == 4 + 6  # caption, blank, header, rule + one row per ablation
