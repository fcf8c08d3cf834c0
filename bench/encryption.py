"""What encryption at rest costs: SetWriter (zstd level 1 -> AES-256-GCM chunks ->
sha256 -> storage) and SetReader (the way back) on 1 GiB of dump-like, compressible
data, encryption on against off, same process, runs interleaved.

The data is SQL ``INSERT`` rows (ids, names, e-mail addresses, amounts, timestamps,
free text) built from a seeded generator: a 64 MiB block, streamed 16 times from
memory (zstd level 1's window is far smaller than the block, so the repetition does
not help it). Storage: the local folder driver under a temporary folder (``--storage
local``, fsync'd as in the service) or a writer that discards (``--storage null``: CPU
only).

Run: ``.venv/bin/python bench/encryption.py [--gib 1] [--repeat 3] [--storage local]``.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rdsbackup.manifest import Manifest
from rdsbackup.storage.base import ObjectWriter, Storage
from rdsbackup.storage.keys import Keyring, SetKey
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.memory import MemoryStorage
from rdsbackup.storage.streams import SetReader, SetWriter

BLOCK = 64 << 20
WORDS = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed"]
NAMES = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia"]


def dump_block(seed: int = 7) -> bytes:
    rng = random.Random(seed)
    out = io.StringIO()
    row = 0
    while out.tell() < BLOCK:
        out.write("INSERT INTO `orders` VALUES ")
        values = []
        for _ in range(100):
            row += 1
            name = rng.choice(NAMES)
            note = " ".join(rng.choices(WORDS, k=rng.randint(3, 12)))
            values.append(
                f"({row},{rng.randint(1, 10**6)},'{name} {rng.randint(1, 9999)}',"
                f"'{name.lower()}{rng.randint(1, 99999)}@example.com',"
                f"{rng.randint(0, 10**7) / 100:.2f},'2026-{rng.randint(1, 12):02d}-"
                f"{rng.randint(1, 28):02d} {rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00',"
                f"'{note}')"
            )
        out.write(",".join(values) + ";\n")
    return out.getvalue().encode()[:BLOCK]


class Repeated(io.RawIOBase):
    """``block`` ``times`` over, read from memory without copies beyond the reader's."""

    def __init__(self, block: bytes, times: int) -> None:
        self.view = memoryview(block)
        self.left = times
        self.offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self.offset == len(self.view):
            if self.left <= 1:
                return 0
            self.left -= 1
            self.offset = 0
        n = min(len(buffer), len(self.view) - self.offset)
        buffer[:n] = self.view[self.offset : self.offset + n]
        self.offset += n
        return n


class NullStorage(MemoryStorage):
    """Keeps sizes only: writes cost nothing but the call."""

    @contextmanager
    def writer(self, key: str) -> Iterator[ObjectWriter]:
        class _Discard:
            def write(self, data: bytes | memoryview, /) -> int:
                return len(data)

        yield _Discard()


def cpu_seconds() -> float:
    """User + system time of this process, all threads (libzstd's workers too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def backup(
    storage: Storage, block: bytes, times: int, key: SetKey | None, n: int
) -> tuple[float, float, Manifest]:
    writer = SetWriter(storage, f"set-{n}", level=1, threads=2, encryption=key)
    started, cpu = time.perf_counter(), cpu_seconds()
    writer.put("dump.sql", Repeated(block, times))  # type: ignore[arg-type]
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    manifest = Manifest(
        "rm-bench", "MariaDB", "10.11", "Logical", "FullBackup", "instance", [],
        writer.objects, "", "", encryption=key.manifest_fields() if key else {},
    )  # fmt: skip
    return elapsed, cpu, manifest


def restore(storage: Storage, ring: Keyring, n: int, manifest: Manifest) -> tuple[float, float]:
    reader = SetReader(storage, f"set-{n}", manifest, ring)
    started, cpu = time.perf_counter(), cpu_seconds()
    with reader.open("dump.sql") as f:
        while f.read(1 << 20):
            pass
    return time.perf_counter() - started, cpu_seconds() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--storage", choices=("local", "null"), default="local")
    args = parser.parse_args()
    times = max(1, round(args.gib * (1 << 30) / BLOCK))
    raw = times * BLOCK
    started = time.perf_counter()
    block = dump_block()
    print(f"data: {raw / (1 << 30):.2f} GiB of dump rows (block built in "
          f"{time.perf_counter() - started:.0f}s); cores: {os.cpu_count()}")  # fmt: skip
    ring = Keyring({"bench": os.urandom(32)}, "bench")
    scratch = Path(tempfile.mkdtemp(prefix="rdsbackup-bench-enc-"))
    try:
        storage: Storage = (
            LocalStorage(scratch / "storage") if args.storage == "local" else NullStorage()
        )
        sizes: dict[str, int] = {}
        results: dict[str, list[float]] = {}
        n = 0
        for _ in range(args.repeat):
            for label in ("off", "on"):
                n += 1
                key = ring.new_set_key() if label == "on" else None
                elapsed, cpu, manifest = backup(storage, block, times, key, n)
                results.setdefault(label, []).append(elapsed)
                results.setdefault(f"cpu {label}", []).append(cpu)
                sizes[label] = manifest.size
                line = f"  run {n} {label:>3}: write {elapsed:.2f}s (cpu {cpu:.2f}s)"
                if args.storage == "local":
                    read, read_cpu = restore(storage, ring, n, manifest)
                    results.setdefault(f"read {label}", []).append(read)
                    results.setdefault(f"cpu read {label}", []).append(read_cpu)
                    storage.delete_prefix(f"set-{n}/")
                    line += f", read {read:.2f}s (cpu {read_cpu:.2f}s)"
                print(line)
        stored = sizes
        print(f"stored bytes: off {stored['off']:,}, on {stored['on']:,} "
              f"(+{stored['on'] - stored['off']:,})")  # fmt: skip
        mib = 1 << 20
        for what in ("", "read ") if args.storage == "local" else ("",):
            verb = "restore (SetReader)" if what else "backup (SetWriter)"
            for stat in (statistics.median, min):
                off, on = stat(results[what + "off"]), stat(results[what + "on"])
                cpu_off = stat(results["cpu " + what + "off"])
                cpu_on = stat(results["cpu " + what + "on"])
                print(
                    f"{verb}, {stat.__name__} of {args.repeat}: wall off {off:.2f}s "
                    f"({raw / off / mib:.0f} MiB/s), on {on:.2f}s ({raw / on / mib:.0f} MiB/s), "
                    f"ratio {on / off:.3f}; cpu off {cpu_off:.2f}s, on {cpu_on:.2f}s, "
                    f"ratio {cpu_on / cpu_off:.3f}"
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
