"""logits -> labels, and the per-case / summary tables of ``segbalance evaluate``."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
import torch

from segbalance.evaluate.inference import logits_to_labels, predict_logits
from segbalance.evaluate.run import PER_CASE_COLUMNS, per_case_csv, summarise


def test_logits_to_labels_binary_and_multiclass() -> None:
    z = torch.tensor([[[-1.0, 0.0, 2.0]]])  # (1, 1, 3): z > 0 is foreground (METHODS §10)
    assert logits_to_labels(z).tolist() == [[0, 0, 1]]
    assert logits_to_labels(z, classes=[4]).tolist() == [[0, 0, 4]]
    z3 = torch.tensor([[[5.0, 0.0]], [[1.0, 2.0]], [[0.0, 3.0]]])  # (3, 1, 2)
    assert logits_to_labels(z3).tolist() == [[0, 2]]
    assert logits_to_labels(z3, classes=[7, 9]).tolist() == [[0, 9]]


def test_predict_logits_restores_mode_and_matches_direct_call() -> None:
    torch.manual_seed(0)
    model = torch.nn.Conv3d(2, 3, 3, padding=1)
    model.train()
    image = np.random.default_rng(0).standard_normal((2, 8, 8, 8)).astype(np.float32)
    out = predict_logits(model, image, (8, 8, 8), mode="constant")
    assert model.training
    with torch.no_grad():
        direct = model(torch.from_numpy(image)[None])[0]
    torch.testing.assert_close(out, direct)  # one window covering the volume = the model


def _row(case: str, cls: int, dice: float, ref: int, pred: int, f1: float = 1.0) -> dict:
    row = {k: 0.0 for k in PER_CASE_COLUMNS[3:14]}
    row.update(case=case, class_name="c", dice=dice, lesion_f1=f1, ref_voxels=ref, pred_voxels=pred)
    row["class"] = cls
    return row


def test_summary_excludes_empty_references_from_overlap_means() -> None:
    rows = [
        _row("a", 1, 0.8, ref=10, pred=9, f1=0.5),
        _row("b", 1, 0.6, ref=5, pred=4, f1=1.0),
        _row("c", 1, 0.0, ref=0, pred=3, f1=0.0),  # empty reference with false positives
        _row("d", 1, 1.0, ref=0, pred=0, f1=1.0),  # both empty
        _row("a", 2, math.nan, ref=4, pred=0),
    ]
    means = summarise(rows, [1, 2])
    assert means["1"]["dice"] == pytest.approx(0.7)  # (0.8 + 0.6) / 2
    assert means["1"]["lesion_f1"] == pytest.approx(2.5 / 4)  # lesion metrics: every case
    assert means["1"]["empty_reference_cases"] == 2
    assert means["1"]["empty_reference_with_fp"] == 1
    assert math.isnan(means["2"]["dice"])
    text = per_case_csv(rows[:1])
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert list(parsed[0]) == list(PER_CASE_COLUMNS) and parsed[0]["dice"] == "0.8"
