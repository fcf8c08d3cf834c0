"""The end of a standalone bench's run: its results and its services' logs kept under
the bench's data folder, its run folder removed (unless kept)."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path


def save_run(
    data: Path,
    stamp: str,
    text: str,
    logs: Mapping[str, Path],
    run_dir: Path,
    keep: bool,
    say: Callable[[str], None],
) -> None:
    """``text`` to ``data/results-<stamp>.md``; each of ``logs`` (name -> service log) to
    ``data/logs-<stamp>/<name>.log``."""
    print(text)
    out = data / f"results-{stamp}.md"
    out.write_text(text + "\n")
    say(f"results written to {out}")
    folder = data / f"logs-{stamp}"
    for name, log in logs.items():
        folder.mkdir(exist_ok=True)
        shutil.copyfile(log, folder / f"{name}.log")
    if keep:
        say(f"run folder kept: {run_dir}")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
