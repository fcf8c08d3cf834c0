"""The backup pipeline into an S3 bucket against the same pipeline into a local folder:
SetWriter (zstd level 1 -> sha256 -> storage) and SetReader on 1 GiB of dump-like data,
runs interleaved, plus this process's peak RSS. The S3 server is ``moto_server`` started
here on a free port (it keeps objects in its own memory: a local stand-in, not a network).

Run: ``.venv/bin/python bench/s3.py [--gib 1] [--repeat 3] [--part-mb 64]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
from contextlib import ExitStack
from pathlib import Path

from encryption import backup, dump_block, restore

from rdsbackup.storage.base import Storage
from rdsbackup.storage.keys import Keyring
from rdsbackup.storage.local import LocalStorage
from rdsbackup.storage.s3 import S3Location, S3Storage, s3_client
from rdsbackup.testing import moto_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--part-mb", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    block = dump_block()
    times = max(1, round(args.gib * (1 << 30) / len(block)))
    raw = times * len(block)
    scratch = Path(tempfile.mkdtemp(prefix="rdsbackup-bench-s3-"))
    ring = Keyring({"bench": os.urandom(32)}, "bench")
    moto = ExitStack()
    try:
        endpoint = moto.enter_context(moto_server())
        client = s3_client(endpoint, "us-east-1", "k", "s", "path", args.concurrency + 2)
        client.create_bucket(Bucket="bench")
        stores: dict[str, Storage] = {
            "local": LocalStorage(scratch / "storage"),
            "s3": S3Storage(
                client,
                S3Location("bench", "sets"),
                part_size=args.part_mb << 20,
                max_concurrency=args.concurrency,
            ),
        }
        results: dict[str, list[float]] = {}
        n = 0
        for _ in range(args.repeat):
            for label, storage in stores.items():
                n += 1
                elapsed, cpu, manifest = backup(storage, block, times, None, n)
                read, _ = restore(storage, ring, n, manifest)
                storage.delete_prefix(f"set-{n}/")
                results.setdefault(label, []).append(elapsed)
                results.setdefault("read " + label, []).append(read)
                print(f"  run {n} {label:>5}: write {elapsed:.2f}s (cpu {cpu:.2f}s), "
                      f"read {read:.2f}s; stored {manifest.size:,} bytes")  # fmt: skip
        mib = 1 << 20
        for what in ("", "read "):
            local, s3 = (
                statistics.median(results[what + "local"]),
                statistics.median(results[what + "s3"]),
            )
            print(f"{'restore' if what else 'backup'} median of {args.repeat}: local {local:.2f}s "
                  f"({raw / local / mib:.0f} MiB/s), s3 {s3:.2f}s ({raw / s3 / mib:.0f} MiB/s), "
                  f"ratio s3/local {s3 / local:.3f}")  # fmt: skip
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process: {peak:.0f} MiB (the 64 MiB source block included); "
              f"part {args.part_mb} MiB x {args.concurrency} in flight")  # fmt: skip
    finally:
        moto.close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
