"""Keras .h5 without TensorFlow: the real Udacity file and small Keras 1/2 files written here with h5py.

Every converted net is checked against a forward pass computed independently in numpy from the
HDF5 arrays, channels-last as Keras computes it (float64), and VisualBackProp runs on it and
matches the float64 reference.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from vbp_live.attribution.vbp import VisualBackProp
from vbp_live.attribution.vbp_reference import VisualBackPropReference
from vbp_live.core.errors import CheckpointError, ModelError
from vbp_live.core.preprocess import CropSpec
from vbp_live.io.checkpoint import load_checkpoint, save_checkpoint
from vbp_live.io.keras_h5 import load_keras_h5
from vbp_live.models import create_model
from vbp_live.models.blocks import PaddedConv2d

REAL = "keras-h5/car-behavioral-cloning/model.h5"
LAMBDA = {"lambda_1": (1 / 127.5, -1.0)}  # the file's Lambda: x / 127.5 - 1


# --- an independent numpy forward pass, channels-last (H, W, C), float64 -------------------------------

def np_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray | None, stride: tuple[int, int],
            padding: str) -> np.ndarray:
    """Keras/TensorFlow Conv2D on one (H, W, C) image; kernel (kh, kw, in, out)."""
    kh, kw = kernel.shape[:2]
    if padding == "same":
        x = tf_same_pad(x, (kh, kw), stride, 0.0)
    win = sliding_window_view(x, (kh, kw), axis=(0, 1))[:: stride[0], :: stride[1]]  # (oh, ow, C, kh, kw)
    y = np.einsum("hwcij,ijco->hwo", win, kernel)
    return y + bias if bias is not None else y


def tf_same_pad(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], value: float) -> np.ndarray:
    pads = []
    for n, kk, ss in zip(x.shape[:2], k, s, strict=True):
        total = max((math.ceil(n / ss) - 1) * ss + kk - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)], constant_values=value)


def np_maxpool(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], padding: str) -> np.ndarray:
    if padding == "same":
        x = tf_same_pad(x, k, s, -np.inf)
    return sliding_window_view(x, k, axis=(0, 1))[:: s[0], :: s[1]].max(axis=(3, 4))


def elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def real_numpy_forward(path: Path, image_yuv: np.ndarray) -> float:
    """The real file's net: Lambda, 5 ELU convs, Flatten (h, w, c), ELU dense 100/50/10, dense 1."""
    with h5py.File(path, "r") as f:
        g = f["model_weights"]
        x = image_yuv.astype(np.float64) / 127.5 - 1.0  # (66, 200, 3)
        for i, s in zip(range(1, 6), [2, 2, 2, 1, 1], strict=True):
            name = f"convolution2d_{i}"
            x = elu(np_conv(x, g[name][f"{name}_W:0"][()], g[name][f"{name}_b:0"][()], (s, s), "valid"))
        x = x.reshape(-1)  # Keras flattens channels-last
        for i in range(1, 5):
            name = f"dense_{i}"
            x = x @ g[name][f"{name}_W:0"][()] + g[name][f"{name}_b:0"][()]
            x = elu(x) if i < 4 else x
    return float(x[0])


def simulator_like_frames(shared: Path) -> np.ndarray:
    """Real dashcam frames put through the project's pipeline: 160x320 RGB, rows 60:-25, 200x66, YUV."""
    cap = cv2.VideoCapture(str(shared / "video/hough-lane-detection_highway.mp4"))
    frames = []
    for i in range(120):
        ok, bgr = cap.read()
        assert ok
        if i % 40 == 0:
            frames.append(bgr)
    cap.release()
    frames.append(cv2.imread(str(next((shared / "comma2k19-example1").glob("*/preview.png")))))
    out = []
    for bgr in frames:
        rgb = cv2.cvtColor(cv2.resize(bgr, (320, 160), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        band = cv2.resize(rgb[60:-25], (200, 66), interpolation=cv2.INTER_LINEAR)
        out.append(cv2.cvtColor(band, cv2.COLOR_RGB2YUV))
    return np.stack(out)  # (N, 66, 200, 3) uint8


def build(name: str, args: dict, sd: dict) -> torch.nn.Module:
    model = create_model(name, **args)
    model.load_state_dict(sd)
    return model.eval()


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.astype(np.float32)).permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)


