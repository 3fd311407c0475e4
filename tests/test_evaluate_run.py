"""``vbp-live evaluate``: perturbation curves with known answers, the sanity check, the report, resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from method_nets import eval_tiny_registered, tiny_checkpoint, tiny_steering
from torch import nn

from vbp_live.attribution import Saliency, VisualBackProp
from vbp_live.cli.main import main
from vbp_live.core.plot import line_chart
from vbp_live.evaluate.figures import compute_maps
from vbp_live.evaluate.inputs import Sample
from vbp_live.evaluate.perturb import PerturbSettings, deletion_insertion, frame_context, region_perturbation
from vbp_live.evaluate.run import mass_on_masks
from vbp_live.evaluate.sanity import cascading_randomization, randomize_layer


class LooksAtOneRegion(nn.Module):
    """y = 3 · mean of x over rows 0:10, cols 10:20 (one 10x10 region of a 20x30 input)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 3.0 * x[:, :, 0:10, 10:20].mean(dim=(1, 2, 3))[:, None]


@pytest.fixture
def region_setup():
    model = LooksAtOneRegion()
    x = torch.rand(1, 20, 30, generator=torch.Generator().manual_seed(0))
    x[:, 0:10, 10:20] += 0.5  # the region differs clearly from its blurred copy and from noise
    s = PerturbSettings(patch=10, steps=6, region_fraction=1.0, blur_sigma=3.0)
    good = np.zeros((20, 30))
    good[0:10, 10:20] = 1.0  # the truth: only that region matters
    return model, frame_context(model, x, 0, s), s, good


def test_region_perturbation_known_answer(region_setup):
    """6 regions, one per step: the right map hits the region at step 1, the inverted one at the last step."""
    model, ctx, s, good = region_setup
    right = region_perturbation(model, ctx, good, s)
    wrong = region_perturbation(model, ctx, -good, s)
    hit = abs(3.0 * float(ctx.noise[:, 0:10, 10:20].mean() - ctx.x[:, 0:10, 10:20].mean()))
    assert right[0] == 0 and right[1:] == pytest.approx([hit] * 6, abs=1e-6)
    assert wrong[:6] == pytest.approx([0.0] * 6, abs=1e-7) and wrong[6] == pytest.approx(hit, abs=1e-6)


@pytest.mark.parametrize("fill", ["blur", "mean"])
def test_region_perturbation_other_fills(region_setup, fill):
    model, ctx, s, good = region_setup
    s = dataclasses.replace(s, region_fill=fill)
    filled = ctx.blurred if fill == "blur" else torch.full_like(ctx.x, float(ctx.x.mean()))
    hit = abs(3.0 * float(filled[:, 0:10, 10:20].mean() - ctx.x[:, 0:10, 10:20].mean()))
    right = region_perturbation(model, ctx, good, s)
    assert right[0] == 0 and hit > 0.1 and right[1:] == pytest.approx([hit] * 6, abs=1e-6)
    with pytest.raises(ValueError, match="region_fill must be one of noise, blur, mean"):
        PerturbSettings(region_fill="zeros")


def test_deletion_insertion_known_answer(region_setup):
    model, ctx, s, good = region_setup
    d_good, i_good = deletion_insertion(model, ctx, good, s)
    d_bad, i_bad = deletion_insertion(model, ctx, -good, s)
    full = abs(3.0 * float(ctx.blurred[:, 0:10, 10:20].mean() - ctx.x[:, 0:10, 10:20].mean()))
    assert d_good[0] == 0 and d_good[2:] == pytest.approx([full] * 5, abs=1e-6)  # 1/6 of pixels = the region
    assert i_good[2:] == pytest.approx([0.0] * 5, abs=1e-7) and i_good[0] == pytest.approx(full, abs=1e-6)
    assert d_bad[:5] == pytest.approx([0.0] * 5, abs=1e-7) and i_bad[:5] == pytest.approx([full] * 5, abs=1e-6)


def test_mass_on_masks():
    lane = np.zeros((4, 4), bool)
    lane[0] = True
    blank = np.zeros((4, 4), np.uint8)
    s = Sample("a", blank, blank, masks={"lane": lane, "car": np.zeros((4, 4), bool)})
    m = np.zeros((1, 4, 4))
    m[0, 0] = 1.0
    mass = mass_on_masks(m, [s])
    assert mass["lane"]["share"] == 1.0 and mass["lane"]["ratio"] == pytest.approx(4.0)
    assert "car" not in mass  # not visible in any frame


