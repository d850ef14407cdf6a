"""Models exported from PyTorch load in gtool and give torch's outputs and gradients.

The models, their inputs, outputs, a fixed cotangent and `torch.autograd.grad`'s parameter and
input gradients for it were written by tests/data/onnx/make_torch_models.py (run with torch,
which the suite itself never imports). gtool loads each `.onnx`, runs `gtool.vjp` with the same
cotangent, and must agree within rtol 1e-9 in float64 and 2e-4 in float32 (entries near 0 within
rtol of the largest entry of the output, or of all the model's gradients: a gradient that cancels
to 0, as the transformer's k.bias does, is rounding noise in both).

A model whose ONNX ops have no converter yet is skipped, naming the missing ops (computed from
the converter registry, so each test starts to run by itself once its ops land).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import gtool

onnx = pytest.importorskip("onnx")

DATA = Path(__file__).resolve().parent / "data" / "onnx"
RTOL = {"float64": 1e-9, "float32": 2e-4}
MODELS = [("mlp", "float64"),  # issue 12
          *((m, d) for m in ("cnn", "transformer", "bn_mlp") for d in ("float32", "float64"))]  # issue 13


def _missing_ops(path: Path) -> list[str]:
    """The ONNX op types of the model that the importer has no converter for."""
    from gtool.onnx.registry import converted_ops

    model = onnx.load(str(path))
    return sorted({n.op_type for n in model.graph.node if n.domain in ("", "ai.onnx")} - converted_ops())


def _load(name: str, dtype: str):
    path = DATA / f"torch_{name}_{dtype}.onnx"
    missing = _missing_ops(path)
    if missing:
        pytest.skip(f"the ONNX importer has no converter for {', '.join(missing)} yet")
    ref = np.load(path.with_suffix(".npz"))
    arrays = {k: ref[k] for k in ref.files}
    return gtool.load(path), arrays


def _part(arrays: dict, kind: str) -> dict:
    return {k.split(":", 1)[1]: v for k, v in arrays.items() if k.startswith(kind + ":")}


def close(got: np.ndarray, want: np.ndarray, rtol: float, what: str, scale: float | None = None) -> None:
    """Within rtol of torch, entries near 0 within rtol of `scale` (default: the array's largest)."""
    assert got.dtype == want.dtype, f"{what}: dtype {got.dtype}, torch {want.dtype}"
    scale = float(np.max(np.abs(want))) if scale is None else scale
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=what)


@pytest.mark.parametrize(("name", "dtype"), MODELS, ids=[f"{m}-{d}" for m, d in MODELS])
def test_outputs_and_gradients_match_torch(name, dtype):
    graph, arrays = _load(name, dtype)
    inputs, cots, grads_ref = _part(arrays, "input"), _part(arrays, "cot"), _part(arrays, "grad")
    outs, grads = gtool.vjp(graph, inputs, cots, wrt=list(grads_ref))
    for y, want in _part(arrays, "output").items():
        close(outs[y], want, RTOL[dtype], f"output {y}")
    # a gradient that is 0 in exact arithmetic is rounding noise in both (the transformer's k.bias:
    # softmax ignores a shift of a row's scores), so its entries are held to the model's gradient scale
    scale = max(float(np.max(np.abs(g))) for g in grads_ref.values())
    for w, want in grads_ref.items():
        close(grads[w], want, RTOL[dtype], f"gradient of {w}", scale)


def test_mlp_keeps_parameter_names():
    graph, arrays = _load("mlp", "float64")
    assert {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"} <= set(graph.of_kind("param"))
    assert graph.outputs == ("y",)


def test_mlp_grad_with_loss_flag(tmp_path, capsys):
    """`gtool grad model.onnx --loss "sum(y * r)" --wrt fc1.weight`: d/dp sum(y * c) = J^T c,
    torch's gradient for the cotangent c."""
    from gtool.cli import main

    _, arrays = _load("mlp", "float64")
    batch = tmp_path / "batch.npz"
    np.savez(batch, x=arrays["input:x"], r=arrays["cot:y"])
    with pytest.raises(SystemExit) as info:
        main(["grad", str(DATA / "torch_mlp_float64.onnx"), "--loss", "sum(y * r)", "--inputs", str(batch),
              "--wrt", "fc1.weight,x", "--format", "json"])
    out = capsys.readouterr()
    assert info.value.code == 0, out.err
    doc = json.loads(out.out)
    assert doc["loss"]["value"] == pytest.approx(float(np.sum(arrays["output:y"] * arrays["cot:y"])), rel=1e-12)
    for w in ("fc1.weight", "x"):
        close(np.array(doc["gradients"][w]["value"]), arrays[f"grad:{w}"], 1e-9, w)


def test_mlp_grad_check_with_loss_flag(tmp_path, capsys):
    from gtool.cli import main

    _, arrays = _load("mlp", "float64")
    batch = tmp_path / "batch.npz"
    np.savez(batch, x=arrays["input:x"], r=arrays["cot:y"])
    with pytest.raises(SystemExit) as info:
        main(["grad-check", str(DATA / "torch_mlp_float64.onnx"), "--loss", "sum(y * r)", "--inputs", str(batch)])
    out = capsys.readouterr()
    assert info.value.code == 0, out.out + out.err


def test_reference_files_are_small():
    total = sum((DATA / f"torch_{m}_{d}{ext}").stat().st_size for m, d in MODELS for ext in (".onnx", ".npz"))
    assert total < 300_000, f"the torch reference files take {total} bytes"
