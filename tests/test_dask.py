"""--backend dask (issue 16, docs/scale.md): chunked runs equal the NumPy backend and a closed
form; data read chunk by chunk (.npy maps, Zarr); refusals; a 2-worker LocalCluster.

Small data only (a few thousand rows in chunks of a few hundred): the 2,000,000-row run is
bench/dask_scale.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask.array", reason="needs dask (pip install 'gtool[dask]')")

import gtool  # noqa: E402
from gtool import api  # noqa: E402
from gtool.cli import main  # noqa: E402
from gtool.dask import close_clients, options  # noqa: E402
from gtool.dask.data import NpyRows, as_dask, npy_source  # noqa: E402
from gtool.errors import GraphError, UsageError  # noqa: E402
from gtool.interp import program  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "bench" / "dask_mlp.yaml"
ROWS = 2000


def _data(rows=ROWS, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((rows, 32)), "t": rng.integers(0, 10, rows)}


def _closed_form(x, t, W1, b1, W2, b2):
    """The MLP's loss and gradients by hand (docs of bench/dask_mlp.yaml), independent of gtool."""
    h = np.tanh(x @ W1 + b1)
    z = h @ W2 + b2
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = len(t)
    loss = -np.log(p[np.arange(n), t]).mean()
    dz = p.copy()
    dz[np.arange(n), t] -= 1
    dz /= n
    da = (dz @ W2.T) * (1 - h ** 2)
    return loss, {"W1": x.T @ da, "b1": da.sum(0), "W2": h.T @ dz, "b2": dz.sum(0)}


def _params(graph):
    prog = program(api.backward(graph))
    from gtool.feeds import resolve
    from gtool.interp import free_dims

    values, _ = resolve(graph, _data(), types=prog.types, free=free_dims(graph))
    return {k: values[k] for k in ("W1", "b1", "W2", "b2")}


def _close(a, b, rtol=1e-12):
    b = np.asarray(b)
    finite = np.abs(b[np.isfinite(b)])
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * max(1.0, float(finite.max()) if finite.size else 1.0))


def test_mlp_loss_and_gradients_equal_numpy_and_the_closed_form():
    g = gtool.load(MLP)
    data = _data()
    loss0, grads0 = api.value_and_grad(g, data)
    with options(chunks={"batch": 300}):
        loss, grads = api.value_and_grad(g, data, backend="dask")
    plan = program(api.backward(g), backend="dask").compiled
    assert plan.last_chunks == {"batch": 300}  # 7 chunks: the sums really ran over chunks
    want_loss, want = _closed_form(data["x"], data["t"], **_params(g))
    assert loss == pytest.approx(want_loss, rel=1e-13) and loss == pytest.approx(loss0, rel=1e-13)
    for k in want:
        assert type(grads[k]) is np.ndarray and grads[k].dtype == np.float64
        _close(grads[k], grads0[k])
        _close(grads[k], want[k])


def test_row_by_row_ops_run_the_numpy_kernels_per_chunk(load_text):
    """Elementwise and row-wise ops run their NumPy kernel on each chunk: the same bits as the NumPy
    backend (matmul per chunk goes through BLAS, whose blocking may round the last bit differently)."""
    g = load_text("gtool: 1\ndims: {batch: 10}\ninputs:\n  x: {shape: [batch, 4]}\n  b: {shape: [4]}\nnodes:\n"
                  "  y: log_softmax(tanh(x * 3.0 + b) - sigmoid(x), axis=-1)\noutputs: [y]\n")
    rng = np.random.default_rng(2)
    feed = {"x": rng.standard_normal((1000, 4)) * 5, "b": rng.standard_normal(4)}
    with options(chunks={"batch": 64}):
        out = api.run(g, feed, backend="dask")
    assert np.array_equal(out["y"], api.run(g, feed)["y"])
    m = gtool.load(MLP)
    data = _data()
    ref = api.run(m, data)
    with options(chunks={"batch": 256}):
        out = api.run(m, data, backend="dask")
    _close(out["logits"], ref["logits"], 1e-14)
    assert out["L"] == pytest.approx(ref["L"], rel=1e-14)


REDUCE = """
gtool: 1
dims: {batch: 10}
inputs:
  x: {shape: [batch, 3]}
nodes:
  s: sum(x, axis=0)
  m: max(x)
  lo: min(x, axis=0, keepdims=true)
  mu: mean(x, axis=0)
  l: logsumexp(x, axis=0)
  r: sum(exp(x), axis=1)
  total: sum(s) + m + sum(lo) + sum(mu) + sum(l) + sum(r)
outputs: [s, m, lo, mu, l, r, total]
loss: total
"""


