"""Render a `Report` for people (rich) or scripts (JSON); nothing else in the package prints.

Every string that came from a file (node and op names, paths, metadata, onnxruntime's
messages about them) goes through `untrusted.shown` before it reaches rich markup, and
`untrusted.plain` where markup is off: a name is shown as written, never interpreted.
"""

from __future__ import annotations

import json
import re

from rich.console import Console
from rich.table import Table

from .compare.results import CompareReport
from .findings import Probe, Report
from .repair.results import RepairReport, Verification
from .untrusted import plain, shown
from .view.netron import NetronView, find_query

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
        console.print(f"[dim]note: {shown(note)}[/]", highlight=False)
    if report.skipped:
        nodes = ", ".join(shown(s.node or f"({s.op_type})", 80) for s in report.skipped[:5])
        more = f" (+{len(report.skipped) - 5})" if len(report.skipped) > 5 else ""
        console.print(f"[dim]not judged: {len(report.skipped)} node(s): {nodes}{more}[/]",
                      highlight=False)
    if report.unhandled_ops:
        ops = ", ".join(f"{shown(op, 80)} x{n}" for op, n in sorted(report.unhandled_ops.items()))
        console.print(f"[dim]shapes not followed through: {ops}[/]", highlight=False)


def _summary(report: Report) -> str:
    dummy = ", ".join(f"{shown(k, 80)}={v}" for k, v in report.dummy.items())
    dummy = (f"export dummy {dummy} ({report.dummy_source})" if dummy
             else "export dummy sizes unknown (--dummy NAME=N gives them)")
    head = (
        f"[bold]{shown(report.model)}[/]: {report.nodes} nodes, exporter "
        f"{shown(report.exporter or '?', 80)}, "
        f"{dummy}"
    )
    if report.weights == "missing":
        head += ", [yellow]weights not read[/]"
    if not report.findings and report.skipped:
        reasons = ", ".join(dict.fromkeys(shown(s.reason) for s in report.skipped[:20]))
        verdict = (f"[bold yellow]incomplete: {len(report.skipped)} node(s) not judged[/] "
                   f"({reasons}); no frozen shapes found among the rest")
    elif not report.findings:
        verdict = "[bold green]no frozen shapes found[/]"
    else:
        kinds: dict[str, int] = {}
        for finding in report.findings:
            kinds[finding.kind] = kinds.get(finding.kind, 0) + 1
        detail = ", ".join(f"{n} {k}" for k, n in kinds.items())
        verdict = f"[bold red]{len(report.findings)} finding(s)[/] ({detail})"
    if report.probe is not None and report.probe.skipped is None:
        failed = report.probe.failures
        if report.probe.inconclusive:
            verdict += ("; probe: [yellow]inconclusive[/] (the model fails at the first sizes "
                        "too, with no finding to explain it: give --dummy or --probe sizes, or "
                        "its inputs need values the probe cannot build)")
        if failed or not report.probe.inconclusive:
            verdict += (f"; probe: [red]{failed} failure(s)[/]" if failed
                        else "; probe: [green]all ok[/]")
    return f"{head}\n{verdict}"


def _inputs_line(report: Report) -> str:
    parts = []
    for tensor in report.inputs:
        dims = ", ".join("?" if d is None else str(d) for d in tensor.dims)
        parts.append(shown(f"{tensor.name}[{dims}]"))
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
            shown(finding.node),
            shown(finding.op_type or "input"),
            shown(finding.frozen_text),
            shown(why),
            shown(finding.source),
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
    # The shapes are what the user needs ("Input shape:{1,34,384}, requested shape:{2,8,12,32}").
    shapes = text.find("Input shape:")
    return text[shapes:][:140] if shapes >= 0 else text[:140]


def _render_probe(console: Console, report: Report) -> None:
    probe: Probe = report.probe
    if probe.skipped:
        console.print(f"[yellow]probe skipped[/]: {shown(probe.skipped)}", highlight=False)
        return
    table = Table(title="probe (onnxruntime)", title_justify="left")
    shape = "sizes" if any(r.sizes for r in probe.runs) else "batch x sequence"
    for column in (shape, "result", "failing node", "finding", "error"):
        table.add_column(column, overflow="fold")
    for run in probe.runs:
        finding = "" if run.finding is None else \
            f"#{run.finding} {shown(report.findings[run.finding].node)}"
        table.add_row(
            shown(run.label),
            "[green]ok[/]" if run.ok else "[red]FAIL[/]",
            shown(run.node or ""),
            finding,
            shown(short_error(run.error)),
        )
    console.print(table)
    for run in probe.runs:
        if run.note:
            console.print(f"[dim]note: {shown(run.note)}: ran at {shown(run.label)}[/]",
                          highlight=False)
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
                else f"[red]FAIL[/] {shown(short_error(run.error) or 'rows mixed')}"
            )
            rows.add_row(shown(run.label), str(run.row), result, diff)
        console.print(rows)


