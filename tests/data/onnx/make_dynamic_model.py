"""Write `torch_dynamic_float64.onnx` and `.npz`: a model exported with a dynamic batch axis,
whose reshape PyTorch's exporter writes as Shape -> Gather -> Unsqueeze -> Concat -> Reshape.

Run with the torch venv (torch is a dev-only tool here, never a test dependency):

    ~/.cache/gtool-peers/venv/bin/python tests/data/onnx/make_dynamic_model.py

The model: x [batch, 2, 3] -> x.reshape(x.shape[0], -1) -> Linear(6, 4) -> log_softmax.
The npz holds, for batch 3 and batch 7, `input:x:<b>` and torch's `output:y:<b>`, and for
batch 3 `cot:y:3` and torch's `grad:fc.weight:3` (torch.autograd.grad with that cotangent).
"""

from __future__ import annotations

import pathlib

import numpy as np
import torch
from torch import nn

HERE = pathlib.Path(__file__).resolve().parent


class Flat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        return torch.log_softmax(self.fc(x.reshape(x.shape[0], -1)), dim=-1)


def main() -> None:
    torch.manual_seed(0)
    model = Flat().double().eval()
    x = torch.randn(3, 2, 3, dtype=torch.float64)
    stem = HERE / "torch_dynamic_float64"
    torch.onnx.export(model, (x,), str(stem) + ".onnx", input_names=["x"], output_names=["y"], opset_version=17,
                      do_constant_folding=False, dynamo=False, dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    data = {}
    for b in (3, 7):
        xb = torch.randn(b, 2, 3, dtype=torch.float64)
        data[f"input:x:{b}"] = xb.numpy()
        data[f"output:y:{b}"] = model(xb).detach().numpy()
    x3 = torch.tensor(data["input:x:3"])
    y = model(x3)
    cot = torch.randn(*y.shape, dtype=torch.float64)
    (g,) = torch.autograd.grad(y, [model.fc.weight], grad_outputs=cot)
    data["cot:y:3"] = cot.numpy()
    data["grad:fc.weight:3"] = g.numpy()
    np.savez(str(stem) + ".npz", **data)


if __name__ == "__main__":
    main()
