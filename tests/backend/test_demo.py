"""The README's default job runs end to end on a small demo scene."""

import json
import subprocess
import sys


def test_demo_job_end_to_end(tmp_path):
    out = tmp_path / "demo"
    res = subprocess.run(
        [sys.executable, "-m", "exgs.cli", "demo", "--out", str(out), "--gaussians", "8000",
         "--views", "1", "--size", "96x72", "--ratio", "50"],
        capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["scene"]["gaussians"] > 7000
    # the .exgs meets the requested ratio against the PLY it came from
    assert report["compress"]["ratio"] >= 50 * 0.97
    assert (out / "demo_scene.exgs").stat().st_size == report["compress"]["file_bytes"]
    for stage in ("full", "compressed"):
        assert (out / stage / "0000.png").is_file()
    assert (out / "side_by_side.png").is_file()
    q = report["quality"]["compressed"]
    assert 0 < q["ssim"] < 1 and q["psnr_db"] > 10
    if "restored" in report["quality"]:
        assert (out / "restored" / "0000.png").is_file()
