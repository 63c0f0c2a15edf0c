"""build_report on a synthetic compare folder: sections, numbers, escaping, robustness."""

from __future__ import annotations

import csv
import json
import re
import shutil
import statistics
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from segbalance import atomic
from segbalance.errors import InputError
from segbalance.experiments.stats import compare_methods
from segbalance.report import build_report, load_compare_folder
from segbalance.report.cases import detection_from_predictions, largest_lesion_slice

from ._fixture import (
    BIG_LESION_Z,
    CELLS,
    LESION_CASES,
    SEEDS,
    lesion_boxes,
    prediction,
    reference,
    write_dataset,
)
from ._html import decode_png, parse_report

SECTION_IDS = ["ranking", "dice", "detection", "curves", "imbalance", "landscape", "examples"]


@pytest.fixture(scope="module")
def full_report(built_report: Path) -> str:
    return built_report.read_text(encoding="utf-8")


def hand_dice(cell: str) -> dict[str, float]:
    """Per-case Dice averaged over seeds, straight from the fixture's arrays (numpy)."""
    out = {}
    for index, case in enumerate(LESION_CASES):  # the empty case is left out of Dice
        ref = reference(index).astype(bool)
        values = []
        for seed in SEEDS:
            pred = prediction(cell, seed, index).astype(bool)
            values.append(2 * (pred & ref).sum() / (pred.sum() + ref.sum()))
        out[case] = float(np.mean(values))
    return out


def test_every_section_present_with_decodable_figures(full_report: str) -> None:
    parsed = parse_report(full_report)
    assert parsed.order == SECTION_IDS
    expected_figures = {
        "ranking": 0,
        "dice": 1,
        "detection": 1,
        "curves": 1,
        "imbalance": 1,
        "landscape": 2,
        "examples": 1,
    }
    for section_id, count in expected_figures.items():
        section = parsed.sections[section_id]
        assert section.unavailable is None, (section_id, section.unavailable)
        assert len(section.images) == count, section_id
        for src in section.images:
            image = decode_png(src)
            assert image.format == "PNG" and image.width > 200 and image.height > 150
            # not a blank canvas: a real plot has many distinct colours
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20


def test_ranking_table_matches_hand_computation(full_report: str) -> None:
    parsed = parse_report(full_report)
    header, *rows = parsed.sections["ranking"].tables[0]
    means = {cell: statistics.mean(hand_dice(cell).values()) for cell in CELLS}
    order = sorted(means, key=lambda c: -means[c])
    assert [row[header.index("method")] for row in rows] == order
    for row in rows:
        cell = row[header.index("method")]
        sd = statistics.stdev(hand_dice(cell).values())
        assert row[header.index("Dice mean ± sd")] == f"{means[cell]:.3f} ± {sd:.3f}"
    base, other = hand_dice("dice_adamw"), hand_dice("dice_sam")
    d = [other[c] - base[c] for c in LESION_CASES]
    wtl = f"{sum(x > 1e-12 for x in d)}/{sum(abs(x) <= 1e-12 for x in d)}/{sum(x < -1e-12 for x in d)}"
    sam_row = next(r for r in rows if r[header.index("method")] == "dice_sam")
    assert sam_row[header.index("W/T/L")] == wtl
    assert sam_row[header.index("SAM")] == "sam" and sam_row[header.index("train time")] == "30.5 s"
    base_row = next(r for r in rows if r[header.index("method")] == "dice_adamw")
    assert base_row[header.index("Δ vs baseline, 95% CI")] == "baseline"
    text = " ".join(parsed.sections["ranking"].text)
    assert "Only 5 cases" in text  # below 6 cases no p can reach 0.05


def test_detection_by_size_matches_construction(full_report: str) -> None:
    header, *rows = parse_report(full_report).sections["detection"].tables[0]
    table = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    # 5 lesion cases x 2 seeds: 10 one-voxel lesions, 10 of 27 voxels, 6 of 125 voxels;
    # the baseline misses every one-voxel lesion and one 27-voxel lesion (seed 1, case_1)
    assert table["dice_adamw"]["[0, 10)"] == "0.00 (0/10)"
    assert table["dice_adamw"]["[10, 100)"] == "0.90 (9/10)"
    assert table["dice_adamw"]["[100, 1000)"] == "1.00 (6/6)"
    assert table["dice_sam"]["[0, 10)"] == "1.00 (10/10)"
    assert table["dice_sam"]["predictions"] == "12"
    assert table["dice_sam"]["[1000, inf)"] == "– (0/0)"


def test_detection_cap(compare_source: Path) -> None:
    found = detection_from_predictions(load_compare_folder(compare_source), max_cases=2)
    assert found.n_cases == 2 and found.n_cases_total == 6
    # case_0 has 3 lesions, case_1 has 2; two seeds
    assert len(found.lesions["dice_sam"]) == (3 + 2) * 2
    assert found.n_predictions == {"dice_adamw": 4, "dice_sam": 4}


