"""Summarise a py-spy ``--format raw --threads`` profile of the service (``bench/run.py
--profile``): samples per thread, and each thread's busiest leaf frames.

    .venv/bin/python bench/profile_summary.py bench/.data/profiles/<run>.txt [--top N]

With ``--profile wall`` a thread's share is the share of the run it spent anywhere
(blocked included); with ``cpu``, running; with ``gil``, holding the GIL.
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path


def summarise(path: Path, top: int) -> str:
    per_thread: collections.Counter[str] = collections.Counter()
    leaves: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in path.read_text().splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        thread, leaf = frames[0], frames[-1]
        per_thread[thread] += int(count)
        leaves[thread][leaf] += int(count)
    periods = max(per_thread.values(), default=0)
    out = [f"{path.name}: {periods} sample periods (the busiest thread's count)"]
    for thread, n in per_thread.most_common():
        out.append(f"{n:7d}  {n / max(periods, 1):6.1%}  {thread}")
        for leaf, m in leaves[thread].most_common(top):
            out.append(f"{'':17}{m:7d}  {leaf}")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("profiles", nargs="+", type=Path)
    p.add_argument("--top", type=int, default=6, help="leaf frames per thread (default 6)")
    a = p.parse_args()
    for path in a.profiles:
        print(summarise(path, a.top))


if __name__ == "__main__":
    main()
