"""Inputs the long fuzz campaign (bench/fuzz_campaign.py) found, pinned so they stay fixed.
Each reached `gtool: internal error` before its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gtool.cli import main


def cli(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "g.yaml"
    path.write_text(text)
    return path


def test_grad_with_respect_to_an_intermediate_the_loss_ignores(tmp_path, capsys):
    """`--wrt h` where h is a float node the loss does not read: dL/dh is zeros of h's shape
    (was a KeyError: autodiff pruned h away before looking up its type)."""
    g = write(tmp_path, "gtool: 1\ninputs:\n  x: {shape: [2], value: [1.0, 2.0]}\nnodes:\n"
                        "  h: exp(x)\n  L: sum(x * 3)\noutputs: [L, h]\nloss: L\n")
    code, out, err = cli(capsys, "grad", g, "--wrt", "h,x", "--format", "json")
    assert code == 0, err
    grads = json.loads(out)["gradients"]
    assert grads["h"]["value"] == [0.0, 0.0] and grads["h"]["shape"] == [2]
    assert grads["x"]["value"] == [3.0, 3.0]


def test_explain_closed_form_with_a_tensor_target_the_loss_ignores(tmp_path, capsys):
    """explain compares sympy's closed form with the gradient; a tensor target the scalar loss
    does not read has an all-zero gradient array (was `float()` of a [2] array)."""
    g = write(tmp_path, "gtool: 1\ninputs:\n  x1: {shape: []}\n  x8: {shape: [2]}\nnodes:\n"
                        "  h2: square(x1)\n  h9: x1 + x8\noutputs: [h2, h9]\n")
    code, out, err = cli(capsys, "explain", g, "--random-inputs")
    assert code == 0, err
    assert "dh2/dx8 = 0 = 0" in out
    assert "internal error" not in err
