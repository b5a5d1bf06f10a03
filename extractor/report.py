"""Render the extractor's results for people (rich) or scripts (JSON); nothing else prints.

Keys, paths, config values and names came from files: each goes through
`untrusted.shown` before rich sees it, so `[/]` or `[link=...]` in a name is shown
as written, never read as markup.
"""

from __future__ import annotations

import json
import math

from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from diagnostics.untrusted import shown

from .bench.peers import PYTORCH_FP32, Engine, comparisons
from .bench.speed import Timing
from .graft import GraftReport
from .parity import ParityReport
from .pipeline import HOW_TO_SUPPLY_TOKENIZER, ExtractionReport
from .resolve.architecture import attention_heads
from .resolve.model import KeyReport
from .resolve.prefixes import PrefixInfo
from .tiers.accuracy import TIERS, Agreement
from .tiers.corpus import Judgement
from .variants import Variant


def render_prefixes(console: Console, rows: list[PrefixInfo], location: str) -> None:
    """The prefix tree of `--list`: counts per prefix, encoders marked with their type."""
    tree = Tree(f"[bold]state dict[/] at {shown(location)}")
    nodes: dict[str, Tree] = {}
    for row in rows:
        parent = _parent(row.prefix, nodes)
        label = (
            f"[cyan]{shown(row.prefix)}[/]  {row.tensors} tensor{'s' * (row.tensors != 1)}, "
            f"{row.parameters:,} params, "
            f"{shown('/'.join(row.dtypes))}"
        )
        if row.architecture:
            label += f"  [bold green]<- {row.architecture} encoder[/]"
            if len(row.model_types) > 1:
                types = ", ".join(row.model_types[:2])
                more = f", +{len(row.model_types) - 2}" if len(row.model_types) > 2 else ""
                label += f" [dim]({types}{more})[/]"
        nodes[row.prefix] = (nodes[parent] if parent else tree).add(label)
    console.print(tree)


def _parent(prefix: str, nodes: dict[str, Tree]) -> str | None:
    parts = prefix.rstrip(".").split(".")
    for cut in range(len(parts) - 1, 0, -1):
        candidate = ".".join(parts[:cut]) + "."
        if candidate in nodes:
            return candidate
    return None


def render_keys(console: Console, keys: KeyReport) -> None:
    """One table of every missing, unexpected, mis-shaped and tolerated key."""
    rows = keys.rows()
    if not rows:
        return
    table = Table(title="weights vs fresh model", title_justify="left")
    table.add_column("status")
    table.add_column("key")
    table.add_column("detail")
    styles = {"tolerated": "yellow"}
    for status, key, detail in rows:
        table.add_row(f"[{styles.get(status, 'red')}]{status}[/]", shown(key), shown(detail))
    console.print(table)


def render_parity(console: Console, parity: ParityReport) -> None:
    table = Table(
        title=f"parity PyTorch vs onnxruntime (atol {parity.atol:g}, rtol {parity.rtol:g})",
        title_justify="left",
    )
    for column in ("case", "shape", "output", "max abs", "max rel", "result"):
        table.add_column(column, justify="right" if column.startswith("max") else "left")
    for r in parity.results:
        result = "[green]ok[/]" if r.ok else ("[red]ERROR[/]" if r.error else "[red]FAIL[/]")
        table.add_row(
            r.case, f"{r.batch}x{r.sequence}", shown(r.output), _num(r.max_abs), _num(r.max_rel),
            result,
        )
    console.print(table)
    # Runtime errors name the failing node: print them whole, one per shape.
    errors = {(r.case, r.batch, r.sequence): r.error for r in parity.results if r.error}
    for (case, batch, sequence), error in errors.items():
        console.print(
            f"[red]{case} {batch}x{sequence}:[/] {shown(error, None)}", soft_wrap=True,
            highlight=False,
        )


def _num(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2e}"


def render_extraction(console: Console, report: ExtractionReport) -> None:
    """Provenance, key table, parity table, then a one-line verdict."""
    _render_source(console, report)
    _render_config_changes(console, report)
    _render_provenance(console, report.provenance)
    _render_tokenizer_warning(console, report)
    _render_assumed_config(console, report)
    render_keys(console, report.keys)
    _render_export(console, report)
    render_parity(console, report.parity)
    _render_frozen(console, report)
    _render_variants(console, report)
    if report.ok:
        _render_written(console, report)
    else:
        _render_failed(console, report)