@pytest.mark.parametrize("special", [None, "nan", "inf", "-inf"])
def test_tree_reductions_over_the_chunked_dim(load_text, special):
    """sum/max/min/mean/logsumexp over the chunked dim are trees of per-chunk results; NaN and
    +-inf in one chunk reach the result as on NumPy (max of a NaN is NaN, lse of -inf rows...)."""
    g = load_text(REDUCE)
    x = np.random.default_rng(1).standard_normal((10, 3)) * 30
    if special:
        x[7, 1] = float(special)
        x[:, 2] = -np.inf if special == "-inf" else x[:, 2]
    ref = api.run(g, {"x": x})
    with options(chunks={"batch": 3}):
        out = api.run(g, {"x": x}, backend="dask")
        loss, grads = api.value_and_grad(g, {"x": x}, backend="dask")
    for k in ref:
        _close(out[k], ref[k], 1e-13)
    loss0, grads0 = api.value_and_grad(g, {"x": x})  # logsumexp's gradient: softmax over the chunked dim
    np.testing.assert_allclose(grads["x"], grads0["x"], rtol=1e-12, atol=1e-12)


def test_bundled_graphs_forward_and_backward_match_numpy():
    for name, chunks in (("cnn_digits.yaml", {"batch": 3}), ("transformer_block.yaml", {"batch": 2}),
                         ("broadcast_affine.json", {"batch": 2}), ("mlp.yaml", {"batch": 5})):
        g = gtool.interp.at_precision(gtool.load(ROOT / "graphs" / name), "float64")
        dims = {"batch": 7}
        loss0, grads0 = api.value_and_grad(g, random_inputs=True, dims=dims) if name != "broadcast_affine.json" \
            else api.value_and_grad(g)
        with options(chunks=chunks):
            loss, grads = api.value_and_grad(g, random_inputs=True, dims=dims, backend="dask") \
                if name != "broadcast_affine.json" else api.value_and_grad(g, backend="dask")
        assert loss == pytest.approx(loss0, rel=1e-13), name
        for k in grads0:
            _close(grads[k], grads0[k])


def test_an_op_that_mixes_the_chunked_dim_is_refused_and_runs_whole(load_text):
    g = load_text("gtool: 1\ndims: {batch: 6}\ninputs:\n  x: {shape: [batch, 3]}\n"
                  "  i: {shape: [batch, 3], dtype: int64}\nnodes:\n"
                  "  p: {op: take_along_axis, inputs: [x, i], attrs: {axis: 0}, shape: [batch, 3]}\noutputs: [p]\n")
    feed = {"x": np.arange(18.0).reshape(6, 3), "i": np.arange(18).reshape(6, 3)[::-1] % 6}
    with options(chunks={"batch": 4}), pytest.raises(UsageError) as e:
        api.run(g, feed, backend="dask")
    d = e.value.diagnostic
    assert d.code == "dask-unsupported" and d.node == "p" and "axis 0" in d.message and "batch=4" in d.message
    with options(chunks={"batch": 6}):  # the near miss: one chunk holds the whole dim
        np.testing.assert_array_equal(api.run(g, feed, backend="dask")["p"], api.run(g, feed)["p"])


def test_softmax_over_the_chunked_dim_is_x_minus_a_tree_logsumexp(load_text):
    g = load_text("gtool: 1\ndims: {batch: 6}\ninputs:\n  x: {shape: [batch, 3]}\nnodes:\n"
                  "  p: softmax(x, axis=0)\n  q: log_softmax(x, axis=0)\noutputs: [p, q]\n")
    x = np.random.default_rng(3).standard_normal((50, 3)) * 20
    x[:, 2] = -np.inf
    ref = api.run(g, {"x": x})
    with options(chunks={"batch": 8}):
        out = api.run(g, {"x": x}, backend="dask")
    for k in ref:
        assert np.array_equal(np.isnan(out[k]), np.isnan(ref[k]))
        _close(np.nan_to_num(out[k]), np.nan_to_num(ref[k]))