# --- the real file ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_net(request) -> tuple[Path, torch.nn.Module, dict]:
    from tests.conftest import shared_dir

    path = shared_dir() / "data" / REAL
    if not path.is_file():
        pytest.skip(f"shared test data not found at {path}")
    name, args, sd = load_keras_h5(path, LAMBDA)
    return path, build(name, args, sd), {"name": name, "args": args, "sd": sd}


def test_real_file_converts_to_the_readme_architecture(real_net):
    _, model, conv = real_net
    assert conv["name"] == "layer_stack" and conv["args"]["in_shape"] == [3, 66, 200]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (24, (5, 5), (2, 2)), (36, (5, 5), (2, 2)), (48, (5, 5), (2, 2)), (64, (3, 3), (1, 1)), (64, (3, 3), (1, 1))]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1152, 100), (100, 50), (50, 10), (10, 1)]
    assert sum(isinstance(m, torch.nn.ELU) for m in model.modules()) == 8
    json.dumps(conv["args"])  # the args are plain JSON


def test_real_file_equals_numpy_keras_forward_on_real_frames(real_net, shared_data):
    path, model, _ = real_net
    frames = simulator_like_frames(shared_data)
    with torch.no_grad():
        got = model(nchw(frames))[:, 0].double().numpy()
    want = np.array([real_numpy_forward(path, f) for f in frames])
    assert np.ptp(want) > 1e-3  # the frames give different steering
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


@pytest.mark.slow  # the float64 reference on 66x200 frames
def test_real_file_vbp_matches_float64_reference(real_net, shared_data):
    """ELU net: VisualBackProp averages the post-ELU maps as they are, negative values included."""
    _, model, _ = real_net
    x = nchw(simulator_like_frames(shared_data)[:2])
    fast = VisualBackProp(model).explain(x)
    ref = VisualBackPropReference(model.double()).explain(x.double())
    model.float()
    assert len(fast.maps) == 5 and fast.mask.shape == (2, 1, 66, 200)
    assert min(float(m.min()) for m in ref.maps) < 0  # negative ELU outputs pull some channel means below 0
    torch.testing.assert_close(fast.mask.double(), ref.mask, atol=1e-4, rtol=0)
    assert float(fast.mask.min()) == 0.0 and float(fast.mask.max()) == 1.0
    convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
    positive = VisualBackProp(model, layers=convs).explain(x)  # named convs: max(ELU(x), 0) averaged
    assert len(positive.maps) == 5 and min(float(m.min()) for m in positive.maps) >= 0
    # docs/models.md: as is, the mask is a nearly uniform band; the positive parts pick out structure
    assert float(fast.mask.median()) > 0.9 and float(positive.mask.median()) < 0.1
    # positive=True (what run/explain do by default) is the same positive part, found automatically
    auto = VisualBackProp(model, positive=True).explain(x)
    torch.testing.assert_close(auto.mask, positive.mask, atol=1e-6, rtol=0)
    ref_pos = VisualBackPropReference(model.double(), positive=True).explain(x.double())
    model.float()
    torch.testing.assert_close(auto.mask.double(), ref_pos.mask, atol=1e-4, rtol=0)


def test_real_file_round_trips_through_a_checkpoint(real_net, shared_data, tmp_path):
    _, model, conv = real_net
    crop = CropSpec(top=60, bottom=-25, out_height=66, out_width=200, units="pixel", color="yuv",
                    interpolation="linear", scale=(1.0,), offset=(0.0,))  # the Lambda in the net scales
    save_checkpoint(tmp_path / "model.pt", model, crop)
    again = load_checkpoint(tmp_path / "model.pt").build_model()
    x = nchw(simulator_like_frames(shared_data)[:2])
    with torch.no_grad():
        torch.testing.assert_close(again(x), model(x), atol=0, rtol=0)
    torch.testing.assert_close(VisualBackProp(again).attribute(x), VisualBackProp(model).attribute(x), atol=0, rtol=0)


def test_lambda_not_in_the_card_is_refused_by_name(real_net):
    path = real_net[0]
    with pytest.raises(ModelError, match="lambda_1.*never executed") as e:
        load_keras_h5(path, {})
    assert "\n" not in str(e.value)


# --- small Keras files written here --------------------------------------------------------------------

