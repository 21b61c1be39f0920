"""`omni-emotion demo`, the README's first command, end to end as a user runs it (about two minutes on 2 cores)."""

from __future__ import annotations

import json
import subprocess
import sys

from omni_emotion.demo import DEMO_EMOTIONS, DemoScale


def test_the_demo_learns_the_toy_task_and_reports_every_stage(tmp_path):
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "omni_emotion.cli", "demo", "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for stage in (
        "media",
        "tiny model",
        "phase 1: audio",
        "phase 2: faces",
        "phase 3: instructions",
        "analyze",
    ):
        assert f"] {stage}" in result.stdout
    assert "tiny demo model" in result.stdout and "omni-emotion analyze" in result.stdout
    assert "Traceback" not in result.stderr

    report = json.loads((workdir / "demo_report.json").read_text())
    phase3 = next(stage for stage in report["stages"] if stage["name"] == "phase 3: instructions")
    assert len(phase3["losses"]) == DemoScale.phase3_steps // 5
    assert phase3["losses"][-1] < phase3["losses"][0] / 4, "phase 3 learns the answers"

    # The new clip's emotion is read from its colour and voice: learnt, not random.
    analysis = report["analysis"]
    made_as = next(emotion for emotion in DEMO_EMOTIONS if emotion.label == analysis["made_as"])
    assert analysis["labels"] == list(made_as.words)
    assert analysis["reasoning"] in made_as.reasonings

    chance = 100 / len(DEMO_EMOTIONS)
    dfew, emer_ov = report["evaluation"]["dfew"], report["evaluation"]["emer-ov"]
    assert dfew["samples"] == len(DEMO_EMOTIONS) * DemoScale.test_clips_per_emotion
    assert dfew["scores"]["uar"] > 2 * chance and dfew["scores"]["war"] > 2 * chance
    assert emer_ov["scores"]["recall"] > 50 and emer_ov["failed"] == 0
    assert (workdir / "evaluation" / "dfew_predictions.jsonl").is_file()
    for log in ("phase1_audio", "phase2_face", "phase3_instruct"):
        assert (workdir / "logs" / f"{log}.log").stat().st_size > 0
