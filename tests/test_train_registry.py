"""Test helpers register their models for a while only: the registry is left as it was built."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from train_helpers import tiny_registered, tiny_steer

from vbp_live.models import ConvNet, create_model, list_models
from vbp_live.models.registry import registered_models, unregister_model

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": str(TESTS.parent)}  # this checkout's vbp_live


def builtin_models() -> list[str]:
    """The registry of a fresh process that imported vbp_live.models and nothing else."""
    code = "import json; from vbp_live.models import list_models; print(json.dumps(list_models()))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                         env=ENV)
    return json.loads(out.stdout)


def test_tiny_net_is_registered_only_inside_the_block():
    before = list_models()
    with tiny_registered() as name:
        assert name == "tiny_steer" and name in list_models()
        assert create_model(name).model_args == {}
    assert list_models() == before and "tiny_steer" not in list_models()


def test_the_train_helpers_leave_the_builtin_registry():
    """Strict: a process that uses the helpers (as the train test modules do) ends with the builtin set."""
    code = ("import json, train_helpers; from vbp_live.models import create_model, list_models\n"
            "with train_helpers.tiny_registered() as n:\n    create_model(n)\n"
            "print(json.dumps(list_models()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=TESTS, check=True,
                         timeout=120, env=ENV)
    assert json.loads(out.stdout) == builtin_models()
    assert "tiny_steer" not in list_models()  # in this session too, whatever ran before


def test_temporary_registration_restores_a_replaced_factory():
    def netsvf(height: int = 24, width: int = 48) -> ConvNet:  # shadows the builtin netsvf for a while
        return tiny_steer(height, width)

    builtin = create_model("netsvf")
    with registered_models(netsvf):
        assert sum(p.numel() for p in create_model("netsvf").parameters()) < 50_000
    assert sum(p.numel() for p in create_model("netsvf").parameters()) == sum(p.numel() for p in builtin.parameters())
    unregister_model("no_such_model")  # a no-op
    with pytest.raises(KeyError, match="unknown model 'tiny_steer'"):
        create_model("tiny_steer")
