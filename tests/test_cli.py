"""The command line as a whole: help layout, --version, shared defaults (shipped model, --device auto), errors."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
import torch
from stream_util import coded_frame, tiny_checkpoint, write_video

from vbp_live import __version__
from vbp_live.cli.main import COMMANDS, build_parser, main
from vbp_live.cli.options import HelpFormatter, resolve_device
from vbp_live.core.errors import DeviceError, UsageError
from vbp_live.stream.session import shipped_checkpoint


def subcommand_help(name: str) -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name].format_help()


@pytest.mark.parametrize("name", COMMANDS)
def test_help_fits_80_columns_and_names_the_defaults(name, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    text = subcommand_help(name)
    long = [line for line in text.splitlines() if len(line) > 80]
    assert not long, "\n".join(long)
    assert "default" in text


def test_help_formatter_fills_paragraphs_and_keeps_tables(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    p = argparse.ArgumentParser(prog="x", formatter_class=HelpFormatter, description=(
        "A first paragraph that is much longer than sixty columns and so must be filled to the width.\n"
        "\n"
        "TABLE:\n"
        "  short     one\n"
        "  longer    a second column far too long for sixty columns, continued under its column\n"))
    lines = p.format_help().splitlines()
    assert max(len(line) for line in lines) <= 60
    assert "  short     one" in lines
    i = next(k for k, line in enumerate(lines) if line.startswith("  longer    a second"))
    assert lines[i + 1].startswith(" " * 12) and not lines[i + 1].startswith(" " * 13)


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"vbp-live {__version__}"


def test_devices_default_to_auto_and_are_checked():
    parser = build_parser()
    for cmd in ("run x.mp4", "explain x.png", "evaluate --data d", "demo", "bench"):
        assert parser.parse_args(cmd.split()).device == "auto", cmd
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(UsageError, match="'bogus' is not a device"):
        resolve_device("bogus")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA device"):
            resolve_device("cuda:1")


@pytest.mark.skipif(shipped_checkpoint() is None, reason="the shipped model is not installed")
def test_explain_and_evaluate_default_to_the_shipped_model(tmp_path, capsys):
    image = tmp_path / "road.png"
    cv2.imwrite(str(image), coded_frame(3, (640, 480)))
    assert main(["explain", str(image), "--methods", "vbp", "--out", str(tmp_path / "ex")]) == 0
    assert len(list((tmp_path / "ex").glob("*.png"))) == 1
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        cv2.imwrite(str(frames / f"{i:03d}.png"), coded_frame(i, (640, 480)))
    assert main(["evaluate", "--data", str(frames), "--frames", "2", "--methods", "vbp,saliency", "--steps", "2",
                 "--sanity-frames", "0", "--out", str(tmp_path / "ev")]) == 0
    assert (tmp_path / "ev" / "report.md").is_file()
    assert str(shipped_checkpoint()) in (tmp_path / "ev" / "report.md").read_text() + capsys.readouterr().out


@pytest.mark.skipif(shipped_checkpoint() is None, reason="the shipped model is not installed")
def test_demo_writes_to_dash_o(tmp_path, capsys):
    out = tmp_path / "d.mp4"
    assert main(["demo", "-o", str(out), "--frames", "2", "-q"]) == 0
    assert out.is_file() and f"wrote {out}" in capsys.readouterr().out


ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m vbp_live.cli.main ARGS`` with this checkout's code."""
    return subprocess.run([sys.executable, "-m", "vbp_live.cli.main", *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_user_mistakes_are_one_line_on_stderr(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage" * 100)
    evil = tmp_path / "whole.pt"
    torch.save(torch.nn.Linear(2, 1), evil)
    image = tmp_path / "road.png"
    cv2.imwrite(str(image), coded_frame(0))
    ckpt = tiny_checkpoint(tmp_path / "t.pt")
    video = write_video(tmp_path / "in.mp4", 2)
    cases = [
        (["run", str(video), "--checkpoint", str(bad), "-o", str(tmp_path / "o.mp4")],
         "not a checkpoint (corrupt or not written by torch.save)"),
        (["explain", str(image), "--checkpoint", str(evil)], "contains Python objects"),
        (["explain", str(image), "--checkpoint", str(ckpt), "--methods", "vbp,nope"], "--methods: unknown method"),
        (["explain", str(image), "--checkpoint", str(ckpt), "--pda-window", "20"], "larger than --pda-patch 18"),
        (["explain", str(image), "--checkpoint", str(ckpt), "--device", "tpu"], "--device 'tpu'"),
        (["bench", "--models", "nonet"], "unknown model(s) nonet"),
    ]
    for args, message in cases:
        res = cli(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 1 and len(lines) == 1 and message in lines[0], (args, res.stderr)
        assert "weights_only=False" not in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("args", [["demo", "--frames", "0"], ["run", "x.mp4", "--batch", "0"],
                                  ["explain", "x.png", "--percentile", "200"], ["synth", "-o", "d", "--split", "0"],
                                  ["evaluate", "--data", "d", "--region-fraction", "0"], ["bench", "--repeats", "x"]])
def test_out_of_range_options_are_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and err[0].startswith("usage: ") and "error: argument" in err[-1]
