"""The README's composition example runs as written and prints its results."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_composition_example_runs_as_written(tmp_path: Path) -> None:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Composing a queue", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    script = tmp_path / "example.py"
    script.write_text(code.group(1))
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "12.0 0.75 DONE"
    assert (
        code.group(1).strip()
        == (ROOT / "examples" / "compose.py").read_text().split('"""\n\n', 1)[1].strip()
    )


def test_thousand_task_example_passes_its_checks() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "thousand_tasks.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ALL CHECKS PASS" in out.stdout
    assert "correct results: 980 of 980" in out.stdout
