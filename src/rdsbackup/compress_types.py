"""Alibaba's ``CompressType`` codes (DescribeBackupPolicy / ModifyBackupPolicy) and the
service's own compressions (``zstd``, ``gzip``, ``none``; ``storage.streams``).

RDS names its tools: ``0`` none, ``1`` zlib, ``2`` zlib in parallel, ``4`` QuickLZ (sets
restorable per database), ``8`` QuickLZ (MySQL 8.0, not per database). The service
keeps the meaning, not the tool: no compression is ``none``; zlib is ``gzip`` (the same
deflate format); QuickLZ, the fast compressor, is ``zstd``. Every set of this service
can be restored per database where its method allows, so ``4`` and ``8`` are the same.

A leaf module: the policy service and the scheduler both read it.
"""

from __future__ import annotations

CODES: dict[str, str] = {"0": "none", "1": "gzip", "2": "gzip", "4": "zstd", "8": "zstd"}
"""CompressType code -> the service's compression."""

CODE_OF: dict[str, str] = {"none": "0", "gzip": "1", "zstd": "4"}
"""The service's compression -> the code DescribeBackupPolicy reports for it."""


def compression_of(code: str, default: str) -> str:
    """The compression a policy's stored code asks for; ``""`` (never set) is ``default``,
    the service's setting."""
    return CODES[code] if code else default


def code_of(code: str, default: str) -> str:
    """The code to report: the stored one, else the one of the service's setting."""
    return code or CODE_OF.get(default, "4")
