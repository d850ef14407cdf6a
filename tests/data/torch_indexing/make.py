"""Regenerate torch_indexing.npz: PyTorch's values and gradients for gtool's pad, tile, cumsum
and prod (tests/test_ops_indexing.py).

Run with the PyTorch venv (never in tests):  ~/.cache/gtool-peers/venv/bin/python tests/data/torch_indexing/make.py

Each case: a float64 input, torch's output, a cotangent R and torch's gradient of sum(out * R).
torch's pad modes reflect, replicate and circular are gtool's reflect, edge and wrap (torch's
pad tuple runs from the last axis backwards; tests/test_ops_indexing.py holds gtool's attrs).
prod inputs hold zeros (one and several per reduced set): torch's prod gradient is exact there.

Also `model.onnx`: a small float64 model using Pad (reflect, replicate), Tile, CumSum, ReduceProd,
ArgMax, GreaterOrEqual and LessOrEqual, exported by torch.onnx (TorchScript exporter, opset 18),
with its input, outputs, a cotangent for `p` and torch's gradients of the input and the weight.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(29)


def _rev_cumsum(x, dim):
    return torch.flip(torch.cumsum(torch.flip(x, [dim]), dim), [dim])


CASES = {
    "pad_reflect": (lambda x: F.pad(x, (2, 1, 1, 2), mode="reflect"), (2, 3, 5, 6)),
    "pad_reflect_1d": (lambda x: F.pad(x, (3, 3), mode="reflect"), (2, 2, 4)),
    "pad_edge": (lambda x: F.pad(x, (3, 0, 2, 4), mode="replicate"), (2, 3, 4, 5)),
    "pad_wrap": (lambda x: F.pad(x, (2, 3, 1, 0), mode="circular"), (1, 2, 4, 5)),
    "pad_constant_crop": (lambda x: F.pad(x, (-1, 2, 1, -2), value=0.5), (2, 5, 6)),
    "tile": (lambda x: x.repeat(2, 1, 3), (2, 3, 2)),
    "cumsum": (lambda x: torch.cumsum(x, 1), (3, 5, 2)),
    "cumsum_reverse": (lambda x: _rev_cumsum(x, 0), (4, 3)),
    "prod_zeros": (lambda x: torch.prod(x, 1), ("grid", 6, 4)),
    "prod_all": (lambda x: torch.prod(x), ("one_zero", 2, 3)),
}


def _input(shape):
    if shape[0] == "grid":  # values in {-1, 0, 1, 2}: rows with no zero, one zero, several
        x = rng.integers(-1, 3, shape[1:]).astype(np.float64)
        x[0] = [2.0, -1.0, 1.5, 2.0]
        x[1] = [0.0, 2.0, -1.5, 3.0]
        x[2] = [0.0, 0.0, 2.0, 1.0]
        return x
    if shape[0] == "one_zero":
        x = rng.uniform(0.5, 2.0, shape[1:])
        x[1, 1] = 0.0
        return x
    return rng.standard_normal(shape)


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(rng.standard_normal((3, 4))))

    def forward(self, x):
        h = F.pad(x @ self.w, (1, 2), mode="reflect").unsqueeze(0)
        h = F.pad(h, (2, 0, 1, 1), mode="replicate")[0]  # [0], not squeeze(0): that exports as an If
        c = torch.cumsum(h.repeat(2, 1), dim=1)
        return torch.prod(torch.tanh(c), dim=1), torch.argmax(c, dim=1), c >= 0.5, c <= 0.0


def export_model(out: dict) -> None:
    import io

    m = Model()
    x = torch.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    f = io.BytesIO()
    torch.onnx.export(m, (x,), f, dynamo=False, opset_version=18, input_names=["x"],
                      output_names=["p", "a", "ge", "le"])
    with open(os.path.join(HERE, "model.onnx"), "wb") as fh:
        fh.write(f.getvalue())
    p, a, ge, le = m(x)
    r = rng.standard_normal(tuple(p.shape))
    gx, gw = torch.autograd.grad(p, (x, m.w), torch.tensor(r))
    out.update({"model/x": x.detach().numpy(), "model/p": p.detach().numpy(), "model/a": a.numpy(),
                "model/ge": ge.numpy(), "model/le": le.numpy(), "model/R": r, "model/grad_x": gx.numpy(),
                "model/grad_w": gw.numpy()})


def main():
    out = {}
    for name, (fn, shape) in CASES.items():
        a = _input(shape)
        t = torch.tensor(a, requires_grad=True)
        y = fn(t)
        r = rng.standard_normal(tuple(y.shape))
        y.backward(torch.tensor(r))
        out[f"{name}/in"] = a
        out[f"{name}/grad"] = t.grad.numpy()
        out[f"{name}/out"] = y.detach().numpy()
        out[f"{name}/R"] = r
    export_model(out)
    np.savez_compressed(os.path.join(HERE, "torch_indexing.npz"), **out)


if __name__ == "__main__":
    main()