def test_cascading_randomization_vbp_ignores_the_head_and_model_is_untouched():
    model = tiny_steering()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.rand(2, 1, 12, 16)
    base, _ = compute_maps(VisualBackProp(model), x)
    layers, rhos = cascading_randomization(model, ["vbp", "saliency"], x, {
        "vbp": base, "saliency": compute_maps(Saliency(model), x)[0]})
    assert [n.split(" ")[1] for n in layers] == ["(Linear)", "(Linear)", "(Conv2d)", "(Conv2d)"]
    assert rhos["vbp"][:2] == pytest.approx([1.0, 1.0])  # VBP reads only the conv activations
    assert rhos["saliency"][0] < 0.99
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_randomize_layer_is_seeded():
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    randomize_layer(a, 7)
    randomize_layer(b, 7)
    assert torch.equal(a.weight, b.weight) and (a.bias == 0).all()


def test_line_chart_draws_with_nan():
    img = line_chart({"a": ([0, 1, 2], [0.0, float("nan"), 1.0]), "b": ([0, 1, 2], [1.0, 1.0, 1.0])}, "t", "x", "y")
    assert img.shape == (440, 720, 3) and (img != 255).any()


@pytest.fixture
def drive(tmp_path):
    from vbp_live.io.synth_writers import write_outputs
    from vbp_live.synth import DriveConfig, simulate_drive

    write_outputs(simulate_drive(DriveConfig(seed=4, frames=8)), tmp_path / "syn", ["gt"])
    return tmp_path / "syn"


def _numbers(path):
    """results.json without what legitimately changes between runs (timings, date, cache flags)."""
    r = json.loads(path.read_text())
    r["meta"].pop("date")
    r.pop("forward_ms")
    for m in r["methods"].values():
        m.pop("ms_per_frame")
        m.pop("cached", None)
    return r


@pytest.fixture
def ckpt(tmp_path):
    with eval_tiny_registered():
        yield tiny_checkpoint(tmp_path / "tiny.pt")


def test_evaluate_cli_report_reproducible_and_resumable(tmp_path, drive, ckpt, capsys):
    args = ["evaluate", "--checkpoint", str(ckpt), "--data", str(drive), "--frames", "2", "--steps", "4",
            "--sanity-frames", "1", "--methods", "vbp,lrp,saliency", "--seed", "5"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    report = (tmp_path / "a" / "report.md").read_text()
    for heading in ("## Speed", "## Region perturbation", "synthetic ground truth", "## Agreement with VisualBackProp",
                    "## Sanity check"):
        assert heading in report
    assert "lane markings" in report and "eps-LRP" in report and "very similar" in report
    for png in ("region_perturbation", "deletion", "insertion", "sanity", "example"):
        assert (tmp_path / "a" / f"{png}.png").stat().st_size > 1000
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(res["methods"]) == {"vbp", "lrp", "saliency"}
    assert res["methods"]["vbp"]["sanity"][:2] == pytest.approx([1.0, 1.0])
    assert set(res["agreement"]) == {"lrp", "lrp |R|", "saliency"}
    assert "lane" in res["area_share"]

    assert main(args + ["--out", str(tmp_path / "a")]) == 0  # resumes: every method from the cache
    again = json.loads((tmp_path / "a" / "results.json").read_text())
    assert all(m.get("cached") for m in again["methods"].values())
    vbp_cache = tmp_path / "a" / "cache" / "vbp.json"  # as if interrupted after the maps stage
    stored = json.loads(vbp_cache.read_text())
    vbp_cache.write_text(json.dumps({**stored, "result": {"ms_per_frame": 1.0, "partial": True}}))
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    resumed = json.loads((tmp_path / "a" / "results.json").read_text())["methods"]["vbp"]
    assert resumed["ms_per_frame"] == 1.0 and resumed["aopc"] == again["methods"]["vbp"]["aopc"]
    assert main(args + ["--out", str(tmp_path / "b"), "--no-resume"]) == 0  # recomputed: same numbers
    assert _numbers(tmp_path / "a" / "results.json") == _numbers(tmp_path / "b" / "results.json")
    assert "wrote" in capsys.readouterr().out
