"""Measuring one run: wall time, CPU of the processes doing the work, the service's
memory, and running raw tool pipelines (``a | b > file``) without a shell."""

from __future__ import annotations

import contextlib
import os
import resource
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    """One timed run of one variant (raw pipeline or API call)."""

    seconds: float
    size: int
    """Bytes stored (compressed)."""
    cpu_seconds: float = 0.0
    """CPU of the tools and, for the API, of the service process itself."""
    server_cpu_seconds: float = 0.0
    """CPU of the database server during the run."""
    extra: dict[str, Any] = field(default_factory=dict)


class Unavailable(Exception):
    """The variant cannot run here (the service refused it, a tool is missing): its row
    says "not available" and why, never a number."""


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


# -- /proc -----------------------------------------------------------------------------------


def _stat_fields(pid: int | str, task: str | None = None) -> list[str]:
    path = f"/proc/{pid}/task/{task}/stat" if task else f"/proc/{pid}/stat"
    text = Path(path).read_text()
    return text.rsplit(")", 1)[1].split()


def process_cpu(pid: int | None) -> float:
    """CPU seconds of ``pid`` and of its children it has reaped (utime+stime+cutime+cstime)."""
    if pid is None:
        return 0.0
    try:
        f = _stat_fields(pid)
    except OSError:
        return 0.0
    return sum(int(x) for x in f[11:15]) / CLK_TCK


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of every live process below it (each with the children
    it reaped): ``serve`` with its ``api_processes`` helpers."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(_stat_fields(entry)[1])
            except (OSError, IndexError, ValueError):
                continue
    tree, grew = {pid}, True
    while grew:
        below = {p for p, parent in parents.items() if parent in tree and p not in tree}
        tree |= below
        grew = bool(below)
    return sum(process_cpu(p) for p in tree)


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every process, every core)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def all_processes_cpu() -> dict[int, tuple[str, float]]:
    """Every process's name and CPU seconds (its own plus its reaped children's)."""
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        f = text.rsplit(")", 1)[1].split()
        out[int(entry)] = (name, sum(int(x) for x in f[11:15]) / CLK_TCK)
    return out


def top_consumers(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], n: int = 6
) -> list[str]:
    """The processes that used the most CPU between two ``all_processes_cpu`` snapshots,
    as ``name/pid: seconds`` (a parent also counts the children it reaped meanwhile)."""
    used = []
    for pid, (name, cpu) in after.items():
        delta = cpu - before.get(pid, (name, 0.0))[1]
        if delta >= 0.05:
            used.append((delta, f"{name}/{pid}"))
    return [f"{who}: {cpu:.1f}" for cpu, who in sorted(used, reverse=True)[:n]]


def wait_for_quiet(threshold: float, timeout: float) -> tuple[float, float]:
    """Wait until the machine was busy less than ``threshold`` cores during one second
    (other people's work on a shared machine), at most ``timeout`` seconds. Returns
    (seconds waited, cores busy in the last second)."""
    t0 = time.monotonic()
    while True:
        b0 = machine_busy()
        time.sleep(1.0)
        busy = machine_busy() - b0
        waited = time.monotonic() - t0
        if busy < threshold or waited >= timeout:
            return waited, busy


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class ProcessSampler:
    """Samples a process while a run goes on: the maximum VmRSS, and the CPU of each of
    its threads by name (threads that end between samples lose their last interval)."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.rss_start = rss_bytes(pid)
        self.rss_max = self.rss_start
        self.rss_samples: list[int] = []
        self._threads: dict[str, tuple[str, float]] = {}
        self._baseline = self._thread_cpu()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def _thread_cpu(self) -> dict[str, tuple[str, float]]:
        found: dict[str, tuple[str, float]] = {}
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{self.pid}/task"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    name = Path(f"/proc/{self.pid}/task/{tid}/comm").read_text().strip()
                    f = _stat_fields(self.pid, tid)
                    found[tid] = (name, (int(f[11]) + int(f[12])) / CLK_TCK)
        return found

    def _loop(self) -> None:
        tick = 0
        while not self._stop.wait(self.interval):
            rss = rss_bytes(self.pid)
            self.rss_samples.append(rss)
            self.rss_max = max(self.rss_max, rss)
            tick += 1
            if tick % 5 == 0:
                self._threads.update(self._thread_cpu())

    def __enter__(self) -> ProcessSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._threads.update(self._thread_cpu())

    def cpu_by_thread(self, top: int = 8) -> dict[str, float]:
        """CPU seconds used during the run by the busiest threads (``name/tid``; Python
        3.11 does not name its native threads, so most are called after the process)."""
        out: dict[str, float] = {}
        for tid, (name, cpu) in self._threads.items():
            used = cpu - self._baseline.get(tid, (name, 0.0))[1]
            if used > 0.05:
                out[f"{name}/{tid}"] = used
        return dict(sorted(out.items(), key=lambda kv: -kv[1])[:top])


# -- raw pipelines ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    args: list[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None


@dataclass(frozen=True)
class PipelineResult:
    seconds: float
    cpu_seconds: float


class PipelineFailed(RuntimeError):
    pass


def run_pipeline(stages: Sequence[Stage], output: Path | None, log: Path) -> PipelineResult:
    """``stages[0] | stages[1] | ... > output`` (stdout discarded when ``output`` is None);
    every stage's stderr goes to ``log``. Raises PipelineFailed when a stage fails."""
    cpu0, t0 = children_cpu(), time.monotonic()
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(open(log, "ab"))
        sink: IO[bytes] | int = (
            stack.enter_context(open(output, "wb")) if output else subprocess.DEVNULL
        )
        previous: IO[bytes] | None = None
        for i, stage in enumerate(stages):
            last = i == len(stages) - 1
            proc = subprocess.Popen(
                stage.args,
                stdin=previous if previous is not None else subprocess.DEVNULL,
                stdout=sink if last else subprocess.PIPE,
                stderr=err,
                env=dict(stage.env) if stage.env is not None else None,
                cwd=stage.cwd,
            )
            if previous is not None:
                previous.close()  # the next stage holds it now
            previous = proc.stdout
            procs.append(proc)
        codes = [p.wait() for p in procs]
    seconds = time.monotonic() - t0
    failed = [(s.args[0], c) for s, c in zip(stages, codes, strict=True) if c != 0]
    if failed:
        tail = log.read_text(errors="replace")[-1500:]
        raise PipelineFailed(f"{failed[0][0]} exited with {failed[0][1]}:\n{tail}")
    return PipelineResult(seconds, children_cpu() - cpu0)


def fsync_file(path: Path) -> float:
    """fsync ``path`` (the service fsyncs what it stores); the seconds it took."""
    t0 = time.monotonic()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.monotonic() - t0


def tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@contextlib.contextmanager
def timer() -> Iterator[list[float]]:
    box: list[float] = []
    t0 = time.monotonic()
    try:
        yield box
    finally:
        box.append(time.monotonic() - t0)
