"""Render a `Report` for people (rich) or scripts (JSON); nothing else in the package prints."""

from __future__ import annotations

import json
import re

from rich.console import Console
from rich.table import Table

from .findings import Probe, Report

_MAX_ROWS = 60


def to_json(report: Report) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)


def render_check(console: Console, report: Report) -> None:
    """Summary line, inputs, findings table, probe matrix, notes."""
    console.print(_summary(report))
    console.print(_inputs_line(report), highlight=False)
    if report.findings:
        console.print(_findings_table(report))
    if report.probe is not None:
        _render_probe(console, report)
    for note in report.notes:
        console.print(f"[dim]note: {note}[/]", highlight=False)
    if report.skipped:
        nodes = ", ".join(s.node for s in report.skipped[:5])
        more = f" (+{len(report.skipped) - 5})" if len(report.skipped) > 5 else ""
        console.print(f"[dim]not judged: {len(report.skipped)} node(s): {nodes}{more}[/]")
    if report.unhandled_ops:
        ops = ", ".join(f"{op} x{n}" for op, n in sorted(report.unhandled_ops.items()))
        console.print(f"[dim]shapes not followed through: {ops}[/]")


def _summary(report: Report) -> str:
    dummy = ", ".join(f"{k}={v}" for k, v in report.dummy.items())
    head = (
        f"[bold]{report.model}[/]: {report.nodes} nodes, exporter {report.exporter or '?'}, "
        f"export dummy {dummy} ({report.dummy_source})"
    )
    if report.weights == "missing":
        head += ", [yellow]weights not read[/]"
    if not report.findings:
        verdict = "[bold green]no frozen shapes found[/]"
    else:
        kinds: dict[str, int] = {}
        for finding in report.findings:
            kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in kinds.items())
        verdict = f"[bold red]{len(report.findings)} finding(s)[/] ({detail})"
    if report.probe is not None and report.probe.skipped is None:
        failed = report.probe.failures
        verdict += (
            f"; probe: [red]{failed} failure(s)[/]" if failed else "; probe: [green]all ok[/]"
        )
    return f"{head}\n{verdict}"


def _inputs_line(report: Report) -> str:
    parts = []
    for tensor in report.inputs:
        dims = ", ".join("?" if d is None else str(d) for d in tensor.dims)
        parts.append(f"{tensor.name}[{dims}]")
    return "inputs: " + "  ".join(parts)


def _findings_table(report: Report) -> Table:
    table = Table(title="findings", title_justify="left", show_lines=False)
    for column in ("#", "kind", "node", "op", "frozen", "why", "source"):
        table.add_column(column, overflow="fold")
    for index, finding in enumerate(report.findings[:_MAX_ROWS]):
        why = "; ".join(dict.fromkeys(f.reason for f in finding.frozen))
        table.add_row(
            str(index),
            finding.kind,
            finding.node,
            finding.op_type or "input",
            finding.frozen_text,
            why,
            str(finding.source),
        )
    if len(report.findings) > _MAX_ROWS:
        table.caption = f"{len(report.findings) - _MAX_ROWS} more in --json"
    return table


def short_error(error: str | None) -> str:
    """onnxruntime's message without its prefix and source path."""
    if not error:
        return ""
    text = error.split("Status Message:", 1)[-1]
    text = re.sub(r"/onnxruntime_src/\S+ (\S+ )*?\S*\) ", "", text).strip()
    return text[:140]


def _render_probe(console: Console, report: Report) -> None:
    probe: Probe = report.probe
    if probe.skipped:
        console.print(f"[yellow]probe skipped[/]: {probe.skipped}", highlight=False)
        return
    table = Table(title="probe (onnxruntime)", title_justify="left")
    for column in ("batch x sequence", "result", "failing node", "finding", "error"):
        table.add_column(column, overflow="fold")
    for run in probe.runs:
        table.add_row(
            f"{run.batch}x{run.sequence}",
            "[green]ok[/]" if run.ok else "[red]FAIL[/]",
            run.node or "",
            "" if run.finding is None else f"#{run.finding} {report.findings[run.finding].node}",
            short_error(run.error),
        )
    console.print(table)
    if probe.invariance:
        rows = Table(
            title="batch invariance (a row alone vs inside the batch)", title_justify="left"
        )
        for column in ("batch x sequence", "row", "result", "max abs diff"):
            rows.add_column(column)
        for run in probe.invariance:
            diff = "-" if run.max_abs is None else f"{run.max_abs:.2e}"
            result = (
                "[green]ok[/]"
                if run.ok
                else f"[red]FAIL[/] {short_error(run.error) or 'rows mixed'}"
            )
            rows.add_row(f"{run.batch}x{run.sequence}", str(run.row), result, diff)
        console.print(rows)