def write_keras(path: Path, layers: list[tuple[str, dict, list[np.ndarray]]], version: str = "2.2.4",
                backend: str = "tensorflow", nested_config: bool = True, inbound: list | None = None,
                outputs: list[int] | None = None) -> Path:
    """A ``model.save`` file as Keras 2 (or 1) lays it out: model_config JSON + model_weights groups.

    ``inbound``: write a functional ``Model`` whose layer ``i`` takes the outputs of layers ``inbound[i]``;
    ``outputs``: its output layers (``output_layers``), by index.
    """
    configs = [{"class_name": cls, "config": cfg} for cls, cfg, _ in layers]
    body = {"name": "sequential_1", "layers": configs} if nested_config else configs
    kind = "Sequential"
    if inbound is not None:
        kind = "Model"
        for conf, sources in zip(configs, inbound, strict=True):
            conf["name"] = conf["config"]["name"]
            conf["inbound_nodes"] = [[[configs[j]["config"]["name"], 0, 0, {}] for j in sources]] if sources else []
        if outputs is not None:
            body["output_layers"] = [[configs[i]["config"]["name"], 0, 0] for i in outputs]
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = version.encode()
        f.attrs["backend"] = backend.encode()
        f.attrs["model_config"] = json.dumps({"class_name": kind, "config": body}).encode()
        g = f.create_group("model_weights")
        g.attrs["layer_names"] = [cfg["name"].encode() for _, cfg, _ in layers]
        for _, cfg, weights in layers:
            lg = g.create_group(cfg["name"])
            names = [f"{cfg['name']}/w{i}:0" for i in range(len(weights))]
            lg.attrs["weight_names"] = [n.encode() for n in names]
            for n, w in zip(names, weights, strict=True):
                lg.create_dataset(n, data=w.astype(np.float32))
    return path


def k2_model(rng: np.random.Generator, fmt: str) -> tuple[list, callable]:
    """A Keras 2 net: same-padded strided convs, maxpool (same), batchnorm, ReLU/ELU layers, dense.

    Returns the layer list and its numpy forward on one image in the model's own layout.
    """
    h, w, c = 23, 30, 3
    k1 = rng.normal(0, 0.3, (3, 3, c, 6))
    b1 = rng.normal(0, 0.1, 6)
    gamma, beta = rng.uniform(0.5, 1.5, 6), rng.normal(0, 0.2, 6)
    mean, var = rng.normal(0, 0.2, 6), rng.uniform(0.5, 2.0, 6)
    k2 = rng.normal(0, 0.3, (4, 3, 6, 5))
    flat = 3 * 4 * 5  # 23x30 -s2 same-> 12x15 -pool 2 s2 same-> 6x8 -conv (4,3) s2 same-> 3x4, 5 channels
    dense = rng.normal(0, 0.3, (flat, 2))
    dbias = rng.normal(0, 0.1, 2)
    shape = [None, h, w, c] if fmt == "channels_last" else [None, c, h, w]
    layers = [
        ("Conv2D", {"name": "conv2d_1", "filters": 6, "kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
                    "data_format": fmt, "activation": "linear", "use_bias": True, "batch_input_shape": shape},
         [k1, b1]),
        ("BatchNormalization", {"name": "bn_1", "axis": -1 if fmt == "channels_last" else 1, "epsilon": 0.001,
                                "center": True, "scale": True}, [gamma, beta, mean, var]),
        ("ELU", {"name": "elu_1", "alpha": 0.7}, []),
        ("MaxPooling2D", {"name": "pool_1", "pool_size": [2, 2], "strides": [2, 2], "padding": "same",
                          "data_format": fmt}, []),
        ("Conv2D", {"name": "conv2d_2", "filters": 5, "kernel_size": [4, 3], "strides": [2, 2], "padding": "same",
                    "data_format": fmt, "activation": "relu", "use_bias": False}, [k2]),
        ("Dropout", {"name": "dropout_1", "rate": 0.5}, []),
        ("Flatten", {"name": "flatten_1", "data_format": fmt}, []),
        ("Dense", {"name": "dense_1", "units": 2, "activation": "tanh", "use_bias": True}, [dense, dbias]),
    ]

    def forward(img: np.ndarray) -> np.ndarray:
        x = img if fmt == "channels_last" else img.transpose(1, 2, 0)  # (H, W, C)
        x = np_conv(x, k1, b1, (2, 2), "same")
        x = (x - mean) / np.sqrt(var + 0.001) * gamma + beta
        x = np.where(x > 0, x, 0.7 * np.expm1(np.minimum(x, 0)))
        x = np_maxpool(x, (2, 2), (2, 2), "same")
        x = np.maximum(np_conv(x, k2, None, (2, 2), "same"), 0)
        x = x.reshape(-1) if fmt == "channels_last" else x.transpose(2, 0, 1).reshape(-1)
        return np.tanh(x @ dense + dbias)

    return layers, forward


