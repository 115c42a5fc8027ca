"""Findings for people (text), machines (json), code scanning (SARIF 2.1.0) and GitHub Actions."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rich.text import Text

from advisor import __version__
from advisor.output import fmt_source, fmt_value
from advisor.safeio import clip_path

if TYPE_CHECKING:  # renderers read the result's shape; they sit beside validate, not above it
    from rich.console import Console

    from advisor.validate import FileReport, ValidationRun

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
SARIF_LEVEL = {"error": "error", "warning": "warning", "info": "note"}
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"  # the uriBaseId GitHub code scanning resolves against the repository's checkout


def _under_cwd(path: Path) -> PurePath | None:
    """``path`` relative to the working directory (the repository root in CI), or None outside it.
    Compared as given first, then with links resolved: a shell's $PWD may name the directory
    through a link that os.getcwd() does not."""
    cwd = Path.cwd()
    for where, root in ((Path(os.path.abspath(path)), cwd), (path.resolve(), cwd.resolve())):
        if where.is_relative_to(root):
            return where.relative_to(root)
    return None


def _annotated_path(path: Path) -> str:
    """The file a GitHub annotation names: relative to the repository root, else absolute."""
    rel = _under_cwd(path)
    return rel.as_posix() if rel is not None else os.path.abspath(path)


def _artifact_location(path: Path) -> dict[str, str]:
    """SARIF 2.1.0 §3.4: a relative reference carries its uriBaseId; an absolute URI must not."""
    rel = _under_cwd(path)
    if rel is None:
        return {"uri": Path(os.path.abspath(path)).as_uri()}
    return {"uri": quote(rel.as_posix()), "uriBaseId": SRCROOT}


def _where(report: FileReport, line: int | None) -> str:
    return f"{report.path}:{line}" if line else str(report.path)


def render_text(run: ValidationRun, console: Console) -> None:
    reports = run.reports
    totals = {"error": 0, "warning": 0, "info": 0}
    for report in reports:
        if report.error:
            console.print(Text(f"{report.path}: ", style="bold") + Text(f"cannot check: {report.error}", style="bold red"))
            continue
        assert report.config is not None
        cfg = report.config
        job = {name: report.job.get(name, getattr(cfg, name)) for name in ("model", "method", "peft")}
        shown = {name: clip_path(v.value) if v is not None else "?" for name, v in job.items()}
        variant = f", variant {report.variant}" if report.variant else ""
        header = (f"{report.path}: {cfg.format} config, model {shown['model']}, method {shown['method']}{variant}, "
                  f"{shown['peft']}")
        console.print(Text(header, style="bold"))
        if not report.findings:
            console.print("  no findings" + (f" ({report.silenced} silenced)" if report.silenced else ""))
        for f in report.findings:
            totals[f.severity] += 1
            line = Text(f"  {_where(report, f.line)}: ")
            line += Text(f"{f.code} {f.severity}", style=SEVERITY_STYLE[f.severity])
            line += Text(f" [{f.key}] {f.message}")
            console.print(line, highlight=False)
            own = [fmt_value(f.fix)] if (f.code, f.parameter) in report.writes else []
            parts = [*own, *(f"{name} {fmt_value(value)}" for name, value in f.also)]
            fix = (f"; --fix writes {', '.join(parts)}" if f.has_fix and parts
                   else f"; --fix renames it {f.rename}" if f.rename else "")
            console.print(Text(f"      expected: {f.expected}{fix} ({f.rule})", style="dim"), highlight=False)
    bad = sum(1 for r in reports if r.error)
    console.print(f"{len(reports)} file(s): {totals['error']} error(s), {totals['warning']} warning(s), "
                  f"{totals['info']} info" + (f"; {bad} could not be checked" if bad else ""), highlight=False)


def to_json(run: ValidationRun) -> str:
    reports = run.reports
    files = []
    for r in reports:
        files.append({
            "path": str(r.path),
            "error": r.error,
            "config": r.config.as_dict() if r.config else None,
            "findings": [f.as_dict() for f in r.findings],
            "silenced": r.silenced,
        })
    summary = {s: sum(1 for r in reports for f in r.findings if f.severity == s) for s in ("error", "warning", "info")}
    return json.dumps({"advisor_version": __version__, "files": files,
                       "summary": {**summary, "unreadable": sum(1 for r in reports if r.error)}}, indent=2) + "\n"


def to_github(run: ValidationRun) -> str:
    """GitHub Actions workflow commands: one annotation per finding."""
    reports = run.reports
    def esc(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def esc_prop(text: str) -> str:
        return esc(text).replace(":", "%3A").replace(",", "%2C")

    out = []
    for r in reports:
        if r.error:
            out.append(f"::error file={esc_prop(_annotated_path(r.path))},title=advisor::{esc(r.error)}")
            continue
        for f in r.findings:
            level = {"error": "error", "warning": "warning", "info": "notice"}[f.severity]
            line = f",line={f.line}" if f.line else ""
            out.append(f"::{level} file={esc_prop(_annotated_path(r.path))}{line},title={esc_prop(f.code + ' ' + f.rule)}::"
                       f"{esc(f.message + '. Expected: ' + f.expected)}")
    return "\n".join(out) + ("\n" if out else "")


def to_sarif(run: ValidationRun) -> str:
    reports, book = run.reports, run.book
    checks = sorted((r for r in book.rules.values() if r.kind == "check"), key=lambda r: r.code)
    index = {r.code: i for i, r in enumerate(checks)}
    rules: list[dict[str, Any]] = []
    for r in checks:
        sources = "; ".join(fmt_source(s) for s in r.sources)
        rules.append({
            "id": r.code,
            "name": r.id,
            "shortDescription": {"text": r.summary},
            "fullDescription": {"text": r.why or r.summary},
            "help": {"text": f"{r.summary}. {r.why} Source: {sources}. Run `advisor rules show {r.code}`.".replace("  ", " ")},
            "defaultConfiguration": {"level": SARIF_LEVEL[r.severity]},
            "properties": {"confidence": r.confidence, "parameter": r.parameter},
        })
    results: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    for rep in reports:
        artifact = _artifact_location(rep.path)
        if rep.error:
            notifications.append({"level": "error", "message": {"text": rep.error},
                                  "locations": [{"physicalLocation": {"artifactLocation": artifact}}]})
            continue
        for f in rep.findings:
            location: dict[str, Any] = {"artifactLocation": artifact}
            if f.line:
                location["region"] = {"startLine": f.line}
            result: dict[str, Any] = {
                "ruleId": f.code,
                "ruleIndex": index[f.code],
                "level": SARIF_LEVEL[f.severity],
                "message": {"text": f"{f.message}. Expected: {f.expected}"},
                "locations": [{"physicalLocation": location}],
                "properties": {"key": f.key, "rule": f.rule},
            }
            if f.has_fix:
                result["properties"]["fix"] = f.fix
                if f.also:
                    result["properties"]["fix_also"] = dict(f.also)
            if f.rename:
                result["properties"]["fix_rename"] = f.rename
            results.append(result)
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "advisor", "version": __version__, "rules": rules}},
            # No uri for the base (§3.14.14 lets it be absent): this machine's directory would make the
            # file differ by checkout and name the runner's home; code scanning supplies the checkout.
            "originalUriBaseIds": {SRCROOT: {"description": {
                "text": "The directory advisor ran in; run it from the repository root."}}},
            "invocations": [{"executionSuccessful": not notifications,
                             "toolExecutionNotifications": notifications}],
            "results": results,
        }],
    }
    return json.dumps(sarif, indent=2) + "\n"
