"""conv2d forward + backward of a batch-64 28x28 CNN, one thread: gtool vs PyTorch vs
hand-written NumPy im2col.

Usage (PyTorch lives in a separate venv; gtool is put on the path, never installed there: the
checkout this script sits in comes first, whatever PYTHONPATH says; to time another checkout,
copy the script into it):

    PYTHONPATH=. ~/.cache/gtool-peers/venv/bin/python bench/conv_bench.py [--repeat 15] [--dtype float32] [--cpu]

Layers: the PyTorch MNIST example's two convolutions (conv1 1 -> 32, 3x3, on 28x28; conv2
32 -> 64, 3x3, on 26x26) and a padded, strided one (conv3 32 -> 64, 3x3, stride 2, padding 1).
For each layer, one "step" is the forward y = conv(x, W, b) and the backward of
L = sum(y * R): dx, dW and db. Timed after a warm-up, the four interleaved (torch, gtool
kernels, gtool graph, numpy, torch, ...) so that load on a shared machine hits all of them
alike; the times are medians, the ratios medians of the per-round ratios (paired):

- gtool kernels: the ops' NumPy forwards called directly (conv, conv_transpose, conv_filter,
  and a sum for db): what the executor runs for the three nodes;
- gtool graph: `gtool.value_and_grad` on the one-layer graph (executor included);
- torch: F.conv2d forward and .backward(R) (oneDNN/MKL kernels);
- numpy im2col: a hand-written im2col (as_strided) + one matmul forward, cols^T g for dW and
  a col2im over the kernel offsets for dx.

BLAS, OpenMP and torch are held to one thread (environment set before NumPy loads). The ratios
printed are time / torch time (goal: gtool within 1.5x of torch's CPU conv); the last row,
`cnn`, adds up the example CNN's two convolutions. The gradients
of all three are compared with torch's before timing.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_v] = "1"

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import as_strided  # noqa: E402
from timing import median  # noqa: E402

MNIST_CNN = ("conv1", "conv2")  # the layers of PyTorch's MNIST example (the "cnn" total row)
LAYERS = {  # name: (x shape, W shape, stride, padding)
    "conv1": ((64, 1, 28, 28), (32, 1, 3, 3), 1, 0),
    "conv2": ((64, 32, 26, 26), (64, 32, 3, 3), 1, 0),
    "conv3": ((64, 32, 26, 26), (64, 32, 3, 3), 2, 1),
}


def by_hand(x, w, b, r, stride, pad):
    """Hand-written NumPy im2col: forward, then dx, dW, db of sum(y * r)."""
    n, c, h, wd = x.shape
    m, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x
    oh, ow = (xp.shape[2] - kh) // stride + 1, (xp.shape[3] - kw) // stride + 1
    s = xp.strides
    win = as_strided(xp, (n, oh, ow, c, kh, kw), (s[0], s[2] * stride, s[3] * stride, s[1], s[2], s[3]))
    cols = win.reshape(n * oh * ow, c * kh * kw)
    y = (cols @ w.reshape(m, -1).T).reshape(n, oh, ow, m).transpose(0, 3, 1, 2) + b[:, None, None]
    g = r.transpose(0, 2, 3, 1).reshape(-1, m)
    dw = (g.T @ cols).reshape(w.shape)
    db = g.sum(axis=0)
    dcols = (g @ w.reshape(m, -1)).reshape(n, oh, ow, c, kh, kw)
    dxp = np.zeros_like(xp)
    for i in range(kh):
        for j in range(kw):
            dxp[:, :, i:i + stride * (oh - 1) + 1:stride, j:j + stride * (ow - 1) + 1:stride] += \
                dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    dx = dxp[:, :, pad:pad + h, pad:pad + wd]
    return y, dx, dw, db


def gtool_kernels(x, w, b, r, stride, pad):
    from gtool.ops.conv import conv_filter_forward, conv_forward, conv_transpose_forward

    y = conv_forward(x, w, b, stride=stride, padding=pad)
    dx = conv_transpose_forward(r, w, stride=stride, padding=pad, output_shape=x.shape[2:])
    dw = conv_filter_forward(x, r, kernel=w.shape[2:], stride=stride, padding=pad)
    return y, dx, dw, r.sum(axis=(0, 2, 3))


def gtool_graph(xs, ws, stride, pad, dtype):
    import gtool

    text = f"""gtool: 1
inputs:
  x: {{shape: {list(xs)}, dtype: {dtype}}}
  W: {{shape: {list(ws)}, dtype: {dtype}}}
  b: {{shape: [{ws[0]}], dtype: {dtype}}}
  R: {{shape: [{xs[0]}, {ws[0]}, oh, ow], dtype: {dtype}}}
nodes:
  y: conv2d(x, W, b, stride={stride}, padding={pad})
  L: sum(y * R)