def test_a_plugin_op_without_a_lowering_runs_whole_but_not_chunked(load_text):
    sys.path.insert(0, str(ROOT / "tests" / "plugins"))
    try:
        from gtool.commands.plugins import load_plugin

        load_plugin(str(ROOT / "tests" / "plugins" / "bad_ops.py"))
    finally:
        sys.path.pop(0)
    g = load_text("gtool: 1\ndims: {batch: 6}\ninputs:\n  x: {shape: [batch, 2]}\nnodes:\n"
                  "  y: {op: cube, inputs: [x], shape: [batch, 2]}\noutputs: [y]\n")
    x = np.linspace(-1, 1, 12).reshape(6, 2)
    with options(chunks={"batch": 6}):
        np.testing.assert_array_equal(api.run(g, {"x": x}, backend="dask")["y"], x ** 3)
    with options(chunks={"batch": 2}), pytest.raises(UsageError, match="no dask lowering"):
        api.run(g, {"x": x}, backend="dask")


def test_a_bad_target_in_one_chunk_is_located_at_its_node():
    g = gtool.load(MLP)
    data = _data(600)
    data["t"][450] = 10  # in the fourth chunk of 128 rows
    with pytest.raises(GraphError) as ref:
        api.run(g, data)
    with options(chunks={"batch": 128}), pytest.raises(GraphError) as e:
        api.run(g, data, backend="dask")
    assert e.value.diagnostic.code == ref.value.diagnostic.code == "bad-target"
    assert e.value.diagnostic.node == "L" and "10" in e.value.diagnostic.message


def test_npy_blocks_are_read_from_the_file(tmp_path):
    """The reader behind a memory-mapped .npy reads exactly the block asked for (C and Fortran)."""
    a = np.arange(7 * 4 * 3, dtype=np.float32).reshape(7, 4, 3)
    for order in ("C", "F"):
        path = tmp_path / f"a_{order}.npy"
        np.save(path, np.asarray(a, order=order))
        mapped = np.load(path, mmap_mode="r")
        src = npy_source(np.asarray(mapped))
        assert isinstance(src, NpyRows) and src.fortran == (order == "F")
        for key in [(slice(2, 5), slice(None), slice(None)), (slice(0, 7),), (slice(1, 3), slice(1, 2), slice(0, 3)),
                    (slice(6, 9), slice(None), slice(None))]:
            np.testing.assert_array_equal(src[key], a[key])
        assert npy_source(np.asarray(mapped)[1:]) is None  # a part of the map is not the whole file
    assert npy_source(a) is None
    lazy = as_dask("x", np.asarray(np.load(tmp_path / "a_C.npy", mmap_mode="r")), (3, 4, 3))
    sources = [v for v in dict(lazy.__dask_graph__()).values() if isinstance(v, NpyRows)]
    assert lazy.chunks[0] == (3, 3, 1) and len(sources) == 1  # chunks come from the file, never through the map
    np.testing.assert_array_equal(lazy.compute(), a)


def cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_cli_npy_inputs_and_zarr_in_and_out(tmp_path, capsys):
    pytest.importorskip("zarr", reason="needs zarr (pip install 'gtool[zarr]')")
    import zarr

    data = _data(900)
    np.save(tmp_path / "x.npy", data["x"])
    np.save(tmp_path / "t.npy", data["t"])
    feed = ["--input", f"x=@{tmp_path / 'x.npy'}", "--input", f"t=@{tmp_path / 't.npy'}"]
    status, out, err = cli(capsys, "grad", MLP, *feed, "--format", "json")
    assert status == 0, err
    ref = json.loads(out)
    status, out, err = cli(capsys, "grad", MLP, *feed, "--backend", "dask", "--chunks", "batch=200", "--format", "json")
    assert status == 0, err
    got = json.loads(out)
    assert got["loss"]["value"] == pytest.approx(ref["loss"]["value"], rel=1e-13)
    for k, v in ref["gradients"].items():
        _close(np.array(got["gradients"][k]["value"]), np.array(v["value"]))
    store = zarr.open_group(tmp_path / "in.zarr", mode="w")
    for k, v in data.items():
        store.create_array(k, shape=v.shape, dtype=v.dtype, chunks=(128, *v.shape[1:]))[...] = v
    status, out, err = cli(capsys, "run", MLP, "--inputs", tmp_path / "in.zarr", "--backend", "dask", "--chunks",
                           "batch=200", "-o", tmp_path / "out.zarr", "--format", "json")
    assert status == 0, err
    doc = json.loads(out)
    assert doc["stored"]["logits"]["shape"] == [900, 10] and "logits" not in doc["outputs"]
    ref = api.run(gtool.load(MLP), data)
    written = zarr.open_group(tmp_path / "out.zarr", mode="r")
    np.testing.assert_array_equal(written["logits"][...], ref["logits"])
    assert doc["outputs"]["L"]["value"] == pytest.approx(float(ref["L"]), rel=1e-14)
    assert float(written["L"][...]) == doc["outputs"]["L"]["value"]
    status, out, err = cli(capsys, "run", MLP, "--inputs", tmp_path / "in.zarr", "--format", "json")  # NumPy reads it
    assert status == 0, err
    assert json.loads(out)["outputs"]["L"]["value"] == pytest.approx(float(ref["L"]), rel=1e-14)


