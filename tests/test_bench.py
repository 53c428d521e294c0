from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_bench_simulate_runs_and_matches_reference():
    proc = subprocess.run([sys.executable, str(REPO / "bench/simulate.py"), "--defects", "60",
                           "--reference-defects", "1"], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["max_abs_diff"] <= 1e-9
    for k in ("ms_per_defect_image", "ms_per_defect_patch", "reference_ms_per_defect_image",
              "speedup_image"):
        assert doc[k] > 0
    # generous bounds (CI machines vary); the README reports the measured figures
    assert doc["ms_per_defect_image"] < 2.0 and doc["ms_per_defect_patch"] < 0.5
    assert doc["speedup_image"] >= 50


def test_bench_dataset_projects_under_target(gdxray_root):
    proc = subprocess.run([sys.executable, str(REPO / "bench/dataset.py"), "--gdxray",
                           str(gdxray_root), "--images", "4", "--per-image", "500"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout.strip())
    assert doc["patches"] == 4000 and doc["patches_per_s"] > 0
    assert doc["projected_minutes_640k"] < 10.0


def test_bench_train_one_line(tmp_path, gdxray_root):
    from xdefect.patches import BuildArgs
    from xdefect.pipelines import build_dataset

    data = tmp_path / "d"
    build_dataset(BuildArgs(gdxray=str(gdxray_root), out=str(data), series=["C0001"],
                            per_image=40, limit_images=8))
    proc = subprocess.run([sys.executable, str(REPO / "bench/train.py"), "--data", str(data),
                           "--patches", "1024", "--batch", "128"], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    doc = json.loads(lines[0])
    for k in ("loop_patches_per_s", "loop_over_raw", "s_per_512k_epoch", "raw_speedup",
              "loop_speedup"):
        assert doc[k] > 0
    assert doc["raw_patches_per_s"] > 0
    assert set(doc["raw_patches_per_s_by_setting"]) == {"float32", "float32_channels_last",
                                                        "bfloat16_channels_last"}
    assert doc["loop_over_raw"] > 0.4  # loose here (shared CI cores); docs give the figure
    assert -1 <= doc["val_acc_difference"] <= 1


def test_bench_record_appends_one_row_per_benchmark(tmp_path):
    out = tmp_path / "results.jsonl"
    env = {**__import__("os").environ, "XDEFECT_BENCH_RESULTS": str(out)}
    proc = subprocess.run([sys.executable, str(REPO / "bench/record.py"), "simulate"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["bench"] == "simulate"
    assert rows[0]["commit"] and rows[0]["date"].startswith("20")
    assert rows[0]["figures"]["speedup_image"] > 0
    proc = subprocess.run([sys.executable, str(REPO / "bench/record.py"), "nonesuch"],
                          capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 2 and len(out.read_text().splitlines()) == 1
