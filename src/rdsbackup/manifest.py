"""The manifest of a backup set: what the set is and how to check and restore it.

It is written last, as ``manifest.json`` beside the set's objects: a set without a
manifest is incomplete by definition.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class StoredObject:
    name: str
    size: int
    """Bytes stored (after compression)."""
    raw_size: int
    """Bytes the tool produced."""
    sha256: str
    """Hex SHA-256 of the stored bytes."""
    compression: str = "zstd"


@dataclass(frozen=True)
class Manifest:
    instance_id: str
    engine: str
    engine_version: str
    method: str
    kind: str
    strategy: str
    databases: list[str]
    objects: list[StoredObject]
    started_at: str
    finished_at: str
    tool_versions: dict[str, str] = field(default_factory=dict)
    consistent_position: dict[str, str] = field(default_factory=dict)
    consistent_time: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    compression: dict[str, str] = field(default_factory=dict)
    parent_backup_id: str | None = None
    chain: list[str] = field(default_factory=list)
    """Backup ids of the sets this one needs, oldest first (empty for a full set)."""
    encryption: dict[str, str] = field(default_factory=dict)
    """Empty for an unencrypted set; else how its objects are encrypted and its wrapped
    data key (``storage.keys.SetKey.manifest_fields``). Objects' sizes and sha256 are
    those of the stored (encrypted) bytes."""
    format_version: int = FORMAT_VERSION

    def object(self, name: str) -> StoredObject:
        for obj in self.objects:
            if obj.name == name:
                return obj
        raise KeyError(name)

    @property
    def size(self) -> int:
        return sum(o.size for o in self.objects)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        raw: dict[str, Any] = json.loads(data)
        raw["objects"] = [StoredObject(**o) for o in raw["objects"]]
        return cls(**raw)