def _render_source(console: Console, report: ExtractionReport) -> None:
    """Where the state dict and the config came from, and what reading them noted."""
    config = report.config
    console.print(
        f"state dict: {shown(report.source['state_dict_location'])} "
        f"({report.source['format']}); prefix [cyan]{shown(repr(report.prefix))}[/], "
        f"{report.source['encoder_tensors']} tensors, "
        f"{report.source['encoder_parameters']:,} parameters"
    )
    heads = attention_heads(config.config)
    console.print(
        f"config: {config.config.model_type}"
        + (f" ({heads} attention heads)" if heads else "")
        + f" from {shown(config.source)}",
        soft_wrap=True,
    )
    for note in report.source.get("notes", ()):
        console.print(f"  note: {shown(note)}", soft_wrap=True)
    if report.source.get("stand_ins"):
        console.print(
            "  pickled classes read as data, none of their code run: "
            + shown(", ".join(report.source["stand_ins"])),
            soft_wrap=True,
        )


def _render_config_changes(console: Console, report: ExtractionReport) -> None:
    """Config values read from the weights, set by the user, and configs turned down."""
    config = report.config
    for line in config.adjusted:
        console.print(f"  adjusted: {shown(line)}")
    if config.overrides:
        console.print("  set by you: " + shown(", ".join(f"{k}={v}" for k, v in
                                                         config.overrides.items())))
    for reason in config.rejected:
        console.print(f"  [dim]rejected: {shown(reason)}[/]", soft_wrap=True)


def _render_tokenizer_warning(console: Console, report: ExtractionReport) -> None:
    if report.tokenizer.problem:
        console.print(
            f"[bold yellow]tokenizer files copied from {shown(report.tokenizer.directory, None)} "
            f"do not load ({shown(report.tokenizer.problem)}), so AutoTokenizer.from_pretrained "
            f"on the output raises; mend them there or supply one with "
            f"{shown(HOW_TO_SUPPLY_TOKENIZER)}[/]",
            soft_wrap=True,
        )
    if not report.tokenizer.found:
        console.print(
            "[bold yellow]no tokenizer written: no tokenizer files were found for this model, "
            "so AutoTokenizer.from_pretrained on the output raises; supply one with "
            f"{shown(HOW_TO_SUPPLY_TOKENIZER)}[/]",
            soft_wrap=True,
        )


def _render_assumed_config(console: Console, report: ExtractionReport) -> None:
    """With no config found: the transformers defaults the weights could not tell."""
    config = report.config
    if config.kind == "shapes":
        console.print(
            "[bold yellow]note: no config was found; sizes were read from the weights and you "
            "gave the rest. These defaults of transformers were relied on and cannot be read "
            "from the weights: "
            + shown(", ".join(f"{k}={v}" for k, v in config.assumed.items()))
            + ". Parity proves the export matches this model, not the original.[/]",
            soft_wrap=True,
        )


def _render_export(console: Console, report: ExtractionReport) -> None:
    export = report.export
    console.print(
        f"export: {export.exporter} exporter, opset {export.opset}, dummy "
        f"batch={export.dummy_batch} sequence={export.dummy_sequence}, inputs "
        f"{', '.join(export.input_names)}"
    )


def _render_frozen(console: Console, report: ExtractionReport) -> None:
    """The frozen-shape check of the export: its findings, or clean."""
    findings = report.frozen.findings
    if findings:
        console.print(
            f"[red]frozen shapes in the export[/] ({len(findings)}; see "
            f"python -m diagnostics check): "
            + ", ".join(f"{f.node} ({f.frozen_text})" for f in findings[:5]),
            soft_wrap=True,
        )
    else:
        console.print(
            f"frozen-shape check: clean ({report.frozen.nodes} nodes, dummy "
            f"{report.frozen.dummy} from {report.frozen.dummy_source})"
        )