@pytest.mark.parametrize("fmt", ["channels_last", "channels_first"])
@pytest.mark.parametrize("nested", [True, False])
def test_keras2_layouts_equal_numpy(tmp_path, fmt, nested):
    rng = np.random.default_rng(0)
    layers, forward = k2_model(rng, fmt)
    name, args, sd = load_keras_h5(write_keras(tmp_path / "m.h5", layers, nested_config=nested), {})
    model = build(name, args, sd)
    assert args["in_shape"] == [3, 23, 30]
    assert sum(isinstance(m, PaddedConv2d) for m in model.modules()) == 2  # TF 'same' with stride 2 pads per side
    images = rng.uniform(-1, 1, (3, 23, 30, 3))
    layout = images if fmt == "channels_last" else images.transpose(0, 3, 1, 2)
    with torch.no_grad():
        got = model(nchw(images)).double().numpy()
    want = np.stack([forward(img) for img in layout])
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_vbp_through_per_side_padding_matches_reference(tmp_path):
    layers, _ = k2_model(np.random.default_rng(1), "channels_last")
    model = build(*load_keras_h5(write_keras(tmp_path / "m.h5", layers), {}))
    x = torch.rand(2, 3, 23, 30) * 2 - 1
    fast = VisualBackProp(model).explain(x)
    ref = VisualBackPropReference(model.double()).explain(x.double())
    assert len(ref.maps) == 2 and [tuple(m.shape[-2:]) for m in ref.maps] == [(12, 15), (3, 4)]
    torch.testing.assert_close(fast.mask.double(), ref.mask, atol=1e-5, rtol=0)


def k1_model(rng: np.random.Generator, ordering: str) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """A Keras 1.2 net: Lambda, Convolution2D (same, subsample 2), Cropping2D, Flatten, Dense."""
    kern = rng.normal(0, 0.3, (3, 3, 2, 4))  # (kh, kw, in, out), Keras 1 tf layout
    stored = kern if ordering == "tf" else kern.transpose(3, 2, 0, 1)  # th stores (out, in, kh, kw)
    bias = rng.normal(0, 0.1, 4)
    dense = rng.normal(0, 0.3, (4 * 4 * 6, 1))
    shape = [None, 9, 11, 2] if ordering == "tf" else [None, 2, 9, 11]
    layers = [
        ("Lambda", {"name": "lambda_1", "function": ["\u00e3 marshalled bytes"], "function_type": "lambda",
                    "batch_input_shape": shape}, []),
        ("Convolution2D", {"name": "convolution2d_1", "nb_filter": 4, "nb_row": 3, "nb_col": 3,
                           "subsample": [2, 2], "border_mode": "same", "dim_ordering": ordering,
                           "activation": "relu", "bias": True}, [stored, bias]),
        ("Cropping2D", {"name": "cropping2d_1", "cropping": [[1, 0], [0, 0]], "dim_ordering": ordering}, []),
        ("Flatten", {"name": "flatten_1"}, []),
        ("Dense", {"name": "dense_1", "output_dim": 1, "activation": "linear", "bias": True},
         [dense, np.zeros(1)]),
    ]
    return layers, kern, bias, dense


@pytest.mark.parametrize("ordering", ["tf", "th"])
def test_keras1_dim_orderings_equal_numpy(tmp_path, ordering):
    rng = np.random.default_rng(2)
    layers, kern, bias, dense = k1_model(rng, ordering)
    path = write_keras(tmp_path / "k1.h5", layers, version="1.2.1", nested_config=False)
    model = build(*load_keras_h5(path, {"lambda_1": (2.0, -1.0)}))
    img = rng.uniform(0, 1, (9, 11, 2))  # (H, W, C)
    x = np.maximum(np_conv(img * 2.0 - 1.0, kern, bias, (2, 2), "same"), 0)[1:]  # (4, 6, 4) after the crop
    flat = x.reshape(-1) if ordering == "tf" else x.transpose(2, 0, 1).reshape(-1)
    with torch.no_grad():
        got = model(nchw(img[None]))[0, 0].item()
    assert got == pytest.approx(float(flat @ dense[:, 0]), abs=1e-5)


