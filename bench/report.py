"""Printing the figures: the comparison table (text and Markdown), the service's memory
and progress observations, and a JSON record of every run."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from harness import PathResult, VariantResult
from measure import median

GIB = 1 << 30
MIB = 1 << 20
RSS_TARGET_MB = 150
PROCESS_TARGET = 5

HEADERS = (
    "path",
    "raw variant",
    "raw s/GiB",
    "API s/GiB",
    "API/raw",
    "target",
    "raw MiB",
    "API MiB",
    "raw CPU s",
    "API CPU s",
    "others",
)


def _num(value: float, digits: int = 2) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _per_gib(v: VariantResult | None, data_bytes: int) -> float:
    if v is None or not v.ok:
        return float("nan")
    return v.seconds / (data_bytes / GIB)


def _cpu(v: VariantResult | None) -> float:
    if v is None or not v.ok:
        return float("nan")
    return median([r.cpu_seconds for r in v.runs])


def _mib(v: VariantResult | None) -> str:
    if v is None or not v.ok:
        return "-"
    return f"{v.size / MIB:.0f}"


def _others(*variants: VariantResult | None) -> str:
    """The most cores other processes kept busy during any of these runs."""
    seen = [
        float(r.extra.get("others_cores", 0.0)) for v in variants if v is not None for r in v.runs
    ]
    return f"{max(seen):.2f}" if seen else "-"


def _target(result: PathResult, raw: VariantResult, ratio: float) -> str:
    if raw.target is not None:
        limit = raw.target
    elif raw is result.best_raw():
        limit = result.path.ratio_target
    else:
        return ""
    if math.isnan(ratio):
        return f"<= {limit:.2f}"
    return f"<= {limit:.2f} {'ok' if ratio <= limit else 'MISSED'}"


def rows(results: list[PathResult]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for res in results:
        title = res.path.title
        if res.path.pending:
            out.append((title, res.path.pending, *[""] * (len(HEADERS) - 2)))
            continue
        api = res.api
        api_cell = _num(_per_gib(api, res.data_bytes))
        if api is not None and api.unavailable:
            api_cell = "not available"
        if not res.raws:
            out.append(
                (
                    title,
                    "(API only)",
                    "-",
                    api_cell,
                    "-",
                    "",
                    "-",
                    _mib(api),
                    "-",
                    _num(_cpu(api), 1),
                    _others(api),
                )
            )
            continue
        for raw in res.raws:
            raw_s = _per_gib(raw, res.data_bytes)
            api_s = _per_gib(api, res.data_bytes)
            ratio = api_s / raw_s if raw.ok and api is not None and api.ok else float("nan")
            raw_cell = "not available" if raw.unavailable else _num(raw_s)
            out.append(
                (
                    title,
                    raw.label,
                    raw_cell,
                    api_cell,
                    _num(ratio),
                    _target(res, raw, ratio),
                    _mib(raw),
                    _mib(api),
                    _num(_cpu(raw), 1),
                    _num(_cpu(api), 1),
                    _others(api, raw),
                )
            )
            title = ""
    return out


def text_table(results: list[PathResult]) -> str:
    table = [HEADERS, *rows(results)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = []
    for i, r in enumerate(table):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(results: list[PathResult]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    lines += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows(results)]
    return "\n".join(lines)


def observations(results: list[PathResult]) -> list[str]:
    """Per API variant: RSS start/max, distinct Process values, phases; incrementals
    against their full; why a variant was not available."""
    by_key = {r.path.key: r for r in results}
    lines: list[str] = []
    for res in results:
        api = res.api
        if api is None or res.path.pending:
            continue
        if api.unavailable:
            lines.append(f"{res.path.title}: API not available: {api.unavailable}")
            continue
        if res.path.operation == "restore":
            lines += _restore_lines(res, api)
            continue
        for i, run in enumerate(api.runs, 1):
            x = run.extra
            rss_ok = x["rss_max_mb"] <= RSS_TARGET_MB
            proc_ok = x["distinct_process"] >= PROCESS_TARGET
            lines.append(
                f"{res.path.title} run {i}: {run.seconds:.1f} s; service RSS"
                f" {x['rss_start_mb']:.0f} -> max {x['rss_max_mb']:.0f} MB"
                f" ({'ok' if rss_ok else 'MISSED'} <= {RSS_TARGET_MB});"
                f" Process values {x['process_values']}"
                f" ({x['distinct_process']} distinct, {'ok' if proc_ok else 'MISSED'}"
                f" >= {PROCESS_TARGET}); phases {_phases(x)};"
                f" service CPU {run.cpu_seconds:.1f} s (threads: {x['service_threads_cpu']}),"
                f" DB server CPU {run.server_cpu_seconds:.1f} s"
            )
        for raw in res.raws:
            if raw.unavailable:
                lines.append(f"{res.path.title}: {raw.label} not available: {raw.unavailable}")
        base = by_key.get(res.path.relative_to)
        if base is not None:
            lines += _relative(res, base)
    return lines


def _restore_lines(res: PathResult, api: VariantResult) -> list[str]:
    lines = []
    for i, run in enumerate(api.runs, 1):
        x = run.extra
        statuses = " > ".join(
            f"{s}@{t:.1f}s" for s, t in zip(x["statuses"], x["status_seen_at"], strict=False)
        )
        lines.append(
            f"{res.path.title} run {i}: {run.seconds:.1f} s (set {x['backup_id']},"
            f" {x['set_bytes'] / MIB:.0f} MiB stored; data directory {run.size / MIB:.0f} MiB);"
            f" service RSS {x['rss_start_mb']:.0f} -> max {x['rss_max_mb']:.0f} MB;"
            f" clone {statuses}; service CPU {run.cpu_seconds:.1f} s"
            f" (threads: {x['service_threads_cpu']}), clone server CPU"
            f" {run.server_cpu_seconds:.1f} s"
        )
    for raw in res.raws:
        if raw.unavailable:
            lines.append(f"{res.path.title}: {raw.label} not available: {raw.unavailable}")
        for i, run in enumerate(raw.runs, 1):
            steps = {k: v for k, v in run.extra.items() if k.endswith("_s")}
            lines.append(f"{res.path.title} raw '{raw.label}' run {i}: {run.seconds:.1f} s {steps}")
    return lines


def _phases(extra: dict[str, Any]) -> str:
    seen = extra.get("phase_seen_at") or [None] * len(extra["phases"])
    return " > ".join(
        f"{p}@{t:.1f}s" if t is not None else p for p, t in zip(extra["phases"], seen, strict=False)
    )


def _relative(res: PathResult, base: PathResult) -> list[str]:
    out = []
    pairs = [(res.api, base.api, "API")]
    pairs += [(r, b, "raw") for r, b in zip(res.raws, base.raws, strict=False)]
    for mine, full, side in pairs:
        if mine is None or full is None or not mine.ok or not full.ok:
            continue
        out.append(
            f"{res.path.title} ({side}): {mine.seconds:.1f} s and {mine.size / MIB:.0f} MiB"
            f" against the full's {full.seconds:.1f} s and {full.size / MIB:.0f} MiB"
            f" (time {mine.seconds / full.seconds:.0%}, size {mine.size / full.size:.0%})"
        )
    return out


def to_json(results: list[PathResult], meta: dict[str, Any]) -> str:
    def variant(v: VariantResult | None) -> Any:
        if v is None:
            return None
        return {
            "label": v.label,
            "unavailable": v.unavailable,
            "median_seconds": None if not v.ok else v.seconds,
            "runs": [asdict(r) for r in v.runs],
        }

    body = {
        "meta": meta,
        "paths": [
            {
                "key": r.path.key,
                "title": r.path.title,
                "engine": r.path.engine,
                "operation": r.path.operation,
                "pending": r.path.pending,
                "data_bytes": r.data_bytes,
                "api": variant(r.api),
                "raws": [variant(v) for v in r.raws],
            }
            for r in results
        ],
    }
    return json.dumps(body, indent=2, default=str)
