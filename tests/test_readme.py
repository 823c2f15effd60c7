"""The README's composition example runs as written and prints its results."""

from __future__ import annotations

import os
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


def test_quick_start_installs_what_the_harness_imports() -> None:
    import tomllib

    quick = (ROOT / "README.md").read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first = next(line for line in quick.splitlines() if "python -m harness" in line)
    extras = re.search(r'pip install -e "\.\[([a-z,]+)\]"', first)
    assert extras is not None, first
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]

    def closure(names: list[str]) -> set[str]:
        found: set[str] = set()
        for name in names:
            for dep in optional[name]:
                inner = re.fullmatch(r"kew-plug\[([a-z,]+)\]", dep)
                found |= closure(inner.group(1).split(",")) if inner else {dep}
        return found

    installed = (
        " ".join(project["dependencies"]) + " " + " ".join(closure(extras.group(1).split(",")))
    )
    for needed in ("multiprocess", "rich", "fakeredis[lua]", "cloudpickle", "redis"):
        assert needed in installed, f"the Quick start does not install {needed}"


def test_the_harness_without_its_extra_names_it(tmp_path: Path) -> None:
    """`python -m harness` where multiprocess cannot be imported: one line naming the extra."""
    (tmp_path / "multiprocess.py").write_text("raise ImportError('no', name='multiprocess')\n")
    out = subprocess.run(
        [sys.executable, "-m", "harness"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert out.returncode != 0
    assert "pip install 'kew-plug[harness]'" in out.stderr, out.stderr
