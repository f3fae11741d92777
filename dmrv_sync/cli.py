"""`dmrv-sync`: the command line. Each command is a thin shell over a library call."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from sqlalchemy.engine import make_url

from dmrv_sync.settings import get_settings


def _database_url() -> str:
    return get_settings().database_url


def _display_url(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


@click.group(help="Sync a biochar supplier's DMRV records to carbon registries (Isometric first).")
def main() -> None:
    pass


@main.group(help="The DMRV database schema.")
def db() -> None:
    pass


@db.command("upgrade", help="Apply the schema migrations (a no-op when already up to date).")
def db_upgrade() -> None:
    from dmrv_sync.db.migrate import upgrade

    url = _database_url()
    before, after = upgrade(url)
    if before == after:
        click.echo(f"{_display_url(url)}: already at revision {after}, nothing to do")
    else:
        click.echo(f"{_display_url(url)}: upgraded from {before or 'an empty database'} to {after}")


@db.command("current", help="Show the schema revision of the database.")
def db_current() -> None:
    from dmrv_sync.db.migrate import current_revision, head_revision

    url = _database_url()
    current = current_revision(url)
    click.echo(f"{_display_url(url)}: revision {current or 'none'} (head is {head_revision()})")


@main.group(help="Demo data for the embedded default.")
def demo() -> None:
    pass


@demo.command("seed", help="Write realistic demo records (N applications and what they stand on).")
@click.option(
    "--scale", type=click.IntRange(min=1), default=100, show_default=True, help="Applications to create."
)
@click.option("--seed", "random_seed", type=int, default=42, show_default=True, help="Random seed.")
def demo_seed(scale: int, random_seed: int) -> None:
    from dmrv_sync.db.session import get_session_factory
    from dmrv_sync.demo.seed import seed_demo_data

    _require_schema()
    report = seed_demo_data(get_session_factory(_database_url()), scale=scale, seed=random_seed)
    click.echo("seeded: " + ", ".join(f"{count} {kind}" for kind, count in report.counts.items()))
    if report.invalid:
        click.echo(f"{len(report.invalid)} records are invalid on purpose (validation will block them):")
        for record in report.invalid:
            click.echo(f"  {record.entity_type} {record.entity_id}: {record.problem}")


@main.command(
    "status",
    help="Where the local records stand in each registry (synced, in progress, error, not started), then "
    "the registry objects per external type and sync status.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"<registry>": {"<type>": {"<status>": n}}}.')
def status(as_json: bool) -> None:
    from sqlalchemy import func, select

    from dmrv_sync.db.models import ENTITY_MODELS
    from dmrv_sync.db.session import get_session_factory
    from dmrv_sync.identity import IdentityService
    from dmrv_sync.registries.catalog import REGISTRY_ENTITIES

    _require_schema()
    sessions = get_session_factory(_database_url())
    identities = IdentityService(sessions)
    stats = identities.get_registry_sync_stats()
    if as_json:
        click.echo(json.dumps(stats, indent=2, sort_keys=True))
        return
    with sessions() as session:
        records = {
            name: session.scalar(select(func.count()).select_from(model)) or 0
            for name, model in ENTITY_MODELS.items()
        }
    steps = {
        (registry, entity_type): len(spec.steps)
        for registry, entities in REGISTRY_ENTITIES.items()
        for entity_type, spec in entities.items()
    }
    progress = identities.get_entity_progress(steps)
    states = ["synced", "in progress", "unknown", "error", "drifted"]
    rows = []
    for registry, entity_type in steps:
        counts = progress.get((registry, entity_type), {})
        started = sum(counts.values())
        total = records.get(entity_type, 0)
        rows.append(
            [
                registry,
                entity_type,
                str(total),
                *[str(counts.get(s, 0)) for s in states],
                str(total - started),
            ]
        )
    _table(["registry", "local records", "total", *states, "not started"], rows)
    click.echo("(not started: not ready yet — e.g. a draft — or not picked up by a sensor or sync yet)")
    click.echo()
    if not stats:
        click.echo("no registry objects yet: nothing has been synced (run a sync, or start the demo)")
        return
    statuses = sorted({s for types in stats.values() for counts in types.values() for s in counts})
    _table(
        ["registry", "external type", *statuses, "total"],
        [
            [registry, external_type, *[str(counts.get(s, 0)) for s in statuses], str(sum(counts.values()))]
            for registry, types in sorted(stats.items())
            for external_type, counts in sorted(types.items())
        ],
    )


def _table(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, ["-" * w for w in widths], *rows]:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@main.command(
    "up",
    help="Start everything on the embedded defaults: the local registry emulator, the SQLite database "
    "with demo data, and Dagster (UI and daemon, sensors on). Ctrl-C stops it all.",
)
@click.option(
    "--scale", type=click.IntRange(min=1), default=200, show_default=True, help="Demo applications."
)
@click.option("--emulator-port", type=int, default=8765, show_default=True)
@click.option("--dagster-port", type=int, default=3000, show_default=True)
@click.option(
    "--auto-verify-after",
    type=float,
    default=90,
    show_default=True,
    help="Seconds after which the emulator verifies a submitted GHG statement (and issues its credits).",
)
def up(scale: int, emulator_port: int, dagster_port: int, auto_verify_after: float) -> None:
    import signal as signals

    from sqlalchemy import func, select

    from dmrv_sync.db.migrate import upgrade
    from dmrv_sync.db.models import Facility
    from dmrv_sync.db.session import get_session_factory
    from dmrv_sync.demo.link import link_demo
    from dmrv_sync.local_stack import LocalStack, StackError

    settings = get_settings()
    stack = LocalStack(
        settings,
        emulator_port=emulator_port,
        dagster_port=dagster_port,
        auto_verify_after=auto_verify_after,
    )
    # Ctrl-C, and SIGTERM from CI or a process manager, stop the stack the same way (installed
    # explicitly: a shell may start background jobs with SIGINT ignored).
    signals.signal(signals.SIGINT, _interrupt)
    signals.signal(signals.SIGTERM, _interrupt)
    try:
        emulator_url = stack.start_emulator()
        click.echo(f"registry emulator: {emulator_url} (state in {stack.data_dir / 'emulator.sqlite3'})")
        env = stack.environment(emulator_url)
        settings = settings.model_copy(update={"isometric_base_url": emulator_url})
        url = settings.database_url
        upgrade(url)
        click.echo(f"database: {_display_url(url)} (schema up to date)")
        with get_session_factory(url)() as session:
            has_data = bool(session.scalar(select(func.count()).select_from(Facility)))
        if has_data:
            click.echo("demo data: already seeded")
        else:
            click.get_current_context().invoke(demo_seed, scale=scale, random_seed=42)
        link_demo(settings)
        click.echo("demo facilities linked and feedstock types created in the emulator")
        dagster = stack.start_dagster(env)
        click.echo(
            f"Dagster: http://127.0.0.1:{dagster_port} (sensors push records every "
            f"{env['DMRV_SENSOR_INTERVAL_SECONDS']} s; `dmrv-sync status` shows progress). Ctrl-C stops everything."
        )
        dagster.wait()
        raise click.ClickException(f"dagster dev exited with code {dagster.returncode}")
    except KeyboardInterrupt:
        click.echo("stopping ...")
    except StackError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        stack.stop()
        click.echo("stopped: emulator and Dagster are down")


@main.group(help="Send records to the registry.")
def sync() -> None:
    pass


def _print_report(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in report.results], indent=2, default=str))
        return
    counts = report.counts()
    if not counts:
        click.echo("nothing to sync")
    for entity_type, by_status in counts.items():
        click.echo(f"{entity_type}: " + ", ".join(f"{n} {status}" for status, n in sorted(by_status.items())))
    failed = report.failed
    if failed:
        click.echo(f"\n{len(failed)} not synced:")
        for result in failed[:50]:
            click.echo(f"  [{result.status}] {result.message}")
        if len(failed) > 50:
            click.echo(f"  ... and {len(failed) - 50} more (--json lists them all)")


@sync.command(
    "pending", help="Sync every ready record not yet in the registry (or changed since), parents first."
)
@click.option("--json", "as_json", is_flag=True, help="Print each entity's result as JSON.")
def sync_pending(as_json: bool) -> None:
    from dmrv_sync import api

    _require_schema()
    report = api.sync_all_pending()
    _print_report(report, as_json)


@sync.command(
    "failed",
    help="Retry every record with a failed or unsettled step (unknown outcomes are looked up first).",
)
@click.option("--json", "as_json", is_flag=True, help="Print each entity's result as JSON.")
def sync_failed(as_json: bool) -> None:
    from dmrv_sync import api

    _require_schema()
    _print_report(api.retry_all_failed(), as_json)


@main.command(
    "confirm", help="Pull GHG statement verdicts into the local credit batches (with lineage rows)."
)
def confirm() -> None:
    from dmrv_sync import api

    _require_schema()
    results = api.confirm_ghg_statements()
    changed = [r for r in results if r.changed]
    click.echo(f"{len(results)} statements read, {len(changed)} credit batches updated")
    for result in changed:
        fields = ", ".join(f"{f}: {_plain(old)} -> {_plain(new)}" for f, (old, new) in result.changed.items())
        click.echo(f"  credit_batch {result.entity_id}: {fields}")
    for result in results:
        if result.error:
            click.echo(f"  ERROR {result.error}")


def _plain(value: Any) -> str:
    return str(getattr(value, "value", value))


@main.command("plan", help="Show exactly what a sync would send for one record, without sending anything.")
@click.argument(
    "entity_type",
    type=click.Choice(["facility", "feedstock_type", "production_run", "application", "credit_batch"]),
)
@click.argument("entity_id")
def plan(entity_type: str, entity_id: str) -> None:
    from dmrv_sync import api

    _require_schema()
    try:
        click.echo(json.dumps(api.plan(entity_type, entity_id), indent=2, default=str))
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None


@main.group(help="Link local records to objects created in the registry's web app.")
def link() -> None:
    pass


@link.command("facility", help="Link a local facility to its registry facility (Isometric: fcl_...).")
@click.argument("facility_id")
@click.argument("external_id")
@click.option("--relink", is_flag=True, help="Replace an existing link.")
def link_facility(facility_id: str, external_id: str, relink: bool) -> None:
    from dmrv_sync import api

    _require_schema()
    try:
        click.echo(api.link_facility(facility_id, external_id, relink=relink))
    except api.UserError as exc:
        raise click.ClickException(str(exc)) from None


@demo.command("link", help="Against the local emulator: link every facility and create the feedstock types.")
def demo_link() -> None:
    from dmrv_sync.demo.link import link_demo

    _require_schema()
    try:
        done = link_demo(get_settings())
    except (RuntimeError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for line in done:
        click.echo(line)


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _require_schema() -> None:
    from dmrv_sync.db.migrate import current_revision, head_revision

    url = _database_url()
    current = current_revision(url)
    if current != head_revision():
        raise click.ClickException(
            f"the database at {_display_url(url)} is at revision {current or 'none'}, not {head_revision()}: "
            "run `dmrv-sync db upgrade` first"
        )


def _register_optional_commands() -> None:
    # Commands owned by other packages register here, so `dmrv-sync --help` lists them all.
    try:
        from dmrv_sync.emulator.cli import emulator
    except ImportError:
        return
    main.add_command(emulator)


_register_optional_commands()

if __name__ == "__main__":
    sys.exit(main())
