"""The compiled CPU pass (``vbp_live.attribution.native``) agrees with the reference, and degrades cleanly.

The float64 tests in ``test_vbp_reference.py`` exercise the pure-torch path (the compiled kernel
takes float32 only); here float32 models go through the kernel, checked against the float64
reference, the torch path and hand-made edge cases. Build and fallback behaviour runs in
subprocesses, so each starts with its own environment and an empty cache folder.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from test_vbp_reference import random_net
from vbp_live.attribution import VisualBackProp, VisualBackPropReference, native
from vbp_live.models import create_model, list_models

ROOT = Path(__file__).resolve().parents[1]
needs_kernel = pytest.mark.skipif(
    native.library() is None, reason=f"compiled kernel unavailable here: {native.unavailable_reason()}"
)


def assert_matches_reference(model: nn.Module, x: torch.Tensor, **kw) -> None:
    """The compiled path (and the float32 torch path) against the float64 reference."""
    fast = VisualBackProp(model, compiled=True, **kw)
    torch_path = VisualBackProp(model, compiled=False, **kw)
    ref = VisualBackPropReference(model, **kw)
    raw_ref = ref.attribute(x, raw=True).double()
    scale = raw_ref.abs().amax().clamp_min(1e-30)
    for m in (fast, torch_path):
        raw = m.attribute(x, raw=True)
        assert raw.shape == raw_ref.shape and raw.dtype == torch.float32
        torch.testing.assert_close(raw.double() / scale, raw_ref / scale, atol=2e-6, rtol=1e-4)
    norm_ref = ref.attribute(x)
    norm = fast.attribute(x)
    assert norm.min() >= 0 and norm.max() <= 1
    # where the reference mask is not flat, the normalized masks agree to float32 precision
    if (raw_ref.flatten(1).amax(1) - raw_ref.flatten(1).amin(1)).min() > 1e-3 * scale:
        torch.testing.assert_close(norm, norm_ref, atol=2e-5, rtol=1e-4)


@needs_kernel
@pytest.mark.parametrize("name", list_models())
def test_registered_nets_compiled_matches_reference(name):
    torch.manual_seed(1)
    model = create_model(name).eval()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.3)
    assert_matches_reference(model, torch.rand(2, *model.in_shape))


@needs_kernel
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), batch=st.integers(1, 3))
def test_random_geometries_compiled_matches_reference(seed, batch):
    rng = random.Random(seed)
    torch.manual_seed(seed)
    model, shape = random_net(rng)  # strides, padding, dilation, non-square kernels, pools (ceil_mode too)
    model(torch.zeros(1, *shape))
    assert_matches_reference(model.eval(), torch.rand(batch, *shape))


@needs_kernel
@pytest.mark.parametrize(
    "conv",
    [
        dict(kernel_size=(7, 1), stride=1, dilation=(2, 1)),  # more than 3 source rows per output row
        dict(kernel_size=(1, 9), stride=(1, 3), padding=(0, 4)),
        dict(kernel_size=5, stride=4, padding=2),  # stride > kernel/2: rows with no source
        dict(kernel_size=2, stride=3),  # stride > kernel: gaps in the mask
    ],
)
def test_unusual_kernels_compiled_matches_reference(conv):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, **conv), nn.ReLU(), nn.Flatten(), nn.LazyLinear(1))
    model(torch.zeros(1, 2, 41, 37))
    assert_matches_reference(model.eval(), torch.rand(2, 2, 41, 37))


@needs_kernel
def test_all_zero_maps_give_zero_mask_not_nan():
    model = nn.Sequential(nn.Conv2d(1, 2, 3, bias=False), nn.ReLU(), nn.Conv2d(2, 2, 3, stride=2, bias=False), nn.ReLU())
    mask = VisualBackProp(model.eval(), compiled=True).attribute(torch.zeros(2, 1, 20, 20))
    assert torch.equal(mask, torch.zeros(2, 1, 20, 20))


@needs_kernel
def test_one_object_from_many_threads():
    model = create_model("signnet").eval()
    vbp = VisualBackProp(model, compiled=True)
    xs = [torch.rand(1 + i % 2, *model.in_shape) for i in range(8)]
    expected = [vbp.attribute(x) for x in xs]
    got: dict[int, list[torch.Tensor]] = {}

    def work(t: int) -> None:
        got[t] = [vbp.attribute(xs[(t + j) % 8]) for j in range(16)]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for t, masks in got.items():
        for j, m in enumerate(masks):
            assert torch.equal(m, expected[(t + j) % 8])


@needs_kernel
def test_mask_from_reduced_checks_shapes_once_and_layout_every_call():
    """The per-frame fast check: shapes are checked on first use of a set of full shapes (a
    batch of another size shares the plan), the layout on every call (else the torch path)."""
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2), nn.ReLU()).eval()
    vbp = VisualBackProp(model, compiled=True)
    x = torch.rand(3, 1, 40, 40)
    with torch.no_grad():
        _, red = vbp.forward_capture(x, lambda t: (t.sum(1, keepdim=True), t.shape[1]))
        _, red1 = vbp.forward_capture(x[:1], lambda t: (t.sum(1, keepdim=True), t.shape[1]))
    want = VisualBackProp(model, compiled=False).attribute(x)
    for _ in range(2):
        torch.testing.assert_close(vbp.mask_from_reduced(red, (40, 40))[0], want, atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(vbp.mask_from_reduced(red1, (40, 40))[0], want[:1], atol=2e-5, rtol=1e-4)
    assert len(vbp._checked) == 2 and len(vbp._plans) == 1  # two batch sizes, one plan
    strided = [(torch.cat([s, s], dim=3)[..., : s.shape[3]], c) for s, c in red]  # same values, not contiguous
    assert not native.readable_all([s for s, _ in strided])
    torch.testing.assert_close(vbp.mask_from_reduced(strided, (40, 40))[0], want, atol=2e-5, rtol=1e-4)
    mixed = [red[0], (red[1][0][:2], red[1][1])]  # batches disagree: refused, not read out of bounds
    with pytest.raises(ValueError, match="map 1 is"):
        vbp.mask_from_reduced(mixed, (40, 40))


@needs_kernel
def test_kernel_refuses_a_plan_for_other_sizes():
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2), nn.ReLU()).eval()
    vbp = VisualBackProp(model, compiled=True)
    x = torch.rand(1, 1, 40, 40)
    vbp.attribute(x)
    plan = next(iter(vbp._plans.values()))
    _, sums = vbp.forward_capture(x[:, :, :-8, :-8], lambda t: t.sum(1, keepdim=True))
    with pytest.raises(ValueError, match=r"map 0 is \(1, 1, 30, 30\).*shaped \(1, 1, 38, 38\)"):
        native.backprop(plan, sums, [1.0] * len(sums), normalize=True)
    with pytest.raises(ValueError, match="maps"):
        native.backprop(plan, sums[:-1], [1.0] * (len(sums) - 1), normalize=True)
    steps = list(plan.steps)
    steps[3] += 1  # the first step now lands one row off the next map: the kernel itself refuses
    broken = native.NativePlan((type(plan.steps))(*steps), plan.n_steps, plan.map_h, plan.map_w, plan.out_hw)
    _, good = vbp.forward_capture(x, lambda t: t.sum(1, keepdim=True))
    with pytest.raises(RuntimeError, match="do not chain"):
        native.backprop(broken, good, [1.0] * len(good), normalize=True)


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
@pytest.mark.parametrize("extra", [(), native.OPENMP_FLAGS], ids=["serial", "openmp"])
def test_source_compiles_cleanly_with_warnings_on(tmp_path, extra):
    proc = subprocess.run(
        [os.environ.get("CC", "cc"), *native.FLAGS, *extra, "-Wall", "-Wextra", "-Werror", "-o", str(tmp_path / "k.so"),
         str(native.SOURCE)],
        capture_output=True, text=True,
    )
    if extra and proc.returncode != 0 and "omp" in proc.stderr.lower():
        pytest.skip(f"this compiler has no OpenMP: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr


def special_values(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Random floats with NaN, infinities and signed zeros sprinkled in."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g) * 3
    flat = x.view(-1)
    picks = torch.randint(0, flat.numel(), (min(64, flat.numel()),), generator=g)
    values = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-42, -1e-42])
    flat[picks] = values[torch.arange(picks.numel()) % values.numel()]
    return x


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.equal(a.view(torch.int32), b.view(torch.int32))


@needs_kernel
@pytest.mark.parametrize("shape", [(1, 32, 123, 349), (3, 7, 5, 9), (2, 4, 1, 1), (1, 1, 33, 65), (4, 9, 40, 41)])
@pytest.mark.parametrize("inplace", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("split_small", [False, True])
def test_fused_relu_is_torch_relu_bit_for_bit_and_its_sum(shape, inplace, threads, split_small, monkeypatch):
    """Every channel count (groups of 4 and the rest), tile remainders, batches, NaN, ±inf, ±0;
    ``split_small`` sends small maps through the threaded loop too (normally only large maps)."""
    if split_small:
        monkeypatch.setattr(native, "PARALLEL_MIN_ELEMENTS", 0)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        x = special_values(shape, seed=sum(shape))
        before, want = x.clone(), torch.relu(x)
        with torch.no_grad():
            res = native.relu_channel_sum(x, inplace)
        if res is None:
            assert native.relu_threads(x.numel()) == 0  # declined: one thread of ours would be slower than torch's
            return
        out, sums = res
        assert same_bits(out, want) and out.shape == x.shape
        assert (out is x) == inplace and same_bits(x, want if inplace else before)  # the input untouched unless in place
        assert sums.shape == (shape[0], 1, *shape[2:])
        torch.testing.assert_close(sums, want.double().sum(1, keepdim=True).float(), equal_nan=True, rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(old)


@needs_kernel
def test_fused_relu_declines_what_it_does_not_cover():
    x = torch.randn(2, 8, 5, 6)
    assert native.relu_channel_sum(x.requires_grad_(), False) is None  # gradients on: torch's ReLU records the graph
    with torch.no_grad():
        assert native.relu_channel_sum(x.double(), False) is None
        assert native.relu_channel_sum(x.transpose(2, 3), False) is None  # not contiguous
        assert native.relu_channel_sum(x[0], False) is None  # not 4-d
        assert native.relu_channel_sum(torch.empty(0, 8, 5, 6), False) is None


@needs_kernel
@pytest.mark.parametrize("inplace", [False, True])
def test_vbp_with_the_fused_relu_keeps_the_model_output_and_the_mask(inplace):
    """The registered net's output is bit-identical to a plain forward; the mask equals the torch path's."""
    model = create_model("nethvf").eval()
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = inplace
    x = torch.rand(2, *model.in_shape)
    with torch.inference_mode():
        plain = model(x)
        res = VisualBackProp(model, compiled=True).run(x)
        torch_path = VisualBackProp(model, compiled=False).attribute(x)
    assert torch.equal(res.output, plain)
    torch.testing.assert_close(res.mask, torch_path, atol=2e-5, rtol=1e-4)


@needs_kernel
def test_the_fused_relu_is_used_on_plain_relus_only():
    """It takes a plain nn.ReLU stage; a subclass with its own forward keeps its own forward."""
    class Clipped(nn.ReLU):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return torch.clamp(t, 0, 0.5)

    used = []
    real = native.relu_channel_sum

    def spy(t: torch.Tensor, inplace: bool):
        used.append(tuple(t.shape))
        return real(t, inplace)

    net = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Conv2d(6, 5, 3, stride=2), Clipped()).eval()
    x = torch.rand(1, 1, 21, 23)
    native.relu_channel_sum = spy
    try:
        with torch.no_grad():
            res = VisualBackProp(net, compiled=True).run(x)
    finally:
        native.relu_channel_sum = real
    assert used == [(1, 6, 19, 21)] or (used == [] and native.relu_threads(6 * 19 * 21) == 0)
    torch.testing.assert_close(res.mask, VisualBackPropReference(net).attribute(x).float(), atol=2e-5, rtol=1e-4)
    assert torch.equal(res.output, net(x))


@pytest.mark.skipif(not sys.platform.startswith("linux") or "parallel backend: OpenMP" not in torch.__config__.parallel_info(),
                    reason="torch here does not run GNU OpenMP")
@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
def test_openmp_build_shares_torchs_runtime(tmp_path):
    """Built with OpenMP, the library binds to torch's libgomp: one OpenMP runtime in the process."""
    code = ("import torch; from vbp_live.attribution import native; lib = native.library(); "
            "print('OMP', lib.vbp_openmp(), 'PAR', native._state['parallel'], 'RUNTIMES', len(native._openmp_runtimes()))")
    env = {**os.environ, "VBP_LIVE_CACHE_DIR": str(tmp_path / "cache"), "VBP_LIVE_NATIVE": "1",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    if "OMP 0" in proc.stdout:
        pytest.skip("this compiler has no OpenMP; the serial build is in use")
    assert "OMP 1 PAR True RUNTIMES 1" in proc.stdout, proc.stdout


SNIPPET = """
import logging, sys, torch
logging.basicConfig(level=logging.WARNING, stream=sys.stdout)
from vbp_live.attribution import VisualBackProp, VisualBackPropReference, native
from vbp_live.models import create_model
m = create_model("signnet").eval(); x = torch.rand(2, *m.in_shape)
a = VisualBackProp(m).attribute(x); r = VisualBackPropReference(m).attribute(x)
print("LIB", native.library() is not None, "ERR", (a - r).abs().max().item() < 1e-5)
print("WHY", native.unavailable_reason())
try:
    VisualBackProp(m, compiled=True).attribute(x)
    print("FORCED ok")
except RuntimeError as e:
    print("FORCED", e)
"""


def run_snippet(env: dict[str, str]) -> str:
    full = {**os.environ, **env, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True, env=full, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
def test_first_use_builds_into_the_cache_once(tmp_path):
    env = {"VBP_LIVE_CACHE_DIR": str(tmp_path / "cache"), "VBP_LIVE_NATIVE": "1"}
    out = run_snippet(env)
    assert "LIB True ERR True" in out and "FORCED ok" in out
    libs = [p for p in (tmp_path / "cache").iterdir() if p.name.startswith("vbp_cpu-")]
    assert len(libs) == 1 and not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]
    before = libs[0].stat().st_mtime_ns
    assert "LIB True ERR True" in run_snippet(env)
    assert libs[0].stat().st_mtime_ns == before  # reused, not rebuilt


def test_no_compiler_falls_back_to_torch_with_a_warning(tmp_path):
    out = run_snippet({"VBP_LIVE_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(tmp_path / "tmp"),
                       "CC": str(tmp_path / "no-such-cc"), "VBP_LIVE_NATIVE": "1"})
    assert "LIB False ERR True" in out  # same mask from the torch path
    assert "compiled VisualBackProp CPU kernel unavailable" in out and "no-such-cc" in out
    assert "FORCED compiled=True, but the compiled CPU kernel is unavailable" in out


def test_switched_off_by_environment(tmp_path):
    out = run_snippet({"VBP_LIVE_CACHE_DIR": str(tmp_path / "cache"), "VBP_LIVE_NATIVE": "0"})
    assert "LIB False ERR True" in out and "WHY disabled by VBP_LIVE_NATIVE=0" in out
    assert not (tmp_path / "cache").exists()


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
def test_unwritable_cache_falls_back_to_the_temp_folder(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    (tmp_path / "tmp").mkdir()
    out = run_snippet({"VBP_LIVE_CACHE_DIR": str(blocker), "TMPDIR": str(tmp_path / "tmp"), "VBP_LIVE_NATIVE": "1"})
    assert "LIB True ERR True" in out
    assert [p.name for p in (tmp_path / "tmp").glob("vbp_live-*/vbp_cpu-*")]


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler")
def test_a_cache_folder_others_can_write_is_refused(tmp_path):
    shared = tmp_path / "shared-cache"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could plant a library here
    (tmp_path / "tmp").mkdir()
    out = run_snippet({"VBP_LIVE_CACHE_DIR": str(shared), "TMPDIR": str(tmp_path / "tmp"), "VBP_LIVE_NATIVE": "1"})
    assert "LIB True ERR True" in out
    assert not list(shared.iterdir())  # nothing built or loaded there
    built = list((tmp_path / "tmp").glob("vbp_live-*/vbp_cpu-*"))
    assert built and all(p.parent.stat().st_mode & 0o077 == 0 for p in built)  # the fallback folder is private