def test_theano_backend_kernels_are_flipped(tmp_path):
    rng = np.random.default_rng(3)
    kern, bias = rng.normal(0, 0.3, (3, 2, 1, 1)), np.zeros(1)
    layers = [("Conv2D", {"name": "c", "filters": 1, "kernel_size": [3, 2], "padding": "valid",
                          "data_format": "channels_first", "batch_input_shape": [None, 1, 5, 4]}, [kern, bias]),
              ("Flatten", {"name": "f"}, [])]
    img = rng.uniform(0, 1, (5, 4, 1))
    for backend, k in (("tensorflow", kern), ("theano", kern[::-1, ::-1])):
        model = build(*load_keras_h5(write_keras(tmp_path / f"{backend}.h5", layers, backend=backend), {}))
        with torch.no_grad():
            got = model(nchw(img[None]))[0].double().numpy()
        np.testing.assert_allclose(got, np_conv(img, k, bias, (1, 1), "valid").reshape(-1), atol=1e-6)


def test_unsupported_layer_is_named_with_its_config(tmp_path):
    layers = [("Conv2D", {"name": "c", "filters": 1, "kernel_size": [1, 1], "padding": "valid",
                          "batch_input_shape": [None, 4, 4, 1]}, [np.ones((1, 1, 1, 1)), np.zeros(1)]),
              ("LSTM", {"name": "lstm_1", "units": 8}, [])]
    with pytest.raises(ModelError) as e:
        load_keras_h5(write_keras(tmp_path / "m.h5", layers), {})
    msg = str(e.value)
    assert "LSTM 'lstm_1'" in msg and '"units": 8' in msg and "\n" not in msg


