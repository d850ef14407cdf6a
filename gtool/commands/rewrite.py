"""rewrite and lint: thin shells over gtool.rewrite and gtool.lint."""

from __future__ import annotations

import sys

import click

from .. import report
from ..errors import EXIT_FAILED, EXIT_OK, UsageError
from ..validate import expand_paths
from .common import format_option, load_graph, plugin_option


def _list_rules(fmt: str) -> None:
    from ..rewrite.rules import EXPANSIONS, RULES

    rules = [r.describe() for r in RULES + EXPANSIONS]
    if fmt == "json":
        click.echo(report.dumps({"rules": rules}))
        return
    click.echo(report.table(["rule", "kind", "identity"], [[r["name"], r["kind"], r["identity"]] for r in rules]))
    click.echo("\nexamples (before -> after):")
    for r in rules:
        click.echo(f"  {r['name']}: {r['before']}  ->  {r['after']}".replace("\n", "; "))


@click.command()
@click.argument("path", metavar="FILE", required=False)
@click.option("--rules", "rule_names", metavar="A,B", help="Apply only these rules (see --list).")
@click.option("--all", "all_rules", is_flag=True, help="Apply every rule (the default).")
@click.option("-o", "--output", "out_path", metavar="OUT", help="Write the rewritten graph (.yaml, .yml or .json).")
@click.option("--in-place", is_flag=True, help="Overwrite FILE with the rewritten graph.")
@click.option("--verify", is_flag=True, help="Check each rewrite on random and extreme inputs against a "
              "high-precision reference; exit 1 if one breaks its contract.")
@click.option("--expand", is_flag=True, help="After the rewrites, lower logsumexp to m + log(sum(exp(x - m))).")
@click.option("--list", "list_rules", is_flag=True, help="List the rules with their identities and exit.")
@click.option("--samples", type=click.IntRange(1, 100_000), default=200, show_default=True,
              help="--verify: random samples, and as many extreme ones, per rewrite.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True, help="--verify: seed of the samples.")
@click.option("--reference", type=click.Choice(["auto", "mpmath", "longdouble"]), default="auto", show_default=True,
              help="--verify: the high-precision reference for float64 graphs (auto: mpmath when installed).")
@format_option()
@plugin_option
def rewrite(path, rule_names, all_rules, out_path, in_place, verify, expand, list_rules, samples, seed, reference, fmt):
    """Replace unstable subgraphs with stable ones (and simplify), to a fixed point.

    Prints what fired where; -o writes the result (never over FILE unless --in-place).
    """
    from ..format.write import save_graph
    from ..rewrite import rewrite as run_rewrite
    from ..rewrite import select_rules
    from ..rewrite import verify as run_verify

    if list_rules:
        _list_rules(fmt)
        return
    if path is None:
        raise UsageError("usage", "rewrite needs a FILE (or --list)")
    if rule_names and all_rules:
        raise UsageError("usage", "--rules and --all exclude each other")
    if in_place and out_path:
        raise UsageError("usage", "-o and --in-place exclude each other")
    if reference == "mpmath":
        from ..rewrite.reference import have_mpmath

        if not have_mpmath():
            raise UsageError("usage", "--reference mpmath needs mpmath", hint="pip install gtool[precision]")
    rules = select_rules(rule_names)
    graph = load_graph(path)
    result = run_rewrite(graph, rules, expand=expand, record=verify)
    target = path if in_place else out_path
    if in_place and not result.applied:
        target = None  # nothing changed: keep the user's file as written (comments, shorthand)
    if target:
        save_graph(result.graph, target, protect=() if in_place else (path,))
    checks = run_verify(result.applied, samples=samples, extreme_samples=samples, seed=seed, reference=reference) \
        if verify else []
    failed = [c for c in checks if not c.passed]
    if fmt == "json":
        click.echo(report.dumps({"output": target, "applied": [a.to_json() for a in result.applied],
                                 "verify": [c.to_json() for c in checks]}))
    else:
        _print_text(path, result.applied, checks, target)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


def _print_text(path, applied, checks, target) -> None:
    if not applied:
        click.echo(f"{path}: no rule fired" + ("" if target else "; nothing written"))
    else:
        click.echo(f"{path}: {len(applied)} rewrite{'s' * (len(applied) != 1)}")
        rows = [[f"{a.path or path}:{a.line}" if a.line else (a.path or path), a.rule,
                 a.node if a.owner == a.node else f"{a.owner} ({a.node})"] for a in applied]
        click.echo(report.table(["where", "rule", "node"], rows))
    for c in checks:
        click.echo(("ok      " if c.passed else "FAILED  ") + c.message)
    if target:
        click.echo(f"wrote {target}", err=True)


@click.command()
@click.argument("paths", nargs=-1, required=True, metavar="FILE_OR_DIR...")
@click.option("--fail-on", type=click.Choice(["error", "warning", "never"]), default="error", show_default=True,
              help="Exit 1 when a finding is at least this severe.")
@format_option("text", "json", "github", "sarif")
@plugin_option
def lint(paths, fail_on, fmt):
    """Find unstable numerics: patterns a rewrite fixes, and overflow, log of <= 0 or division
    by 0 that the declared ranges allow (error) or cannot rule out (warning).

    --format sarif prints SARIF 2.1.0 for GitHub code scanning (see docs/ci.md)."""
    from ..lint import lint_file

    reports = [lint_file(p) for p in expand_paths(paths)]
    if fmt == "json":
        click.echo(report.dumps({"files": [r.to_json() for r in reports]}))
    elif fmt == "sarif":
        from .. import __version__

        items = [(r.path, f.diag, {"rewrite": f.rule} if f.rule else {}) for r in reports for f in r.findings]
        click.echo(report.dumps(report.sarif(items, __version__)))
    elif fmt == "github":
        for r in reports:
            for f in r.findings:
                click.echo(report.github(f.diag))
    else:
        for r in reports:
            for f in r.findings:
                click.echo(f.diag.format() + (f"\n    rule: {f.rule}" if f.rule else ""))
        n_err = sum(f.diag.severity == "error" for r in reports for f in r.findings)
        n_warn = sum(f.diag.severity == "warning" for r in reports for f in r.findings)
        safe = sum(r.proven_safe for r in reports)
        click.echo(f"{len(reports)} file{'s' * (len(reports) != 1)}: {n_err} error{'s' * (n_err != 1)}, "
                   f"{n_warn} warning{'s' * (n_warn != 1)}, {safe} hazard site{'s' * (safe != 1)} proven safe "
                   "by the declared ranges", err=True)
    threshold = {"error": 2, "warning": 1, "never": 99}[fail_on]
    worst = max((r.worst() for r in reports), default=0)
    sys.exit(EXIT_FAILED if worst >= threshold else EXIT_OK)


COMMANDS = [rewrite, lint]