def test_examples_slice_through_largest_lesion(full_report: str) -> None:
    section = parse_report(full_report).sections["examples"]
    text = " ".join(section.text)
    scores = hand_dice("dice_sam")  # the best method by mean Dice
    ranked = sorted(scores, key=lambda c: (-scores[c], c))
    for kind, case in (("best", ranked[0]), ("worst", ranked[-1])):
        index = LESION_CASES.index(case)
        z = BIG_LESION_Z.get(index, 6)  # odd cases: the 27-voxel lesion spans z 5..7
        size = 125 if index % 2 == 0 else 27
        assert (
            f"{kind}: {case} (Dice {scores[case]:.3f}), dice_sam seed 0, slice {z}: "
            f"largest reference lesion ({size} voxels)"
        ) in text


def test_largest_lesion_slice_by_hand() -> None:
    label = np.zeros((6, 6, 9), dtype=np.uint8)
    label[0, 0, 8] = 1  # small lesion
    label[2:5, 2:5, 3:6] = 2  # 27 voxels, slices 3..5 tied -> middle 4
    label[2, 2, 6] = 2  # attached: 28 voxels, slices 3..5 still 9 each
    assert largest_lesion_slice(label)[0] == 4
    assert largest_lesion_slice(np.zeros((4, 4, 7), dtype=np.uint8)) == (
        3,
        "no reference lesion: middle slice",
    )


def test_self_contained(full_report: str) -> None:
    parsed = parse_report(full_report)
    for tag, attributes in parsed.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed"), tag
        for name in ("src", "href"):
            value = attributes.get(name)
            if value is not None:
                assert value.startswith(("data:image/png;base64,", "#")), (tag, value[:60])
    assert not re.search(r"https?://|url\(|@import", full_report)


def evil_folder(root: Path) -> Path:
    """results.csv + stats.json only, with HTML in the cell and case names."""
    root.mkdir()
    evil_cell = "<script>alert('cell')</script>"
    evil_case = "<img src=x onerror=alert(1)>"
    rows = []
    for cell, shift in (("plain", 0.0), (evil_cell, 0.1)):
        for k, case in enumerate((evil_case, "c2", "c3")):
            rows.append(
                {
                    "case": case,
                    "class": "1",
                    "cell": cell,
                    "seed": "0",
                    "dice": 0.5 + shift + 0.01 * k,
                }
            )
    with (root / "results.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    stats = compare_methods(rows, baseline="plain", B=50)
    (root / "stats.json").write_text(json.dumps(stats))
    return root


def test_names_are_escaped_and_missing_inputs_noted(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        html = build_report(evil_folder(tmp_path / "evil")).read_text(encoding="utf-8")
    parsed = parse_report(html)
    assert not any(tag in ("script",) for tag, _ in parsed.tags)
    assert all(a.get("src") != "x" for _, a in parsed.tags)
    assert "&lt;script&gt;alert(&#39;cell&#39;)&lt;/script&gt;" in html
    header, *rows = parsed.sections["ranking"].tables[0]
    assert rows[0][header.index("method")] == "<script>alert('cell')</script>"  # as text
    assert parsed.sections["dice"].unavailable is None
    reasons = {s: parsed.sections[s].unavailable for s in SECTION_IDS}
    assert "results.csv has no lesion_tp" in reasons["detection"]
    assert reasons["curves"] == "no run folder has a train_log.csv"
    assert reasons["imbalance"] == "imbalance.json is missing"
    assert reasons["landscape"] == "no run folder has a landscape.json or sharpness.json"
    assert reasons["examples"] == "compare.json names no dataset"


def test_missing_optional_files_fall_back(compare_copy: Callable[[], Path]) -> None:
    root = compare_copy()
    (root / "imbalance.json").unlink()
    for run in (root / "runs").iterdir():
        (run / "train_log.csv").unlink()
        (run / "landscape.json").unlink(missing_ok=True)
        shutil.rmtree(run / "eval")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parsed = parse_report(build_report(root).read_text(encoding="utf-8"))
    assert parsed.order == SECTION_IDS
    detection = parsed.sections["detection"]
    assert detection.unavailable is None and len(detection.images) == 1
    assert any("size bins not available: no saved predictions" in t for t in detection.text)
    _, *rows = detection.tables[0]
    counts = {row[0]: row for row in rows}
    # results.csv counts: baseline finds 26 - 10 - 1 = 15 of 26 lesions over both seeds
    assert counts["dice_adamw"][1:4] == ["15", "11", "0"]
    assert counts["dice_sam"][1:4] == ["26", "0", "12"]
    assert parsed.sections["examples"].unavailable.startswith("best case: no saved prediction")
    for section_id in ("curves", "imbalance", "landscape"):
        assert parsed.sections[section_id].unavailable, section_id
        assert not parsed.sections[section_id].images


def test_broken_optional_files_and_failed_run(
    compare_copy: Callable[[], Path], tmp_path: Path
) -> None:
    root = compare_copy()
    dataset = write_dataset(tmp_path / "dataset_copy")
    (dataset / "labelsTr" / "case_4.nii.gz").write_bytes(b"not a nifti file")
    (root / "imbalance.json").write_text("[1, 2]")
    (root / "runs/dice_sam-seed0/landscape.json").write_text("{not json")
    wrong = root / "runs/dice_adamw-seed0/eval/tiny/case_0.nii.gz"
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), str(wrong))
    compare = json.loads((root / "compare.json").read_text())
    compare["cells"][1]["status"] = ["done", "failed"]
    compare["cells"][1]["error"] = [None, "<b>out of memory</b>"]
    compare["dataset"] = str(dataset)
    (root / "compare.json").write_text(json.dumps(compare))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        html = build_report(root).read_text(encoding="utf-8")
    parsed = parse_report(html)
    assert parsed.sections["imbalance"].unavailable == "imbalance.json is not a JSON object"
    landscape = parsed.sections["landscape"].unavailable
    assert landscape.startswith("runs/dice_sam-seed0/landscape.json is not valid JSON")
    detection_text = " ".join(parsed.sections["detection"].text)
    assert "1 prediction file(s) unreadable or of the wrong shape were skipped" in detection_text
    assert "Unreadable reference(s) left out: case_4." in detection_text
    failed = parsed.sections["ranking"].tables[-1]
    assert failed[1] == ["dice_sam", "1", "failed", "<b>out of memory</b>"]
    assert "&lt;b&gt;out of memory&lt;/b&gt;" in html
    # 5 readable cases; the failed run is left out (dice_sam: seed 0 only) and the
    # wrong-shape prediction of the baseline is skipped (5 x 2 - 1)
    header, *rows = parsed.sections["detection"].tables[0]
    predictions = {row[0]: row[header.index("predictions")] for row in rows}
    assert predictions == {"dice_adamw": "9", "dice_sam": "5"}


