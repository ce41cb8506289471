"""The HTML report in a real headless browser: it loads, every figure decodes and the
screenshot is not blank. Needs Chromium (the Debian package ``chromium``; ``.ci/run``
installs it where it can); skips, saying so, where there is none."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.experiments.helpers import run

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium on this machine (install the Debian package 'chromium'; "
                ".ci/run does where it may): the report was not checked in a browser")


def test_serving_report_renders_in_a_browser(capsys, tmp_path) -> None:  # noqa: ANN001
    browser = _browser()
    out = tmp_path / "serve"
    code, _, err = run(capsys, "serve", "--model", "tiny-llama", "--chip", "edge",
                       "--prompt-len", "uniform:8:40", "--output-len", "uniform:2:16",
                       "--rate", "200", "--requests", "60", "--out", str(out))
    assert code == 0, err
    assert run(capsys, "report", str(out))[0] == 0
    page = (out / "report" / "index.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--virtual-time-budget=5000", "--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True,
                         text=True, timeout=120)
    found = re.search(r'data-rendered="(\d+)/(\d+)"', dom.stdout)
    assert found, dom.stderr[-500:]
    assert int(found.group(1)) == int(found.group(2)) >= 2  # every figure decoded
    shot = tmp_path / "page.png"
    subprocess.run([browser, *flags, "--window-size=1280,2000", f"--screenshot={shot}", page],
                   capture_output=True, timeout=120)
    import matplotlib.image as mpimg

    pixels = mpimg.imread(shot)[..., :3]
    assert pixels.std() > 0.05  # figures drew something on the white page
    assert (pixels.mean(axis=2) < 0.9).mean() > 0.02