def render_compare_netron(console: Console, view: NetronView, report: CompareReport) -> None:
    """Where Netron serves the compared model, and the divergent module's nodes to find."""
    _render_served(console, view, report.model)
    first = report.first_divergence
    if first:
        console.print(
            f"{len(first.onnx_nodes)} node(s) of {shown(first.module or '<root>')} carry the "
            "divergence under subgraft.*; in Netron press Ctrl+F and paste a name, e.g.:",
            highlight=False, soft_wrap=True)
        for name in first.onnx_nodes[:_MAX_ROWS]:
            console.print(plain(f"  {find_query(name)}", None), markup=False, highlight=False,
                          soft_wrap=True)
    _render_files(console, view)


def _render_served(console: Console, view: NetronView, model: str) -> None:
    console.print(
        f"[bold]Netron[/]: {shown(view.url)}  (annotated copy; {shown(model)} is "
        "untouched)",
        highlight=False,
        soft_wrap=True,
    )
    if view.focus_url:
        console.print(
            f"[bold]neighbourhood[/] of {shown(view.focus)}: {shown(view.focus_url)}  "
            f"({view.neighbourhood_nodes} nodes)",
            highlight=False,
            soft_wrap=True,
        )
    if not view.browsed:
        console.print("[dim]no browser opened: open the URL yourself[/]", highlight=False)


def _render_files(console: Console, view: NetronView) -> None:
    files = f"files: {shown(view.annotated)}"
    if view.neighbourhood:
        files += f", {shown(view.neighbourhood)}"
    console.print(f"[dim]{files}[/]", highlight=False, soft_wrap=True)
    console.print("Serving until Ctrl+C.", highlight=False)


