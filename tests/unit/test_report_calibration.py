"""The calibration section on a real interleaved run (tests/fixtures/runs/calibration-20261128, see its README),
and a platform that could not run listed with its reason."""

import json
import math
import re
import shutil
from pathlib import Path

import pandas as pd

from bench import dataset
from reporting import calibration, platforms
from reporting.html import build

RUN = Path(__file__).resolve().parents[1] / "fixtures" / "runs" / "calibration-20261128"


def test_calibration_of_a_real_run():
    data = dataset.load(RUN)
    infos = platforms.platform_infos(data.platforms_env, data.info["config"]["platforms"])
    rows = calibration.comparisons(data.samples, infos, data.hosts)
    assert {r.ours.name for r in rows} == {"container"}  # chosen by role, recorded in env.json
    assert {c.reference.name for r in rows for c in r.comparisons} == {"crun", "runc"}
    assert {r.key[1] for r in rows} == {"cpu", "memory"}
    for c in (c for r in rows for c in r.comparisons):
        assert c.paired and c.n == 3 and math.isfinite(c.ratio.point) and c.ratio.interval.level == 0.75


def test_report_shows_calibration_and_a_platform_that_could_not_run(tmp_path):
    run = shutil.copytree(RUN, tmp_path / "run")
    env = json.loads((run / "env.json").read_text())  # a copy: a platform this host lacked, as the runner records it
    env["platforms"]["unrunnable"] = {"available": False, "reason": "unrunnable: its binary is not on PATH"}
    (run / "env.json").write_text(json.dumps(env))
    text = build(run, tmp_path / "reports").read_text()
    section = text.split('<section id="calibration">', 1)[1].split("</section>", 1)[0]
    assert "is our container a real container?" in section and "flagged by chance alone" in section
    assert re.search(r"<td class=\"num[^\"]*\"[^>]*>\d+\.\d+×</td>", section) and ">75 %<" in section
    assert "unrunnable not measured: unrunnable: its binary is not on PATH" in text
    csv = pd.read_csv(tmp_path / "reports" / "run" / "tables" / "calibration.csv")
    assert set(csv.reference) == {"crun", "runc"} and (csv.interval_level == 0.75).all() and csv.ratio.gt(0).all()
    assert (tmp_path / "reports" / "run" / "tables" / "calibration.tex").exists()
