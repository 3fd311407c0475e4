"""The fused method's contract outside the interpreter: registry, clear errors, CUDA graphs (GPU)."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from vbp_live.attribution import FusedVisualBackProp, VisualBackProp, create_method, list_methods
from vbp_live.attribution.vbp_triton import FusedUnavailableError, fused_available
from vbp_live.models import create_model

HAS_TRITON = importlib.util.find_spec("triton") is not None
INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


def test_vbp_fused_is_registered():
    assert "vbp_fused" in list_methods()
    assert isinstance(create_method("vbp_fused", create_model("signnet", height=61, width=61)), FusedVisualBackProp)


@pytest.mark.skipif(INTERPRETING, reason="the interpreter can run CPU tensors")
def test_cpu_tensor_without_interpreter_is_refused_clearly():
    model = create_model("signnet", height=61, width=61).eval()
    ok, why = fused_available("cpu")
    assert not ok
    with pytest.raises(FusedUnavailableError, match="TRITON_INTERPRET=1" if HAS_TRITON else "Triton"):
        FusedVisualBackProp(model).attribute(torch.rand(1, *model.in_shape))
    assert not any(m._forward_hooks for m in model.modules())


def test_cuda_graph_refuses_cpu_input():
    from vbp_live.attribution.cuda_graph import CudaGraphed

    with pytest.raises(ValueError, match="CUDA graphs need a CUDA tensor"):
        CudaGraphed(lambda x: x * 2, torch.zeros(1, 1, 4, 4))


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["vbp", "vbp_fused"])
def test_graphed_vbp_equals_eager(method):
    from vbp_live.attribution.cuda_graph import graph_forward, graph_vbp

    torch.manual_seed(0)
    model = create_model("netsvf").cuda().eval()
    x0, x1 = torch.rand(2, 4, *model.in_shape, device="cuda")
    graphed = graph_vbp(create_method(method, model), x0)
    res = graphed(x1)  # a different frame than the capture example
    want = VisualBackProp(model).run(x1)
    torch.testing.assert_close(res.mask, want.mask, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(res.output, want.output)
    torch.testing.assert_close(graph_forward(model, x0)(x1), want.output)
    with pytest.raises(ValueError, match="captured for"):
        graphed(x1[:2])


@pytest.mark.gpu
def test_graph_capture_refuses_train_mode():
    from vbp_live.attribution.cuda_graph import graph_vbp

    model = create_model("signnet", height=61, width=61).cuda().train()
    with pytest.raises(ValueError, match="eval mode"):
        graph_vbp(FusedVisualBackProp(model), torch.rand(1, *model.in_shape, device="cuda"))