def _render_variants(console: Console, report: ExtractionReport) -> None:
    """One line per file beside model.onnx, then which int8 file was chosen and why."""
    for variant in report.variants:
        console.print(_variant_line(variant), soft_wrap=True)
    if report.int8_choice:
        console.print(f"int8 chosen: {report.int8_choice['file']}: {report.int8_choice['why']}",
                      soft_wrap=True, highlight=False)
        if len(report.int8_choice.get("ms") or {}) > 1:
            # int8 kernels differ by instruction set (AVX2, VNNI, AMX): the winner here
            # need not win on the machine that serves the model.
            console.print("  [dim]serving on another CPU? time the files there: python -m "
                          f"extractor bench {shown(report.output, None)} --peers[/]",
                          soft_wrap=True, highlight=False)


def _render_written(console: Console, report: ExtractionReport) -> None:
    """The verdict of a run that passed: what was written, and how to graft it back."""
    seconds = sum(report.seconds.values())
    console.print(
        f"[bold green]ok[/] wrote {shown(report.output, None)} "
        f"({shown(', '.join(report.files), None)}) in {seconds:.1f} s"
    )
    attribute = report.prefix.rstrip(".") or "<encoder>"
    console.print(
        f"graft it back into your model (model.{shown(attribute)} then runs in "
        f"onnxruntime):\n    from extractor import graft\n"
        f"    graft(model, {shown(repr(attribute))}, {shown(repr(str(report.output)), None)})",
        highlight=False, soft_wrap=True,
    )
    if any(key == "pooler.*" for key, _ in report.keys.tolerated):
        console.print(  # the parent's module keeps its pooler: outputs[2] would move
            "  (exported without the checkpoint's pooler: a model whose encoder keeps one, "
            "as OneIE's BertModel does, needs it for its output positions; extract "
            "without --no-pooler for that)", highlight=False, soft_wrap=True)


def _render_failed(console: Console, report: ExtractionReport) -> None:
    """The verdict of a run that failed: what failed, and where the outputs were kept."""
    failed = report.parity.failures
    problems = (
        [f"{len(report.frozen.findings)} frozen shapes"] if report.frozen.findings else []
    )
    if failed:
        first = failed[0]
        problems.insert(
            0,
            f"{len(failed)} of {len(report.parity.results)} comparisons "
            f"(first: {shown(first.case)} {first.batch}x{first.sequence} {shown(first.output)})",
        )
    problems.extend(_divergence_text(report))
    kept = "; nothing written"
    if report.output:
        kept = (f"; kept for inspection in {shown(report.output, None)} (try python -m "
                f"diagnostics check {shown(report.output / 'model.onnx', None)} --probe)")
    console.print(f"[bold red]verification failed[/]: {'; '.join(problems)}{kept}",
                  soft_wrap=True)


def _divergence_text(report: ExtractionReport) -> list[str]:
    """Where the module-by-module comparison says the failure starts, or why it could not."""
    comparison = report.comparison
    if comparison is None:
        return []
    if comparison.error:
        return [f"module comparison could not run ({shown(comparison.error)})"]
    found = comparison.first_divergence
    if found is None:
        return ["module comparison found no single module where it starts"]
    cause = f", {shown(found['cause'])}" if found.get("cause") else ""
    return [f"first divergent module: {shown(found['module'] or '<root>')} "
            f"({shown(found['module_class'])}, max abs {found['max_abs']:.2g}{cause})"]


def _render_provenance(console: Console, provenance: dict) -> None:
    """Where config.json's values and the tokenizer files came from; loudly when that is
    outside the checkpoint's folder (a name in its config may point anywhere)."""
    if not provenance:
        return
    config = provenance.get("config", {})
    if config.get("file"):
        style = "bold yellow" if config.get("outside_checkpoint_folder") else "dim"
        console.print(f"  [{style}]config values read from {shown(config['file'], None)}"
                      + (" (outside the checkpoint's folder)" if config.get(
                          "outside_checkpoint_folder") else "") + "[/]", soft_wrap=True)
    copied = provenance.get("copied_from", {})
    folders: dict[str, list[str]] = {}
    for name, source in copied.items():
        folders.setdefault(str(source).rsplit("/", 1)[0], []).append(name)
    outside = set(provenance.get("outside_checkpoint_folder", ()))
    for folder, names in folders.items():
        away = bool(outside & set(names))
        style = "bold yellow" if away else "dim"
        console.print(f"  [{style}]tokenizer files {shown(', '.join(names))} copied from "
                      f"{shown(folder, None)}"
                      + (" (outside the checkpoint's folder)" if away else "") + "[/]",
                      soft_wrap=True)


