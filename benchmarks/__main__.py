"""`python -m benchmarks` (and `make bench`): run the suite, write results/latest.{json,md,png}, print the tables."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from benchmarks.generators import KINDS
from benchmarks.report import render_markdown, write_outputs
from benchmarks.suite import DEFAULT_SIZES, LARGE_SIZE, RESULTS_DIR, Options, run_suite


def _numbers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated row counts, got {text!r}") from None


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown or not kinds:
        raise click.BadParameter(f"unknown kinds {unknown}; choose from {', '.join(KINDS)}")
    return kinds


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES), show_default=True, help="Rows per request.")
@click.option("--kinds", default=",".join(KINDS), show_default=True, help="Import kinds, comma-separated.")
@click.option("--large", is_flag=True, help=f"Add {LARGE_SIZE:,} rows to the sizes (about 1 GB of JSON for inventory).")
@click.option("--tiny", is_flag=True, help="A smoke run: 200 rows, peers and small jobs on a handful of rows.")
@click.option("--skip-peers", is_flag=True, help="Leave out the per-row importer and dlt.")
@click.option("--skip-end-to-end", is_flag=True, help="Leave out the service over HTTP (stages, floor and peers only).")
@click.option("--skip-concurrency", is_flag=True, help="Leave out the fairness and worker-scaling runs.")
@click.option(
    "--fairness-rows",
    type=click.IntRange(1),
    default=Options.fairness_rows,
    show_default=True,
    help="Rows of the large job of the fairness run (10,000,000 with --large).",
)
@click.option("--scaling-workers", default="1,2,4", show_default=True, help="Worker counts of the scaling run.")
@click.option(
    "--scaling-jobs",
    type=click.IntRange(1),
    default=Options.scaling_jobs,
    show_default=True,
    help="Small jobs per organization (ten of them) in the scaling run.",
)
@click.option(
    "--large-warehouse-rows",
    type=click.IntRange(0),
    default=Options.large_warehouse_rows,
    show_default=True,
    help="Inventory rows in the warehouse before the last run's small jobs of ten organizations (0: no run).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS_DIR, show_default=True)
@click.option("--seed", type=int, default=Options.seed, show_default=True)
@click.option("--bad-share", type=click.FloatRange(0, 1), default=Options.bad_share, show_default=True)
@click.option("--existing-share", type=click.FloatRange(0, 1), default=Options.existing_share, show_default=True)
@click.option("--per-row-sample", type=click.IntRange(1), default=Options.per_row_sample, show_default=True)
@click.option("--dlt-sample", type=click.IntRange(1), default=Options.dlt_sample, show_default=True)
@click.option("--stream-jobs", type=click.IntRange(1), default=Options.stream_jobs, show_default=True)
@click.option("--stream-rows", type=click.IntRange(1), default=Options.stream_rows, show_default=True)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Scratch space for bodies and warehouses [default: the system temporary directory].",
)
def main(
    sizes: str,
    kinds: str,
    large: bool,
    tiny: bool,
    skip_peers: bool,
    skip_end_to_end: bool,
    skip_concurrency: bool,
    fairness_rows: int,
    scaling_workers: str,
    scaling_jobs: int,
    large_warehouse_rows: int,
    out: Path,
    seed: int,
    bad_share: float,
    existing_share: float,
    per_row_sample: int,
    dlt_sample: int,
    stream_jobs: int,
    stream_rows: int,
    work_dir: Path | None,
) -> None:
    """Benchmark Stockyard stage by stage and end to end, against its floor and its peers."""
    options = Options(
        sizes=_numbers(sizes) + ((LARGE_SIZE,) if large else ()),
        kinds=_kinds(kinds),
        seed=seed,
        bad_share=bad_share,
        existing_share=existing_share,
        peers=not skip_peers,
        end_to_end=not skip_end_to_end,
        per_row_sample=per_row_sample,
        dlt_sample=dlt_sample,
        stream_jobs=stream_jobs,
        stream_rows=stream_rows,
        work_dir=work_dir,
        concurrency=not skip_concurrency and not skip_end_to_end,
        fairness_rows=10_000_000 if large and fairness_rows == Options.fairness_rows else fairness_rows,
        scaling_workers=_numbers(scaling_workers),
        scaling_jobs=scaling_jobs,
        large_warehouse_rows=large_warehouse_rows,
    )
    if tiny:
        options = replace(
            options,
            sizes=(200,),
            per_row_sample=50,
            dlt_sample=100,
            stream_jobs=3,
            stream_rows=100,
            fairness_rows=2_000,
            scaling_workers=(1, 2),
            scaling_jobs=1,
            large_warehouse_rows=1_000,
            large_warehouse_jobs=1,
            small_staging_rounds=2,
            apply_rounds=1,
        )
    results = run_suite(options)
    paths = write_outputs(results, out)
    click.echo(render_markdown(results))
    click.echo("Wrote " + ", ".join(str(path) for path in paths.values()))


if __name__ == "__main__":
    main()