def test_a_crashing_section_becomes_a_note(
    compare_copy: Callable[[], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from segbalance.report import sections

    def broken(folder: object) -> None:
        raise RuntimeError("boom")

    patched = tuple((i, t, broken if i == "curves" else f) for i, t, f in sections.SECTIONS)
    monkeypatch.setattr(sections, "SECTIONS", patched)
    with pytest.warns(RuntimeWarning, match="'curves' failed"):
        path = build_report(compare_copy())
    parsed = parse_report(path.read_text(encoding="utf-8"))
    assert parsed.sections["curves"].unavailable == "failed to build (RuntimeError: boom)"
    assert parsed.sections["dice"].unavailable is None


def test_atomic_write(compare_copy: Callable[[], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from segbalance.report import html

    root = compare_copy()
    (root / "report.html").write_text("old report")
    (root / "report.md").write_text("old markdown")

    def failing(*args: object) -> str:
        raise RuntimeError("render failed")

    for renderer in ("render_page", "render_markdown"):
        monkeypatch.setattr(html, renderer, failing)
        with pytest.raises(RuntimeError, match="render failed"):
            build_report(root)
        assert (root / "report.html").read_text() == "old report"
        assert (root / "report.md").read_text() == "old markdown"
        monkeypatch.undo()
    monkeypatch.undo()

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic.atomic_write_texts({root / "report.html": "new", root / "report.md": "new md"})
    monkeypatch.undo()
    assert (root / "report.html").read_text() == "old report"
    assert (root / "report.md").read_text() == "old markdown"
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []
    # success replaces both files and leaves no temporary file either
    atomic.atomic_write_texts({root / "report.html": "new <b>report</b>", root / "report.md": "m"})
    assert (root / "report.html").read_text() == "new <b>report</b>"
    assert (root / "report.md").read_text() == "m"
    assert [p.name for p in root.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda root: (root / "results.csv").unlink(), "missing"),
        (lambda root: (root / "stats.json").unlink(), "missing"),
        (lambda root: (root / "stats.json").write_text("{oops"), "not valid JSON"),
        (lambda root: (root / "stats.json").write_text("{}"), "has no 'methods' object"),
        (lambda root: (root / "results.csv").write_text("a,b\n1,2\n"), "columns"),
        (lambda root: (root / "results.csv").write_text("case,cell,seed,dice\n"), "no rows"),
        (lambda root: (root / "compare.json").write_text("[]"), "not a JSON object"),
    ],
)
def test_bad_compare_folder(tmp_path: Path, damage: Callable[[Path], object], problem: str) -> None:
    root = evil_folder(tmp_path / "folder")
    (root / "compare.json").write_text("{}")
    damage(root)
    with pytest.raises(InputError, match=problem) as info:
        build_report(root)
    assert not (root / "report.html").exists()
    if problem == "missing":
        assert info.value.expected == "a compare folder with results.csv and stats.json"


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        build_report(tmp_path / "nope")
    assert info.value.line() == (
        f"{tmp_path / 'nope'}: not a folder (expected a compare folder with results.csv and stats.json)"
    )


def test_lesion_boxes_are_separate() -> None:
    # the fixture's promise: every box is its own 26-connected lesion
    from segbalance.stats import label_components

    for index in range(len(LESION_CASES)):
        _, n = label_components(reference(index) > 0)
        assert n == len(lesion_boxes(index))