def test_the_budget_counts_one_chunk(tmp_path, capsys):
    """A run whose whole batch is over --max-memory passes on dask in chunks that fit (and the
    near miss: chunks that do not fit are refused too)."""
    data = _data(20000)
    np.save(tmp_path / "x.npy", data["x"])
    np.save(tmp_path / "t.npy", data["t"])
    feed = ["--input", f"x=@{tmp_path / 'x.npy'}", "--input", f"t=@{tmp_path / 't.npy'}", "--max-memory", "8MiB"]
    assert cli(capsys, "grad", MLP, *feed)[0] == 2
    status, out, err = cli(capsys, "grad", MLP, *feed, "--backend", "dask", "--chunks", "batch=1000")
    assert status == 0, err
    status, out, err = cli(capsys, "grad", MLP, *feed, "--backend", "dask", "--chunks", "batch=10000")
    assert status == 2
    assert "too-much-memory" in err


def test_cli_usage_errors(capsys):
    status, _, err = cli(capsys, "run", MLP, "--random-inputs", "--chunks", "batch=10")
    assert status == 2 and "--chunks is for --backend dask" in err
    status, _, err = cli(capsys, "run", MLP, "--random-inputs", "--backend", "dask", "--chunks", "rows=10")
    assert status == 2 and "no dim named 'rows'" in err
    status, _, err = cli(capsys, "run", MLP, "--random-inputs", "--backend", "dask", "--chunks", "batch=0")
    assert status == 2 and "positive size" in err


def test_memory_reports_one_task(capsys):
    status, out, err = cli(capsys, "memory", MLP, "--dim", "batch=100000", "--backend", "dask", "--chunks",
                           "batch=5000", "--format", "json")
    assert status == 0, err
    doc = json.loads(out)
    assert doc["dims"]["batch"] == 5000 and doc["dask"]["chunks"] == {"batch": {"rows": 5000, "of": 100000}}
    status, out, _ = cli(capsys, "memory", MLP, "--dim", "batch=100000", "--format", "json")
    assert json.loads(out)["peak_bytes"] > 15 * doc["peak_bytes"]


@pytest.mark.parametrize("rows, chunk", [(2_000_000, 26337), (26338, 26337), (26337, None)])
def test_default_chunks_hold_about_128_mib_of_values(capsys, rows, chunk):
    """The MLP's plan has 5,096 bytes of values per row (docs/scale.md): 128 MiB / 5,096 = 26,337 rows
    a chunk; a batch that fits in one chunk (the near miss: one row fewer) is not chunked."""
    status, out, err = cli(capsys, "memory", MLP, "--dim", f"batch={rows}", "--backend", "dask", "--format", "json")
    assert status == 0, err
    assert json.loads(out)["dask"]["chunks"] == ({"batch": {"rows": chunk, "of": rows}} if chunk else {})