def _variant_line(variant: Variant) -> str:
    verdict = "[green]ok[/]" if variant.ok else "[red]FAIL[/]"
    parts = []
    if variant.fused is not None:
        parts.append("fused " + ", ".join(f"{op} {n}" for op, n in variant.fused.fused.items()))
    if variant.parity is not None:
        worst = max((r.max_abs for r in variant.parity.results), default=float("nan"))
        parts.append(f"parity max abs {_num(worst)} at {len(variant.parity.results)} comparisons")
    if variant.agreement is not None:
        parts.append(_agreement_text(variant.agreement))
    if variant.judged is not None:
        parts.append(_judged_text(variant.judged))
    if variant.name in ("int8", "int8-static"):
        parts.append(f"query/key/value merged in {variant.merged_projections} layer(s); "
                     f"{len(variant.kept_fp32)} node(s) kept in fp32 for the gate")
    return f"{variant.name}: {variant.file}: " + "; ".join(parts) + f" {verdict}"


def _judged_text(judged: Judgement) -> str:
    """The worst of the batch compositions on text the search never saw."""
    shown_ = ", ".join(f"{name} {a.token_cosine_mean:.5f} / {a.sentence_cosine_mean:.5f}"
                       for name, a in judged.compositions.items())
    return (f"judged on unseen text in {', '.join(judged.languages)} "
            f"(tokens / sentences): {shown_}")


def _agreement_text(a: Agreement) -> str:
    if a.tier == "exact":
        return (f"{a.tier} tier: max abs {_num(a.max_abs)} (gate {a.gate['max_abs']}) on "
                f"{a.sentences} sentences")
    gate = a.gate
    return (f"{a.tier} tier, cosine to fp32 on {a.sentences} sentences: tokens "
            f"{a.token_cosine_mean:.5f} (gate {gate['token_cosine_mean']}), sentences "
            f"{a.sentence_cosine_mean:.5f} (gate {gate['sentence_cosine_mean']}), max abs "
            f"{_num(a.max_abs)}")


def render_graft(console: Console, report: GraftReport) -> None:
    """Each output of the parent: the original against the graft, worst over the batches."""
    table = Table(
        title=f"the model with its encoder vs with {report.file} grafted, {report.batches} "
        f"batch(es) (atol {report.atol:g}, rtol {report.rtol:g})",
        title_justify="left",
    )
    for column in ("output", "kind", "max abs", "max rel", "labels agree", "result"):
        table.add_column(column, justify="right" if column.startswith(("max", "labels")) else
                         "left")
    for r in report.results:
        agreement = "-" if r.agreement is None else f"{r.agreement:.2%}"
        table.add_row(shown(r.name), r.kind, _num(r.max_abs), _num(r.max_rel), agreement,
                      "[green]ok[/]" if r.ok else "[red]DIFFERS[/]")
    console.print(table)
    verdict = "[bold green]ok[/] the grafted model gives the same answers" if report.ok else (
        f"[bold red]differs[/]: {sum(not r.ok for r in report.results)} of "
        f"{len(report.results)} outputs")
    console.print(verdict)


def render_speed(console: Console, timings: list[Timing], threads: int) -> None:
    """Models as rows, shapes as columns: median ms and the speed-up over PyTorch eager, each
    with its quartiles; then the CPU and conditions, and every warning."""
    shapes = list(dict.fromkeys((t.batch, t.sequence) for t in timings))
    table = Table(title=f"median ms (quartiles), {threads} threads; x = speed-up over PyTorch "
                  "eager, same run (quartiles over the turns); ! = not to be trusted",
                  title_justify="left")
    table.add_column("model")
    for batch, sequence in shapes:
        table.add_column(f"{batch}x{sequence}", justify="right")
    cells: dict[str, dict[tuple[int, int], str]] = {}
    for t in timings:
        cells.setdefault(t.model, {})[(t.batch, t.sequence)] = _speed_cell(t)
    for model, row in cells.items():
        table.add_row(shown(model), *(row.get(shape, "-") for shape in shapes))
    console.print(table)
    _speed_notes(console, timings)


