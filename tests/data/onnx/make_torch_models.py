"""Write the PyTorch reference models that tests/test_torch_models.py checks gtool against.

Run with the torch venv (torch is a dev-only tool here, never a test dependency):

    ~/.cache/gtool-peers/venv/bin/python tests/data/onnx/make_torch_models.py

For each model and dtype it writes `torch_<model>_<dtype>.onnx` (TorchScript exporter,
opset 17, no constant folding so that every initializer keeps its parameter name, e.g.
`fc1.weight`) and `torch_<model>_<dtype>.npz` holding, as torch computed them:

- `input:<name>`  the model's inputs,
- `output:<name>` its outputs,
- `cot:<name>`    a fixed cotangent per output (seeded normal),
- `grad:<name>`   `torch.autograd.grad(outputs, params + inputs, grad_outputs=cotangents)`.

Models: `mlp` (Linear-Tanh-Linear, float64 only: issue 12's done-when), and for issue 13 in
float32 and float64: `cnn` (Conv-ReLU-MaxPool-Conv-Flatten-Linear), `transformer` (pre-norm
LayerNorm, causal single-head attention with a -inf mask through Where, GELU MLP, residuals)
and `bn_mlp` (Linear-BatchNorm1d-ReLU-Linear in eval mode, running stats not the defaults).
Everything is seeded, so rerunning the script rewrites the same numbers.
"""

from __future__ import annotations

import math
import pathlib

import numpy as np
import torch
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent
OPSET = 17


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


class CNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2)
        self.fc = nn.Linear(6 * 1 * 1, 5)

    def forward(self, x):  # x: [2, 1, 6, 6]
        h = nn.functional.max_pool2d(torch.relu(self.conv1(x)), 2)  # [2, 4, 3, 3]
        h = self.conv2(h)  # [2, 6, 1, 1]
        return self.fc(torch.flatten(h, 1))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then + mlp(ln2(.)); causal single head."""

    def __init__(self, d: int = 8, seq: int = 5) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.up = nn.Linear(d, 4 * d)
        self.down = nn.Linear(4 * d, d)
        self.register_buffer("mask", torch.tril(torch.ones(seq, seq, dtype=torch.bool)))
        self.scale = 1.0 / math.sqrt(d)

    def forward(self, x):  # x: [2, seq, d]
        h = self.ln1(x)
        s = (self.q(h) @ self.k(h).transpose(-2, -1)) * self.scale
        s = torch.where(self.mask, s, torch.tensor(float("-inf"), dtype=s.dtype))
        x = x + self.proj(torch.softmax(s, dim=-1) @ self.v(h))
        return x + self.down(nn.functional.gelu(self.up(self.ln2(x))))


class BNMLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.bn(self.fc1(x))))


def _bn_stats(model: BNMLP, gen: torch.Generator) -> None:
    """Running stats and affine params that differ from the defaults (0, 1), so a converter that
    ignores any of them fails."""
    with torch.no_grad():
        model.bn.running_mean.copy_(torch.randn(6, generator=gen, dtype=torch.float64) * 0.5)
        model.bn.running_var.copy_(torch.rand(6, generator=gen, dtype=torch.float64) + 0.5)
        model.bn.weight.copy_(torch.rand(6, generator=gen, dtype=torch.float64) + 0.5)
        model.bn.bias.copy_(torch.randn(6, generator=gen, dtype=torch.float64) * 0.1)


MODELS = {  # name -> (class, input shape, dtypes)
    "mlp": (MLP, (5, 4), ("float64",)),
    "cnn": (CNN, (2, 1, 6, 6), ("float32", "float64")),
    "transformer": (Block, (2, 5, 8), ("float32", "float64")),
    "bn_mlp": (BNMLP, (5, 4), ("float32", "float64")),
}


def _stash_float64(path: pathlib.Path) -> None:
    """The exporter leaves LayerNormalization's stash_type at its default, 1 (float32: mean and
    variance computed in float32), also in a float64 model, where torch computes them in float64.
    Set it to 11 (float64) so that the ONNX model means what torch computed."""
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.op_type == "LayerNormalization" and not any(a.name == "stash_type" for a in node.attribute):
            node.attribute.append(onnx.helper.make_attribute("stash_type", onnx.TensorProto.DOUBLE))
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))


def make(name: str, dtype: str) -> None:
    cls, shape, _ = MODELS[name]
    tdtype = getattr(torch, dtype)
    torch.manual_seed(0)
    model = cls().to(torch.float64)
    gen = torch.Generator().manual_seed(1)
    if isinstance(model, BNMLP):
        _bn_stats(model, gen)
    with torch.no_grad():  # no two params alike (the exporter would share equal initializers, e.g. two
        for prm in model.parameters():  # fresh LayerNorms, through an Identity) and no default values
            prm.add_(0.1 * torch.randn(prm.shape, generator=gen, dtype=torch.float64))
    model = model.to(tdtype).eval()
    x = torch.randn(*shape, generator=gen, dtype=torch.float64).to(tdtype).requires_grad_(True)
    stem = HERE / f"torch_{name}_{dtype}"
    torch.onnx.export(model, (x,), str(stem) + ".onnx", input_names=["x"], output_names=["y"], opset_version=OPSET,
                      do_constant_folding=False, dynamo=False)
    if dtype == "float64":
        _stash_float64(stem.with_suffix(".onnx"))
    y = model(x)
    cot = torch.randn(*y.shape, generator=gen, dtype=torch.float64).to(tdtype)
    params = dict(model.named_parameters())
    grads = torch.autograd.grad([y], [*params.values(), x], grad_outputs=[cot])
    arrays = {"input:x": x.detach().numpy(), "output:y": y.detach().numpy(), "cot:y": cot.numpy()}
    for pname, g in zip([*params, "x"], grads):
        arrays[f"grad:{pname}"] = g.numpy()
    np.savez_compressed(str(stem) + ".npz", **arrays)
    size = (stem.with_suffix(".onnx").stat().st_size + stem.with_suffix(".npz").stat().st_size) // 1024
    print(f"{stem.name}: {len(params)} params, y {tuple(y.shape)}, {size} KiB")


def main() -> None:
    for name, (_, _, dtypes) in MODELS.items():
        for dtype in dtypes:
            make(name, dtype)


if __name__ == "__main__":
    main()
