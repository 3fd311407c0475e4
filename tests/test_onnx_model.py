"""ONNX models converted with our small converter: outputs equal onnxruntime's, VisualBackProp equal the torch net's.

The nets are our own, exported with ``torch.onnx.export`` (the TorchScript exporter, dynamo=False:
the dynamo exporter needs onnxscript), plus small graphs written with ``onnx.helper`` for the ops
an exporter of ours does not emit.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from vbp_live.attribution.vbp import VisualBackProp
from vbp_live.attribution.vbp_reference import VisualBackPropReference
from vbp_live.core.errors import CheckpointError, ModelError
from vbp_live.core.preprocess import CropSpec
from vbp_live.io.checkpoint import load_checkpoint, save_checkpoint
from vbp_live.io.onnx_model import load_onnx
from vbp_live.models import create_model
from vbp_live.models.blocks import PaddedConv2d


class PilotNetLike(nn.Module):
    """NVIDIA PilotNet 2016 shapes (66x200x3) with the x/127.5-1 normalization inside the graph."""

    def __init__(self):
        super().__init__()
        convs = [(3, 24, 5, 2), (24, 36, 5, 2), (36, 48, 5, 2), (48, 64, 3, 1), (64, 64, 3, 1)]
        layers: list[nn.Module] = []
        for c_in, c_out, k, s in convs:
            layers += [nn.Conv2d(c_in, c_out, k, s), nn.ReLU()]
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(1152, 100), nn.ReLU(), nn.Dropout(0.5),
                                  nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10), nn.ReLU(), nn.Linear(10, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 66, 200) -> (B, 1)
        f = self.features(x / 127.5 - 1.0)  # (B, 64, 1, 18)
        return self.head(f.view(f.size(0), -1))  # exported as Shape -> Gather -> Unsqueeze -> Concat -> Reshape


class EluNet(nn.Module):
    """ELU convs with padding, max pooling, a LeakyReLU conv, average pooling and a tanh head."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 5, 2, padding=2), nn.ELU(0.8), nn.MaxPool2d(2),
            nn.BatchNorm2d(8), nn.Conv2d(8, 12, 3, 1, padding=1), nn.ELU(),
            nn.Conv2d(12, 16, (3, 5), (2, 1)), nn.LeakyReLU(0.1), nn.AvgPool2d(2))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(16 * 2 * 6, 20), nn.ELU(), nn.Linear(20, 2), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, 40, 64) -> (B, 2)
        return self.head(self.features(x))


def randomized(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.1, 0.3)
    return model.eval()


def export(model: nn.Module, x: torch.Tensor, path: Path, opset: int = 13) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    return path


def convert(path: Path) -> nn.Module:
    name, args, sd = load_onnx(path)
    model = create_model(name, **args)
    model.load_state_dict(sd)
    return model.eval()


