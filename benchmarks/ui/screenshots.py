"""Make the README's UI pictures: docs/images/ui-run.png, ui-compare.png and ui-deployment.png.

They are taken by the browser test itself (real flows, `reelflow ui` as a process,
Debian's Chromium), so the pictures show exactly what the tests check::

    python benchmarks/ui/screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    out = ROOT / "docs" / "images"
    with tempfile.TemporaryDirectory(prefix="reelflow-shots-") as tmp:
        env = {**os.environ, "REELFLOW_UI_SCREENSHOTS": str(out)}
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--basetemp={tmp}",
               str(ROOT / "tests" / "ui" / "test_browser.py"), "-k", "click_through or deployments_pages"]
        code = subprocess.run(cmd, env=env, cwd=ROOT).returncode
    for name in ("ui-run.png", "ui-compare.png", "ui-deployment.png"):
        path = out / name
        print(f"{path}: {'%d bytes' % path.stat().st_size if path.exists() else 'missing'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