outputs: [L]
loss: L
"""
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"conv_bench_{os.getpid()}.yaml")
    with open(path, "w") as f:
        f.write(text)
    graph = gtool.load(path)
    os.unlink(path)
    return lambda x, w, b, r: gtool.value_and_grad(graph, {"x": x, "W": w, "b": b, "R": r}, wrt=["x", "W", "b"])


def torch_step(torch, x, w, b, r, stride, pad):
    x, w, b = (torch.from_numpy(a).requires_grad_() for a in (x, w, b))
    y = torch.nn.functional.conv2d(x, w, b, stride=stride, padding=pad)
    y.backward(torch.from_numpy(r))
    return y.detach().numpy(), x.grad.numpy(), w.grad.numpy(), b.grad.numpy()


def _close(got, want, dtype):
    tol = 1e-4 if dtype == "float32" else 1e-10
    for k, (a, bb) in enumerate(zip(got, want)):
        scale = float(np.max(np.abs(bb))) or 1.0
        err = float(np.max(np.abs(np.asarray(a, np.float64) - bb))) / scale
        assert err < tol, f"output {k} differs from torch by {err:.2e} (relative to its largest value)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--only", default="", help="comma-separated layer names")
    ap.add_argument("--cpu", action="store_true", help="time CPU (time.process_time), not wall clock")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        sys.exit("this benchmark needs PyTorch: run it with ~/.cache/gtool-peers/venv/bin/python (PYTHONPATH=.)")
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    print(f"conv2d forward + backward (dx, dW, db), {args.dtype}, one thread, median of {args.repeat} "
          f"(torch {torch.__version__}, numpy {np.__version__})")
    print(f"{'layer':6} {'x':>16} {'W':>14} {'s,p':>4} {'torch ms':>9} {'gtool kern':>10} {'gtool graph':>11} "
          f"{'numpy':>8} {'kern/torch':>10} {'graph/torch':>11} {'numpy/torch':>11}")
    totals = None
    for name, (xs, ws, stride, pad) in LAYERS.items():
        if not args.only or name in args.only.split(","):
            row, times = bench_layer(torch, rng, name, xs, ws, stride, pad, args)
            print(row)
            if name in MNIST_CNN:
                totals = times if totals is None else totals + times  # per round: the rounds' sums
    if not args.only:  # the example CNN's two convolutions together: the figure
        t = [median(list(v)) * 1e3 for v in totals]
        ratios = [median(list(v / totals[0])) for v in totals[1:]]
        print(f"{'cnn':6} {'conv1 + conv2':>36} {t[0]:9.2f} {t[1]:10.2f} {t[2]:11.2f} "
              f"{t[3]:8.2f} {ratios[0]:10.2f} {ratios[1]:11.2f} {ratios[2]:11.2f}")


def bench_layer(torch, rng, name, xs, ws, stride, pad, args) -> tuple[str, np.ndarray]:
    """One table row and its four timings (after checking all three against torch)."""
    x, w, b = (rng.standard_normal(s).astype(args.dtype) for s in (xs, ws, (ws[0],)))
    oh = (xs[2] + 2 * pad - ws[2]) // stride + 1
    r = rng.standard_normal((xs[0], ws[0], oh, oh)).astype(args.dtype)
    want = torch_step(torch, x, w, b, r, stride, pad)
    _close(gtool_kernels(x, w, b, r, stride, pad), want, args.dtype)
    _close(by_hand(x, w, b, r, stride, pad), want, args.dtype)
    step = gtool_graph(xs, ws, stride, pad, args.dtype)
    _, grads = step(x, w, b, r)
    _close((want[0], grads["x"], grads["W"], grads["b"]), want, args.dtype)
    clock = time.process_time if args.cpu else time.perf_counter
    t_torch, t_kern, t_graph, t_np = times = interleaved(
        [lambda: torch_step(torch, x, w, b, r, stride, pad), lambda: gtool_kernels(x, w, b, r, stride, pad),
         lambda: step(x, w, b, r), lambda: by_hand(x, w, b, r, stride, pad)], args.repeat, clock)
    ratios = [median(list(t / times[0])) for t in times[1:]]
    row = (f"{name:6} {str(list(xs)):>16} {str(list(ws)):>14} {f'{stride},{pad}':>4} {median(t_torch) * 1e3:9.2f} "
           f"{median(t_kern) * 1e3:10.2f} {median(t_graph) * 1e3:11.2f} {median(t_np) * 1e3:8.2f} {ratios[0]:10.2f} "
           f"{ratios[1]:11.2f} {ratios[2]:11.2f}")
    return row, np.array(times)


def interleaved(fns, repeat: int, clock) -> list[np.ndarray]:
    """Per function, `repeat` timings taken in rounds (one call of each function per round),
    after one warm-up round."""
    for fn in fns:
        fn()
    samples = [[] for _ in fns]
    for _ in range(repeat):
        for fn, out in zip(fns, samples):
            t0 = clock()
            fn()
            out.append(clock() - t0)
    return [np.array(t) for t in samples]

if __name__ == "__main__":
    main()