def test_bad_files_are_one_line_checkpoint_errors(tmp_path):
    (tmp_path / "not.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(CheckpointError, match="not a readable HDF5 file"):
        load_keras_h5(tmp_path / "not.h5", {})
    with h5py.File(tmp_path / "weights.h5", "w") as f:  # a save_weights file: no architecture
        f.attrs["layer_names"] = [b"dense_1"]
    with pytest.raises(CheckpointError, match="no model_config"):
        load_keras_h5(tmp_path / "weights.h5", {})


@pytest.mark.parametrize("layers,match", [
    ([{"type": "bogus"}], "unknown layer type 'bogus'"),
    ([{"type": "conv2d", "in_channels": -1, "out_channels": 2, "kernel": [3, 3]}], "layer 0 \\(conv2d\\): bad spec"),
    ([{"type": "dense", "in_features": 4}], "layer 0 \\(dense\\): bad spec"),
])
def test_bad_layer_stack_args_are_one_line_model_errors(layers, match):
    with pytest.raises(ModelError, match=match):
        create_model("layer_stack", in_shape=[1, 4, 4], layers=layers)


def test_functional_chain_converts_and_a_branch_is_refused(tmp_path):
    rng = np.random.default_rng(4)
    layers, forward = k2_model(rng, "channels_last")
    layers = [("InputLayer", {"name": "input_1", "batch_input_shape": [None, 23, 30, 3]}, []), *layers]
    chain = [[]] + [[i] for i in range(len(layers) - 1)]
    model = build(*load_keras_h5(write_keras(tmp_path / "f.h5", layers, inbound=chain), {}))
    img = rng.uniform(-1, 1, (23, 30, 3))
    with torch.no_grad():
        got = model(nchw(img[None]))[0].double().numpy()
    np.testing.assert_allclose(got, forward(img), atol=1e-5, rtol=0)
    branch = chain[:-1] + [[len(layers) - 2, 1]]  # the last Dense also takes the first conv's output
    with pytest.raises(ModelError, match="does not simply follow"):
        load_keras_h5(write_keras(tmp_path / "b.h5", layers, inbound=branch), {})


def keras_linear(rng: np.random.Generator) -> tuple[list, list, callable]:
    """donkeycar's KerasLinear as it saves it: img_in -> convs -> Flatten -> Dense -> [angle, throttle] heads.

    Returns the layers, their inbound lists and the numpy forward of both heads on one HWC image.
    """
    k1, k2 = rng.normal(0, 0.3, (3, 3, 3, 4)), rng.normal(0, 0.3, (3, 3, 4, 5))
    d1, heads = rng.normal(0, 0.3, (5 * 2 * 3, 8)), [rng.normal(0, 0.3, (8, 1)) for _ in range(2)]
    layers = [
        ("InputLayer", {"name": "img_in", "batch_input_shape": [None, 12, 16, 3]}, []),
        ("Conv2D", {"name": "conv2d_1", "filters": 4, "kernel_size": [3, 3], "strides": [2, 2], "padding": "valid",
                    "activation": "relu"}, [k1, np.zeros(4)]),
        ("Conv2D", {"name": "conv2d_2", "filters": 5, "kernel_size": [3, 3], "strides": [2, 2], "padding": "valid",
                    "activation": "relu"}, [k2, np.zeros(5)]),
        ("Flatten", {"name": "flattened"}, []),
        ("Dense", {"name": "dense_1", "units": 8, "activation": "relu"}, [d1, np.zeros(8)]),
        ("Dense", {"name": "n_outputs0", "units": 1, "activation": "linear"}, [heads[0], np.zeros(1)]),
        ("Dense", {"name": "n_outputs1", "units": 1, "activation": "linear"}, [heads[1], np.zeros(1)]),
    ]
    inbound = [[], [0], [1], [2], [3], [4], [4]]

    def forward(img: np.ndarray) -> list[float]:
        x = np.maximum(np_conv(img, k1, np.zeros(4), (2, 2), "valid"), 0)
        x = np.maximum(np_conv(x, k2, np.zeros(5), (2, 2), "valid"), 0)  # (2, 3, 5)
        hidden = np.maximum(x.reshape(-1) @ d1, 0)
        return [float(hidden @ h[:, 0]) for h in heads]

    return layers, inbound, forward


def test_two_headed_model_converts_the_head_it_is_told(tmp_path):
    """donkeycar KerasLinear: angle (n_outputs0) and throttle (n_outputs1); either head converts on its own."""
    rng = np.random.default_rng(6)
    layers, inbound, forward = keras_linear(rng)
    path = write_keras(tmp_path / "pilot.h5", layers, inbound=inbound, outputs=[5, 6])
    with pytest.raises(ModelError, match=r"2 outputs \['n_outputs0', 'n_outputs1'\].*keras.output"):
        load_keras_h5(path, {})
    with pytest.raises(ModelError, match=r"no output layer 'angle'"):
        load_keras_h5(path, {}, output="angle")
    img = rng.uniform(0, 1, (12, 16, 3))
    for k, head in enumerate(("n_outputs0", "n_outputs1")):
        model = build(*load_keras_h5(path, {}, output=head))
        with torch.no_grad():
            got = model(nchw(img[None]))[0, 0].item()
        assert got == pytest.approx(forward(img)[k], abs=1e-5)
    x = nchw(rng.uniform(0, 1, (2, 12, 16, 3)))
    torch.testing.assert_close(VisualBackProp(model).explain(x).mask.double(),
                               VisualBackPropReference(model.double()).explain(x.double()).mask, atol=1e-5, rtol=0)


def test_keras_output_through_a_model_card(tmp_path):
    from vbp_live.core.errors import ConfigError
    from vbp_live.io.model_card import open_model

    rng = np.random.default_rng(7)
    layers, inbound, forward = keras_linear(rng)
    write_keras(tmp_path / "pilot.h5", layers, inbound=inbound, outputs=[5, 6])
    card = tmp_path / "pilot.yaml"
    body = ("format: keras_h5\nweights: pilot.h5\nkeras: {output: n_outputs0}\n"
            "input: {height: 12, width: 16, color: rgb, scaling: x/255}\n"
            "output: {unit: normalized, full_scale_deg: 25, positive: right}\n")
    card.write_text(body)
    model = open_model(card).build_model()
    img = rng.uniform(0, 1, (12, 16, 3))
    with torch.no_grad():
        got = model(nchw(img[None]))[0, 0].item()  # the card's output map: radians, positive = left
    assert got == pytest.approx(-np.radians(25) * forward(img)[0], abs=1e-6)
    card.write_text(body.replace("format: keras_h5", "format: onnx").replace("pilot.h5", "pilot.onnx"))
    with pytest.raises(ConfigError, match="keras: only for format keras_h5"):
        open_model(card)


@pytest.mark.slow  # a fresh interpreter imports torch
def test_missing_h5py_is_one_clear_line():
    code = ("import sys; sys.modules['h5py'] = None\n"
            "from vbp_live.io.keras_h5 import load_keras_h5\n"
            "from vbp_live.core.errors import CheckpointError\n"
            "try:\n    load_keras_h5('m.h5', {})\nexcept CheckpointError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "reading Keras .h5 files needs h5py: pip install 'vbp-live[keras]'"
