"""Regenerate torch_conv.npz: PyTorch's values and gradients for gtool's conv and pool ops.

Run with the PyTorch venv (never in tests):  ~/.cache/gtool-peers/venv/bin/python tests/data/torch_conv/make.py

Each case: float64 inputs, torch's output, a cotangent R and torch's gradients of sum(out * R)
for every float input. tests/test_conv_pool.py holds the gtool attrs of each case (CASES there
and here must agree by name); the file stores arrays only.
"""

import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(13)


def arr(*shape, ties=False):
    if ties:  # values from a 3-level grid: every window holds ties
        return rng.integers(-1, 2, shape).astype(np.float64)
    return rng.standard_normal(shape)


CASES = {
    "conv2d_s2_p1_bias": (lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1), [(2, 3, 7, 6), (4, 3, 3, 3), (4,)]),
    "conv2d_dil_groups": (lambda x, w, b: F.conv2d(x, w, b, dilation=(2, 1), groups=2, padding=(2, 0)),
                          [(2, 4, 8, 7), (6, 2, 3, 2), (6,)]),
    "conv2d_wide_groups": (lambda x, w, b: F.conv2d(x, w, b, padding=1, groups=2), [(2, 32, 6, 5), (8, 16, 3, 3), (8,)]),
    "conv1d_s3": (lambda x, w: F.conv1d(x, w, stride=3, padding=2), [(3, 2, 11), (5, 2, 4)]),
    "conv3d": (lambda x, w, b: F.conv3d(x, w, b, stride=(1, 2, 1), padding=1), [(1, 2, 4, 5, 3), (3, 2, 2, 3, 2), (3,)]),
    "conv_transpose2d": (lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
                         [(2, 3, 4, 3), (3, 5, 3, 3), (5,)]),
    "conv_transpose2d_groups_dil": (lambda x, w: F.conv_transpose2d(x, w, groups=2, dilation=2, stride=(1, 3)),
                                    [(1, 4, 3, 4), (4, 3, 2, 2)]),
    "max_pool2d_ties": (lambda x: F.max_pool2d(x, 3, stride=2, padding=1), [("ties", 2, 3, 7, 7)]),
    "max_pool2d_ceil_dil": (lambda x: F.max_pool2d(x, 2, stride=2, dilation=2, ceil_mode=True), [(2, 2, 9, 8)]),
    "max_pool1d_ties": (lambda x: F.max_pool1d(x, 4, stride=1), [("ties", 2, 3, 9)]),
    "avg_pool2d_incl": (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=True),
                        [(2, 3, 8, 7)]),
    "avg_pool2d_excl": (lambda x: F.avg_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
                        [(2, 3, 8, 7)]),
}


def main():
    out = {}
    for name, (fn, shapes) in CASES.items():
        ins = [arr(*s[1:], ties=True) if s and s[0] == "ties" else arr(*s) for s in shapes]
        ts = [torch.tensor(a, requires_grad=True) for a in ins]
        y = fn(*ts)
        r = rng.standard_normal(tuple(y.shape))
        y.backward(torch.tensor(r))
        for k, (a, t) in enumerate(zip(ins, ts)):
            out[f"{name}/in{k}"] = a
            out[f"{name}/grad{k}"] = t.grad.numpy()
        out[f"{name}/out"] = y.detach().numpy()
        out[f"{name}/R"] = r
    np.savez_compressed(os.path.join(HERE, "torch_conv.npz"), **out)
    print(f"wrote {len(CASES)} cases (torch {torch.__version__})")


if __name__ == "__main__":
    main()