def render_netron(console: Console, view: NetronView, report: Report) -> None:
    """Where Netron serves, and the exact names to paste into its find box."""
    _render_served(console, view, report.model)
    if report.findings:
        console.print(
            "In Netron press Ctrl+F and paste a name (the quotes ask for that exact name); "
            "the node's sidebar shows the finding under subgraft.*:",
            highlight=False,
        )
        for index, finding in enumerate(report.findings[:_MAX_ROWS]):
            console.print(
                plain(f"  #{index} {finding.kind:<15} {find_query(finding.node)}", None),
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
        if len(report.findings) > _MAX_ROWS:
            console.print(f"  ... {len(report.findings) - _MAX_ROWS} more in --json")
    _render_files(console, view)


# -- repair ------------------------------------------------------------------------------------


def repair_to_json(report: RepairReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)


def render_repair(console: Console, report: RepairReport) -> None:
    """Verdict, before/after table of changes, refusals, verification, what failed."""
    console.print(_repair_summary(report))
    if report.changes:
        table = Table(title="changes (before -> after)", title_justify="left")
        for column in ("#", "node", "op", "before", "after", "how"):
            table.add_column(column, overflow="fold")
        for change in report.changes[:_MAX_ROWS]:
            table.add_row(
                str(change.finding),
                shown(change.node),
                shown(change.op_type or "input"),
                shown(change.before),
                shown(change.after),
                shown(change.action),
            )
        if len(report.changes) > _MAX_ROWS:
            table.caption = f"{len(report.changes) - _MAX_ROWS} more in --json"
        console.print(table)
    reasons = {r.reason for r in report.refusals}
    if len(report.refusals) > 1 and len(reasons) == 1:  # one cause: say it once
        console.print(f"[red]all {len(report.refusals)} refused[/]: {shown(reasons.pop())}",
                      highlight=False)
    elif report.refusals:
        table = Table(title="refused (left as they were)", title_justify="left")
        for column in ("#", "kind", "node", "op", "why"):
            table.add_column(column, overflow="fold")
        for refusal in report.refusals:
            table.add_row(
                str(refusal.finding),
                refusal.kind,
                shown(refusal.node),
                shown(refusal.op_type or "input"),
                shown(refusal.reason),
            )
        console.print(table)
    if report.remaining:
        nodes = ", ".join(shown(f.node, 80) for f in report.remaining[:5])
        console.print(f"[red]still frozen after repair[/]: {len(report.remaining)}: {nodes}",
                      highlight=False)
    verification = report.verification
    if verification is not None:
        _render_verification(console, verification)
    for note in (*report.notes, *(verification.notes if verification else ())):
        console.print(f"[dim]note: {shown(note)}[/]", highlight=False)


def _repair_summary(report: RepairReport) -> str:
    where = "dry run, nothing written" if report.dry_run else \
        shown(report.output or "not written")
    head = (
        f"[bold]{shown(report.model)}[/] -> {where}: {len(report.findings)} finding(s), "
        f"{len(report.changes)} change(s), {len(report.refusals)} refused"
    )
    if not report.findings:
        return head + "\n[bold green]nothing to repair[/]"
    if report.ok:
        proof = "plan proved by re-check" if report.dry_run else "verified"
        return head + f"\n[bold green]repaired and {proof}[/]"
    reasons = []
    if report.refusals:
        reasons.append(f"{len(report.refusals)} finding(s) refused")
    if report.remaining:
        reasons.append(f"{len(report.remaining)} still frozen")
    if report.verification is not None and not report.verification.ok:
        reasons.append(f"{len(report.verification.failures)} check(s) failed")
    return head + f"\n[bold red]not repaired[/]: {', '.join(reasons)}"


def _render_verification(console: Console, verification: Verification) -> None:
    if verification.skipped:
        console.print(f"[yellow]not verified[/]: {shown(verification.skipped)}",
                      highlight=False)
        return
    for c in verification.compared:
        mark = "[green]same numbers[/]" if c.ok else "[red]CHANGED[/]"
        console.print(
            f"{mark} at {shown(c.label)} ({shown(c.output)}): max abs {c.max_abs:.2e}, "
            f"relative {c.max_rel:.2e}",
            highlight=False,
        )
    before, after = verification.before, verification.after
    if after is not None and not after.skipped:
        table = Table(title="onnxruntime before -> after repair", title_justify="left")
        shape = "sizes" if any(r.sizes for r in after.runs) else "batch x sequence"
        for column in (shape, "before", "after", "error after"):
            table.add_column(column, overflow="fold")
        was = {r.label: r for r in (before.runs if before else ())}
        for run in after.runs:
            old = was.get(run.label)
            table.add_row(
                shown(run.label),
                "-" if old is None else
                ("ok" if old.ok else shown(f"FAIL {old.node or ''}".strip())),
                "[green]ok[/]" if run.ok else "[red]FAIL[/]",
                shown(short_error(run.error)),
            )
        console.print(table)
        for run in after.invariance:
            diff = "-" if run.max_abs is None else f"{run.max_abs:.2e}"
            result = "[green]ok[/]" if run.ok else "[red]FAIL[/]"
            console.print(
                f"batch invariance {shown(run.label)} row {run.row}: {result} ({diff})",
                highlight=False,
            )
    for failure in verification.failures:
        console.print(f"[red]failed[/]: {shown(failure)}", highlight=False)


def compare_to_json(report: CompareReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str)


def render_compare(console: Console, report: CompareReport, limit: int = 10) -> None:
    """Verdict, the first divergence (module, nodes, source, cause), the modules that
    add the most error, and what could not be aligned."""
    runs = ", ".join(shown(r, 80) for r in report.runs)
    head = (f"[bold]{shown(report.model)}[/] against [bold]{shown(report.reference)}[/] on "
            f"{runs}: {len(report.modules)} module(s) aligned, {len(report.unaligned)} not "
            f"(atol {report.atol:g}, rtol {report.rtol:g})")
    console.print(head, highlight=False)
    first = report.first_divergence
    if first is None:
        worst = max((m.max_abs for m in report.modules), default=0.0)
        verdict = "[green]all aligned modules agree[/]" if report.ok else \
            "[yellow]modules differ, but none where its inputs agree[/]"
        console.print(f"{verdict} (largest max abs {worst:.3g})", highlight=False)
    else:
        inputs = "n/a" if first.input_max_abs is None else f"{first.input_max_abs:.3g}"
        console.print(f"[red]first divergence:[/] [bold]{shown(first.module or '(root)')}[/] "
                      f"({shown(first.module_class, 80)}): max abs {first.max_abs:.3g}, relative "
                      f"{first.relative:.3g}, cosine {first.cosine:.6f}; its inputs max abs "
                      f"{inputs}", highlight=False)
        for label, value in (("source", first.source), ("exported from", first.onnx_source),
                             ("cause", first.cause)):
            if value:
                console.print(f"  {label}: {shown(value)}", highlight=False)
        nodes = ", ".join(shown(n, 120) for n in first.onnx_nodes[:8])
        more = f" (+{len(first.onnx_nodes) - 8})" if len(first.onnx_nodes) > 8 else ""
        console.print(f"  onnx nodes: {nodes}{more}", highlight=False)
    differ = [m for m in report.ranked() if not m.agrees]
    table = Table(title=f"modules that differ, by the error each adds ({min(limit, len(differ))} "
                  f"of {len(differ)})", title_justify="left")
    table.add_column("module", overflow="fold", min_width=30, ratio=1)
    for column in ("class", "max abs", "cosine", "added", ""):
        table.add_column(column, overflow="fold")
    for diff in differ[:limit]:
        table.add_row(shown(diff.module or "(root)"), shown(diff.module_class, 80),
                      f"{diff.max_abs:.3g}", f"{diff.cosine:.6f}", f"{diff.added:.3g}",
                      "" if diff.agrees else "[red]differs[/]")
    if differ:
        console.print(table)
    if report.unaligned:
        names = ", ".join(shown(u.module or "(root)", 80) for u in report.unaligned[:6])
        more = f" (+{len(report.unaligned) - 6})" if len(report.unaligned) > 6 else ""
        console.print(f"[dim]not aligned: {names}{more} (--json gives each reason)[/]",
                      highlight=False)
    for note in report.notes:
        console.print(f"[dim]note: {shown(note)}[/]", highlight=False)
