"""Settings rules: compression threads by level, and more API processes only with
Celery workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from rdsbackup.config import INLINE_LEVEL_MAX, Settings


def test_compression_is_in_line_at_low_levels_and_threaded_above(tmp_path: Path) -> None:
    cores = max(1, os.cpu_count() or 1)
    assert Settings(state_dir=tmp_path).resolved_compression_threads == 1
    low = Settings(state_dir=tmp_path, compression_level=INLINE_LEVEL_MAX)
    assert low.resolved_compression_threads == 1
    high = Settings(state_dir=tmp_path, compression_level=INLINE_LEVEL_MAX + 1)
    assert high.resolved_compression_threads == cores
    chosen = Settings(state_dir=tmp_path, compression_level=1, compression_threads=3)
    assert chosen.resolved_compression_threads == 3


def test_more_api_processes_need_the_celery_dispatcher(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match='needs dispatcher = "celery"'):
        Settings(state_dir=tmp_path, api_processes=2)
    ok = Settings(state_dir=tmp_path, api_processes=2, dispatcher="celery")
    assert ok.api_processes == 2
    with pytest.raises(ValidationError):
        Settings(state_dir=tmp_path, api_processes=0)