def render_peers(console: Console, engines: list[Engine], threads: int) -> None:
    """One table per accuracy tier: every engine's speed beside its accuracy on real text."""
    shapes = list(dict.fromkeys(shape for e in engines for shape in e.ms))
    base = next((e.ms for e in engines if e.name == PYTORCH_FP32), {})
    for tier in TIERS:
        rows = [e for e in engines if e.tier == tier]
        table = Table(title=f"{tier} tier: median ms (quartiles), {threads} threads; x = "
                      "speed-up over PyTorch fp32, same run (quartiles over the turns); ! = "
                      "not to be trusted; accuracy against PyTorch fp32 on the corpus's judging "
                      "part, the worst of its batch compositions (alone, padded, longest)",
                      title_justify="left")
        for column in ("engine", *(f"{b}x{s}" for b, s in shapes), "token cos", "sentence cos",
                       "max abs", "gate"):
            table.add_column(column, justify="left" if column == "engine" else "right")
        for e in rows:
            name = ("[bold]subgraft[/] " if e.ours else "") + e.name
            if e.unavailable or e.agreement is None:
                table.add_row(name, f"[dim]{shown(e.unavailable or 'not measured')}[/]")
                continue
            cells = [_speed_cell(e.timings[s]) if s in e.timings else
                     f"{e.ms[s]:.1f} ({base[s] / e.ms[s]:.2f}x)" if s in e.ms else "-"
                     for s in shapes]
            a = e.agreement
            table.add_row(name, *cells, f"{a.token_cosine_mean:.5f}",
                          f"{a.sentence_cosine_mean:.6f}", _num(a.max_abs),
                          "[green]meets[/]" if a.ok else "[red]misses[/]")
        console.print(table)
        for line in comparisons(engines, tier):
            console.print(f"  {line}", highlight=False)
    _speed_notes(console, [t for e in engines for t in e.timings.values()])


def _speed_cell(t: Timing) -> str:
    """`ms (p25-p75)` over `speed-up x (p25-p75)`, marked ! when a warning concerns it."""
    mark = " [bold yellow]![/]" if t.warnings else ""
    return (f"{t.ms:.1f} ({t.ms_p25:.1f}-{t.ms_p75:.1f})\n"
            f"{t.speedup:.2f}x ({t.speedup_p25:.2f}-{t.speedup_p75:.2f}){mark}")


def _speed_notes(console: Console, timings: list[Timing]) -> None:
    """Where the figures came from (CPU, cores, load, thread waiting), then each warning once."""
    conditions = next((t.conditions for t in timings if t.conditions), None)
    if conditions:
        others = conditions.get("other_processes_cores")
        console.print(
            f"CPU: {shown(conditions['cpu'])} ({', '.join(conditions['cpu_flags']) or 'no'} "
            f"int8-relevant flags), {conditions['cores']} cores, {conditions['threads']} "
            f"threads; other processes' busy cores while timing: "
            f"{'not measured' if others is None else others}, 1-min load average "
            f"{conditions['load_average_before']} before, {conditions['load_average_after']} "
            f"after; idle threads: {shown(conditions['thread_wait'])}",
            soft_wrap=True, highlight=False)
    warnings = list(dict.fromkeys([*(conditions or {}).get("warnings", ()),
                                   *(w for t in timings for w in t.warnings)]))
    for warning in warnings:
        console.print(f"[bold yellow]warning:[/] {shown(warning)}", soft_wrap=True,
                      highlight=False)
    if warnings:
        console.print("[bold yellow]the figures marked ! are noise as much as speed: time "
                      "them again on a quieter machine[/]", soft_wrap=True)


def to_json(data: object) -> str:
    return json.dumps(data, indent=2, default=str)