def test_without_dask_the_backend_names_the_extra(tmp_path):
    code = ("import sys\nclass Block:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'dask' or name.startswith('dask.'):\n            raise ImportError('no dask here')\n"
            "sys.meta_path.insert(0, Block())\nfrom gtool.cli import main\n"
            f"main(['run', {str(MLP)!r}, '--random-inputs', '--backend', 'dask'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2, r.stderr
    assert "gtool[dask]" in r.stderr and "missing-extra" in r.stderr


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed", reason="needs dask.distributed (pip install 'gtool[dask]')")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=40) as c:
        yield c
        close_clients()


def test_a_two_worker_local_cluster_gives_the_same_forward_and_gradients(cluster, tmp_path, capsys, monkeypatch):
    g = gtool.load(MLP)
    data = _data()
    np.save(tmp_path / "x.npy", data["x"])
    loss0, grads0 = api.value_and_grad(g, data)
    ref = api.run(g, data)
    feed = {"x": np.load(tmp_path / "x.npy", mmap_mode="r"), "t": data["t"]}  # workers read the file's blocks
    with options(chunks={"batch": 250}, scheduler=cluster.scheduler_address):
        out = api.run(g, feed, backend="dask")
        loss, grads = api.value_and_grad(g, feed, backend="dask")
    _close(out["logits"], ref["logits"], 1e-14)
    assert loss == pytest.approx(loss0, rel=1e-13)
    for k in grads0:
        _close(grads[k], grads0[k])
    assert len(cluster.scheduler_info["workers"]) == 2
    from gtool.dask import run as dask_run

    close_clients()
    monkeypatch.setenv("GTOOL_DASK_SCHEDULER", cluster.scheduler_address)  # the variable stands for --scheduler
    status, out, err = cli(capsys, "grad", MLP, "--input", f"x=@{tmp_path / 'x.npy'}", "--input", f"t={data['t'].tolist()}",
                           "--backend", "dask", "--chunks", "batch=500", "--format", "json")
    assert status == 0, err
    assert json.loads(out)["loss"]["value"] == pytest.approx(loss0, rel=1e-13)
    assert list(dask_run._CLIENTS) == [cluster.scheduler_address]  # it ran there, not on local threads


SHAPE_OPS = """
gtool: 1
dims: {batch: 10}
inputs:
  x: {shape: [batch, 3]}
nodes:
  c: {op: cumsum, inputs: [x], attrs: {axis: 1}, shape: [batch, 3]}
  p: {op: pad, inputs: [c], attrs: {pads: [0, 1, 0, 2], mode: reflect}, shape: [batch, 6]}
  t: {op: tile, inputs: [p], attrs: {reps: [1, 2]}, shape: [batch, 12]}
  a: {op: argmax, inputs: [t], attrs: {axis: 1}, shape: [batch]}
  q: {op: prod, inputs: [x], attrs: {axis: 0}, shape: [3]}
  L: sum(t * t) + sum(q)
outputs: [a, q, L]
loss: L
"""


def test_cumsum_pad_tile_argmax_prod_along_other_axes_and_prod_over_the_chunks(load_text):
    g = load_text(SHAPE_OPS)
    x = np.random.default_rng(4).uniform(0.5, 1.5, (40, 3))
    ref = api.run(g, {"x": x})
    loss0, grads0 = api.value_and_grad(g, {"x": x})
    with options(chunks={"batch": 7}):
        out = api.run(g, {"x": x}, backend="dask")
        loss, grads = api.value_and_grad(g, {"x": x}, backend="dask")
    assert np.array_equal(out["a"], ref["a"])
    _close(out["q"], ref["q"], 1e-13)
    assert loss == pytest.approx(loss0, rel=1e-13)
    _close(grads["x"], grads0["x"], 1e-12)
    along = load_text(SHAPE_OPS.replace("axis: 1}, shape: [batch, 3]", "axis: 0}, shape: [batch, 3]"))
    with options(chunks={"batch": 7}), pytest.raises(UsageError, match="cumsum mixes values along axis 0"):
        api.run(along, {"x": x}, backend="dask")
    padded = load_text(SHAPE_OPS.replace("pads: [0, 1, 0, 2]", "pads: [1, 1, 0, 2]").replace("[batch, 6]", "[batch + 1, 6]")
                       .replace("[batch, 12]", "[batch + 1, 12]").replace("shape: [batch]}", "shape: [batch + 1]}"))
    with options(chunks={"batch": 7}), pytest.raises(UsageError, match="moves the chunked axis 0"):
        api.run(padded, {"x": x}, backend="dask")  # padding the batch itself: not chunk by chunk


def test_npy_inputs_are_mapped_not_read(tmp_path):
    """`--input x=@x.npy` maps the file (read-only; the NumPy backend reads what it touches), and an
    empty array, which cannot be mapped, still loads."""
    from gtool.feeds import parse_input_flag

    a = np.arange(12.0).reshape(4, 3)
    np.save(tmp_path / "a.npy", a)
    name, v = parse_input_flag(f"x=@{tmp_path / 'a.npy'}")
    assert name == "x" and isinstance(v, np.memmap) and not v.flags.writeable
    np.testing.assert_array_equal(v, a)
    np.save(tmp_path / "e.npy", np.zeros((0, 3)))
    _, e = parse_input_flag(f"e=@{tmp_path / 'e.npy'}")
    assert e.shape == (0, 3)
