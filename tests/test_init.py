"""Param initialisation: Glorot fans for matrices and for convolution filters.

The limits are the closed form sqrt(6 / (fan_in + fan_out)) with the fans written out by
hand for each layout (PyTorch's `_calculate_fan_in_and_fan_out` convention for filters).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import gtool
from gtool.api import all_values

GRAPH = """
gtool: 1
inputs:
  x: {shape: [2, 4, 10, 10]}
  v: {shape: [2, 24]}
params:
  W: {shape: [16, 4, 3, 3], init: {glorot: {}}}
  M: {shape: [24, 40], init: {glorot: {}}}
  B: {shape: [5, 24, 40], init: {glorot: {}}}
nodes:
  y: conv2d(x, W, padding=1)
  z: v @ M
  u: sum(y) + sum(z) + sum(B)
outputs: [u]
"""


@pytest.mark.parametrize("name, fan_in, fan_out", [
    ("W", 4 * 9, 16 * 9),     # a filter: channels times the 3x3 receptive field
    ("M", 24, 40),            # x @ M: rows in, columns out
    ("B", 24, 40),            # a batch of 5 independent matrices: per-matrix fans
])
def test_glorot_limit_matches_the_closed_form(tmp_path, name, fan_in, fan_out):
    path = tmp_path / "g.yaml"
    path.write_text(GRAPH)
    values = all_values(gtool.load(path), {"x": np.zeros((2, 4, 10, 10)), "v": np.zeros((2, 24))})
    w = np.asarray(values[name])
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit
    # a uniform draw of this many values reaches past 90% of its limit (a limit 1.5x too big
    # or too small fails one of the two bounds)
    assert np.abs(w).max() > 0.9 * limit