def runtime(path: Path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


NETS = {
    "netsvf": (lambda: create_model("netsvf"), lambda: torch.rand(2, 1, 125, 640)),
    "pilotnet": (PilotNetLike, lambda: torch.rand(3, 3, 66, 200) * 255),
    "elu": (EluNet, lambda: torch.randn(3, 3, 40, 64)),
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Callable[[str], tuple[nn.Module, Path, nn.Module]]:
    """``get(name)``: the torch net, its ONNX export and the converted net (exported once per module)."""
    cache: dict[str, tuple[nn.Module, Path, nn.Module]] = {}

    def get(name: str) -> tuple[nn.Module, Path, nn.Module]:
        if name not in cache:
            make, inputs = NETS[name]
            original = randomized(make())
            path = export(original, inputs()[:1], tmp_path_factory.mktemp("onnx") / f"{name}.onnx")
            cache[name] = (original, path, convert(path))
        return cache[name]

    return get


@pytest.mark.parametrize("name", sorted(NETS))
def test_outputs_equal_onnxruntime(exported, name):
    _, path, model = exported(name)
    torch.manual_seed(1)
    x = NETS[name][1]()
    with torch.no_grad():
        got = model(x).numpy()
    np.testing.assert_allclose(got, runtime(path, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(NETS))
def test_vbp_masks_equal_the_torch_nets(exported, name):
    original, _, model = exported(name)
    torch.manual_seed(2)
    x = NETS[name][1]()
    got, want = VisualBackProp(model).explain(x), VisualBackProp(original).explain(x)
    assert len(got.maps) == len(want.maps) >= 3
    torch.testing.assert_close(got.mask, want.mask, atol=1e-5, rtol=0)
    torch.testing.assert_close(got.output, want.output, atol=1e-5, rtol=1e-5)


def test_elu_net_vbp_matches_float64_reference(exported):
    """Post-ELU maps averaged as they are (negative values included), as the reference does."""
    model = exported("elu")[2]
    x = NETS["elu"][1]()
    fast = VisualBackProp(model).explain(x)
    ref = VisualBackPropReference(model.double()).explain(x.double())
    model.float()
    assert min(float(m.min()) for m in ref.maps) < 0
    torch.testing.assert_close(fast.mask.double(), ref.mask, atol=1e-5, rtol=0)


def test_converted_net_round_trips_through_a_checkpoint(exported, tmp_path):
    model = exported("pilotnet")[2]
    save_checkpoint(tmp_path / "m.pt", model, CropSpec(0.375, 0.84375, 66, 200, color="rgb", scale=(1.0,)))
    again = load_checkpoint(tmp_path / "m.pt").build_model()
    x = NETS["pilotnet"][1]()
    torch.testing.assert_close(VisualBackProp(again).attribute(x), VisualBackProp(model).attribute(x), atol=0, rtol=0)


# --- graphs written with onnx.helper --------------------------------------------------------------------

def make_model(nodes: list, inits: dict[str, np.ndarray], in_shape: list, out_shape: list, opset: int = 13) -> bytes:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def test_nhwc_graph_with_per_side_pads_and_functional_ops(tmp_path):
    """NHWC input transposed to NCHW, asymmetric conv pads, constant Reshape, MatMul+Add, Concat,
    Unsqueeze/Squeeze, Softmax; the converted net takes NCHW."""
    rng = np.random.default_rng(0)
    inits = {"w": rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "b": rng.normal(0, 0.1, 4).astype(np.float32),
             "shape": np.array([-1, 4 * 5 * 5], np.int64), "m": rng.normal(0, 0.3, (100, 3)).astype(np.float32),
             "c": rng.normal(0, 0.1, 3).astype(np.float32), "axes": np.array([1], np.int64)}
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]),
        helper.make_node("Constant", [], ["scale"], value=numpy_helper.from_array(np.float32(2.0))),
        helper.make_node("Mul", ["t", "scale"], ["ts"]),
        helper.make_node("Conv", ["ts", "w", "b"], ["cv"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 1],
                         name="conv"),
        helper.make_node("Elu", ["cv"], ["e"], alpha=0.5),
        helper.make_node("Reshape", ["e", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "m"], ["mm"]),
        helper.make_node("Add", ["mm", "c"], ["a"]),
        helper.make_node("Unsqueeze", ["a", "axes"], ["u"]),
        helper.make_node("Concat", ["u", "u"], ["cc"], axis=1),
        helper.make_node("Squeeze", ["cc"], ["sq"]),  # (B, 2, 3): nothing to squeeze for B > 1
        helper.make_node("Softmax", ["sq"], ["y"], axis=-1),
    ]
    path = tmp_path / "g.onnx"
    path.write_bytes(make_model(nodes, inits, ["B", 10, 11, 3], ["B", 2, 3]))
    model = convert(path)
    assert model.in_shape == (3, 10, 11) and isinstance(model.nodes["n1"], PaddedConv2d)
    x_nhwc = torch.randn(2, 10, 11, 3)
    with torch.no_grad():
        got = model(x_nhwc.permute(0, 3, 1, 2).contiguous()).numpy()
    np.testing.assert_allclose(got, runtime(path, x_nhwc), atol=1e-5, rtol=1e-5)
    x = x_nhwc.permute(0, 3, 1, 2)
    ref = VisualBackPropReference(model.double()).attribute(x.double())  # the per-side padded conv traces
    torch.testing.assert_close(VisualBackProp(model.float()).attribute(x).double(), ref, atol=1e-5, rtol=0)


def test_unsupported_op_is_named_with_its_node(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]),
             helper.make_node("LpNormalization", ["r"], ["y"], name="norm_7")]
    path = tmp_path / "g.onnx"
    path.write_bytes(make_model(nodes, {}, [1, 1, 4, 4], [1, 1, 4, 4]))
    with pytest.raises(ModelError, match=r"ONNX op LpNormalization \(node 'norm_7'\): not supported") as e:
        load_onnx(path)
    assert "\n" not in str(e.value)


def test_pilotnet_view_exports_shape_ops_that_convert(exported):
    ops = {n.op_type for n in onnx.load(str(exported("pilotnet")[1])).graph.node}
    assert {"Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Sub", "Div"} <= ops


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "x.onnx").write_bytes(b"\x00garbage that is not a protobuf\xff" * 3)
    with pytest.raises(CheckpointError, match="x.onnx"):
        load_onnx(tmp_path / "x.onnx")


def test_missing_onnx_package_is_one_clear_line(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None\n"
            "from vbp_live.io.onnx_model import load_onnx\n"
            "from vbp_live.core.errors import CheckpointError\n"
            "try:\n    load_onnx('m.onnx')\nexcept CheckpointError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "loading ONNX models needs the onnx package: pip install 'vbp-live[onnx]'"


@pytest.mark.parametrize("args,match", [
    ({"nodes": [{"op": "relu", "inputs": ["q"], "outputs": ["y"]}]}, "inputs \\['q'\\] are not computed"),
    ({"nodes": [{"op": "relu", "inputs": ["x"], "outputs": ["z"]}]}, "outputs \\['y'\\] are not computed"),
    ({"nodes": [{"op": "lstm", "inputs": ["x"], "outputs": ["y"]}]}, "unknown op 'lstm'"),
    ({"nodes": [], "constants": [{"name": "a", "shape": [-2]}]}, "constant 0: bad spec"),
])
def test_bad_op_graph_args_are_one_line_model_errors(args, match):
    with pytest.raises(ModelError, match=match):
        create_model("op_graph", in_shape=[1, 4, 4], **args)
