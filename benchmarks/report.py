"""Results: ratios, the issue's targets, and the three outputs (JSON, Markdown, PNG chart).

Everything here works on the plain results dictionary the suite builds (the JSON file's content),
so a saved latest.json can be rendered again without re-running anything.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.breakdown import STAGES
from benchmarks.measure import ratio

Results = dict[str, Any]
Run = dict[str, Any]

SQL_PEERS = ("SQL MERGE INTO", "SQL DELETE+INSERT")
"""The hand-written DuckDB upserts (benchmarks/sql_peers.py); their names are benchmarks.sql_peers'."""
PEERS = (*SQL_PEERS, "dlt arrow", "dlt dicts", "per-row")
FLOOR_TARGET: dict[str, float] = {}
FLOOR_TARGET_OTHER = 0.8
SQL_PEER_TARGET = 2.0
LINEARITY_TARGET = 0.8
DLT_END_TO_END_TARGET = 2.5
DLT_MERGE_TARGET = 5.0
PER_ROW_TARGET = 1_000.0
MEMORY_TARGET = 2.0
ACCEPT_TARGET = 2.0
STREAM_TARGET = 50.0
FAIRNESS_P95_TARGET = 1.0
SCALING_TARGET = 1.6
"""Issue 10: a small job's p95 latency while a large one runs, and 2 workers' jobs/s over one worker's."""


@dataclass(frozen=True)
class Target:
    name: str
    kind: str
    rows: int | None
    measured: float | None
    threshold: float
    at_least: bool
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured >= self.threshold if self.at_least else self.measured <= self.threshold

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "rows": self.rows,
            "measured": self.measured,
            "threshold": self.threshold,
            "comparison": ">=" if self.at_least else "<=",
            "met": self.met,
            "note": self.note,
        }


def peer_rate(run: Run, peer: str) -> float | None:
    found = run.get("peers", {}).get(peer)
    return None if found is None else float(found["rows_per_second"])


def end_to_end_rate(run: Run) -> float | None:
    found = run.get("end_to_end")
    return None if found is None else float(found["rows_per_second"])


def run_ratios(run: Run) -> dict[str, Any]:
    """The ratios of one (kind, size) run; None where a figure is missing (skipped peer, no service)."""
    e2e = end_to_end_rate(run)
    merge = run["stage_rows_per_second"].get("merge")
    end_to_end = run.get("end_to_end") or {}
    body = run["body_bytes"]
    peaks = end_to_end.get("peak_rss", {})
    return {
        "end_to_end_vs_floor": ratio(e2e, run["floor"]["rows_per_second"]),
        "end_to_end_vs_sql_merge": ratio(e2e, peer_rate(run, SQL_PEERS[0])),
        "end_to_end_vs_sql_delete_insert": ratio(e2e, peer_rate(run, SQL_PEERS[1])),
        "end_to_end_vs_dlt_arrow": ratio(e2e, peer_rate(run, "dlt arrow")),
        "merge_vs_dlt_arrow": ratio(merge, peer_rate(run, "dlt arrow")),
        "end_to_end_vs_dlt_dicts": ratio(e2e, peer_rate(run, "dlt dicts")),
        "end_to_end_vs_per_row": ratio(e2e, peer_rate(run, "per-row")),
        "accepted_vs_decode": ratio(end_to_end.get("accepted_seconds"), run["floor"]["decode_seconds"]),
        "stages_vs_end_to_end": ratio(run["stages_seconds"], end_to_end.get("completed_seconds")),
        "peak_rss_vs_body": {role: peak / body for role, peak in peaks.items()},
        "resting_rss_vs_body": {role: rss / body for role, rss in end_to_end.get("resting_rss", {}).items()},
        "peak_above_rest_vs_body": {
            role: (peak - end_to_end.get("resting_rss", {}).get(role, 0)) / body for role, peak in peaks.items()
        },
    }


def linearity(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Per kind: end-to-end rows/s at the largest size over rows/s at the smallest."""
    found: dict[str, dict[str, Any]] = {}
    for kind in dict.fromkeys(run["kind"] for run in runs):
        measured = sorted((r for r in runs if r["kind"] == kind and end_to_end_rate(r)), key=lambda r: r["rows"])
        if len(measured) < 2:
            continue
        small, large = measured[0], measured[-1]
        found[kind] = {
            "small_rows": small["rows"],
            "large_rows": large["rows"],
            "ratio": ratio(end_to_end_rate(large), end_to_end_rate(small)),
        }
    return found


def largest_runs(runs: list[Run]) -> dict[str, Run]:
    """The run with the most rows, per kind, in the order the kinds ran."""
    largest: dict[str, Run] = {}
    for run in runs:
        if run["kind"] not in largest or run["rows"] > largest[run["kind"]]["rows"]:
            largest[run["kind"]] = run
    return largest


def above_floor(run: Run, peer: float | None, times: float) -> str:
    """Why a peer ratio cannot be met on this machine, if it cannot: it asks for more than the floor."""
    required = None if peer is None else peer * times
    floor = run["floor"]["rows_per_second"]
    if required is None or required <= floor:
        return ""
    return f"needs {compact(required)} rows/s end to end: above this run's floor ({compact(floor)} rows/s)"


def above_append(run: Run, peer: float | None, times: float) -> str:
    """Why a merge ratio cannot be met, if it cannot: it asks for a merge faster than a plain append."""
    append_seconds = run["floor"].get("append_seconds")
    required = None if peer is None else peer * times
    if required is None or not append_seconds:
        return ""
    append = run["rows"] / append_seconds
    if required <= append:
        return ""
    return f"needs a {compact(required)} rows/s merge: faster than a plain append to an empty table ({compact(append)})"


def at_rest(run: Run, role: str) -> str:
    """What the process held before any upload, against this body: the part of a memory ratio no
    implementation of the import changes (Python and its libraries)."""
    resting = (run.get("end_to_end") or {}).get("resting_rss", {}).get(role)
    if not resting:
        return ""
    return (
        f"peak above the {megabytes(resting)} MB at rest, before any upload"
        f" ({times(resting / run['body_bytes'])} the body)"
    )


def evaluate_targets(results: Results) -> list[Target]:
    """Issue 4's targets, each judged at the largest size run for its kind."""
    largest = largest_runs(results["runs"])
    targets: list[Target] = []
    for kind, run in largest.items():
        ratios = run["ratios"]
        rows = run["rows"]
        floor = FLOOR_TARGET.get(kind, FLOOR_TARGET_OTHER)
        dlt = peer_rate(run, "dlt arrow")
        per_row = peer_rate(run, "per-row")
        note = f"floor: {run['floor'].get('method', '-')}"
        targets += [
            Target("end to end / floor", kind, rows, ratios["end_to_end_vs_floor"], floor, True, note),
            *(
                Target(
                    f"end to end / {peer}",
                    kind,
                    rows,
                    ratios.get(name),
                    SQL_PEER_TARGET,
                    True,
                    above_floor(run, peer_rate(run, peer), SQL_PEER_TARGET),
                )  # fmt: skip
                for peer, name in zip(
                    SQL_PEERS, ("end_to_end_vs_sql_merge", "end_to_end_vs_sql_delete_insert"), strict=True
                )
            ),
            Target(
                "end to end / dlt best case",
                kind,
                rows,
                ratios["end_to_end_vs_dlt_arrow"],
                DLT_END_TO_END_TARGET,
                True,
                above_floor(run, dlt, DLT_END_TO_END_TARGET),
            ),
            Target(
                "merge stage / dlt best case",
                kind,
                rows,
                ratios["merge_vs_dlt_arrow"],
                DLT_MERGE_TARGET,
                True,
                above_append(run, dlt, DLT_MERGE_TARGET),
            ),
            Target(
                "end to end / per-row",
                kind,
                rows,
                ratios["end_to_end_vs_per_row"],
                PER_ROW_TARGET,
                True,
                above_floor(run, per_row, PER_ROW_TARGET),
            ),
            Target("202 time / decode time", kind, rows, ratios["accepted_vs_decode"], ACCEPT_TARGET, False),
        ]
        for role in ("api", "worker"):
            # issue 15: what the import adds to the process, peak above its resting RSS, against the body
            above = ratios.get("peak_above_rest_vs_body", {}).get(role)
            measured = above if above is not None else ratios["peak_rss_vs_body"].get(role)
            note = at_rest(run, role)
            targets.append(Target(f"peak RSS {role} / body", kind, rows, measured, MEMORY_TARGET, False, note))
    for kind, found in results.get("linearity", {}).items():
        note = f"{found['large_rows']:,} vs {found['small_rows']:,} rows"
        targets.append(
            Target("rows/s large / small", kind, found["large_rows"], found["ratio"], LINEARITY_TARGET, True, note)
        )
    stream = results.get("job_stream")
    if stream:
        note = (
            f"{stream['jobs']} jobs of {stream['rows_per_job']:,} rows, {stream['warehouse_rows']:,} rows in the table"
        )
        targets.append(
            Target("small jobs per second", stream["kind"], None, stream["jobs_per_second"], STREAM_TARGET, True, note)
        )
    concurrency = results.get("concurrency")
    if concurrency:
        fair = concurrency["fairness"]
        note = f"while a {fair['large_rows']:,}-row job of another organization runs; {fair['small_jobs']} jobs"
        targets.append(
            Target(
                "small-job p95 latency (s)",
                "inventory",
                fair["small_rows"],
                fair["p95_seconds"],
                FAIRNESS_P95_TARGET,
                False,
                note,
            )  # fmt: skip
        )
        large = concurrency.get("large_warehouse")
        if large:
            note = (
                f"{large['organizations']} organizations, {large['jobs']} jobs of {large['rows_per_job']:,} rows,"
                f" {large['warehouse_rows']:,} rows in the table before, {large['workers']} workers"
            )
            targets.append(
                Target("small jobs per second", "inventory", None, large["jobs_per_second"], STREAM_TARGET, True, note)
            )
        by_workers = {run["workers"]: run["jobs_per_second"] for run in concurrency["scaling"]}
        if 1 in by_workers and 2 in by_workers:
            note = ", ".join(f"{workers}: {rate:.1f} jobs/s" for workers, rate in by_workers.items())
            targets.append(
                Target(
                    "small jobs, 2 workers / 1",
                    "inventory",
                    fair["small_rows"],
                    by_workers[2] / by_workers[1],
                    SCALING_TARGET,
                    True,
                    note,
                )  # fmt: skip
            )
    return targets


# --- formatting ---------------------------------------------------------------------------------


def compact(value: float | None) -> str:
    """1.23M, 45.6k, 789: rows per second at a glance."""
    if value is None:
        return "-"
    if value >= 1e6:
        return f"{value / 1e6:.2f}M"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def times(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}x" if value >= 100 else f"{value:.2f}x"


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def megabytes(value: float | None) -> str:
    return "-" if value is None else f"{value / 1e6:,.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def throughput_table(results: Results) -> list[str]:
    header = ["kind", "rows", "body MB", "end to end", "202 s", "done s", "floor", *STAGES, "re-merge", *PEERS]
    rows = []
    for run in results["runs"]:
        end_to_end = run.get("end_to_end") or {}
        stage_rates = run["stage_rows_per_second"]
        rows.append(
            [
                run["kind"],
                f"{run['rows']:,}",
                megabytes(run["body_bytes"]),
                compact(end_to_end.get("rows_per_second")),
                seconds(end_to_end.get("accepted_seconds")),
                seconds(end_to_end.get("completed_seconds")),
                compact(run["floor"]["rows_per_second"]),
                *(compact(stage_rates.get(stage)) for stage in STAGES),
                compact(run.get("remerge_rows_per_second")),
                *(compact(peer_rate(run, peer)) + ("*" if peer in ("dlt dicts", "per-row") else "") for peer in PEERS),
            ]
        )
    return _table(header, rows)


def ratio_table(results: Results) -> list[str]:
    header = [
        "kind",
        "rows",
        "e2e/floor",
        "e2e/SQL MERGE",
        "e2e/SQL DELETE+INSERT",
        "e2e/dlt best",
        "merge/dlt best",
        "e2e/dlt dicts",
        "e2e/per-row",
        "202/decode",
        "API RSS/body",
        "worker RSS/body",
        "stages/e2e",
    ]
    rows = []
    for run in results["runs"]:
        r = run["ratios"]
        rows.append(
            [
                run["kind"],
                f"{run['rows']:,}",
                times(r["end_to_end_vs_floor"]),
                times(r.get("end_to_end_vs_sql_merge")),
                times(r.get("end_to_end_vs_sql_delete_insert")),
                times(r["end_to_end_vs_dlt_arrow"]),
                times(r["merge_vs_dlt_arrow"]),
                times(r["end_to_end_vs_dlt_dicts"]),
                times(r["end_to_end_vs_per_row"]),
                times(r["accepted_vs_decode"]),
                times(r["peak_rss_vs_body"].get("api")),
                times(r["peak_rss_vs_body"].get("worker")),
                times(r["stages_vs_end_to_end"]),
            ]
        )
    return _table(header, rows)


def timeline_table(results: Results) -> list[str]:
    """Where the end-to-end seconds go, from the client's clock and the job record's timestamps."""
    rows = []
    for run in results["runs"]:
        e2e = run.get("end_to_end")
        if not e2e:
            continue
        spans = (e2e["accepted_seconds"], e2e["created_to_started_seconds"], e2e["started_to_completed_at_seconds"])
        rest = None if None in spans else e2e["completed_seconds"] - sum(s for s in spans if s is not None)
        rows.append(
            [
                run["kind"],
                f"{run['rows']:,}",
                seconds(e2e["completed_seconds"]),
                seconds(e2e["accepted_seconds"]),
                seconds(e2e["created_to_started_seconds"]),
                seconds(e2e["started_to_completed_at_seconds"]),
                seconds(rest),
                seconds(run["stages_seconds"]),
                megabytes(e2e["peak_rss"].get("api")),
                megabytes(e2e["peak_rss"].get("worker")),
                seconds(e2e.get("dry_run_seconds")),
            ]
        )
    header = [
        "kind",
        "rows",
        "done s",
        "to 202 s",
        "queued s",
        "startedAt→completedAt s",
        "rest s",
        "stages in process s",
        "API peak MB",
        "worker peak MB",
        "dry run s",
    ]
    return _table(header, rows)


def target_table(results: Results) -> list[str]:
    verdicts = {True: "met", False: "**missed**", None: "not measured"}
    rows = []
    for target in results["targets"]:
        measured = target["measured"]
        rows.append(
            [
                target["name"],
                target["kind"],
                "-" if target["rows"] is None else f"{target['rows']:,}",
                "-" if measured is None else f"{measured:,.2f}",
                f"{target['comparison']} {target['threshold']:g}",
                verdicts[target["met"]],
                target["note"],
            ]
        )
    return _table(["target", "kind", "rows", "measured", "required", "verdict", "note"], rows)


def publish_table(results: Results) -> list[str]:
    rows = []
    for point in results["publish"]:
        rate = ratio(point["warehouse_bytes"], point["seconds"])
        rows.append(
            [
                point["kind"],
                f"{point['rows']:,}",
                megabytes(point["warehouse_bytes"]),
                f"{point['seconds'] * 1000:.0f}",
                "-" if rate is None else f"{rate / 1e6:,.0f}",
            ]
        )
    return _table(["kind", "rows in batch", "warehouse MB", "publish ms", "MB/s"], rows)


def small_staging_table(results: Results) -> list[str]:
    rows = [
        [
            point["kind"],
            f"{point['rows']:,}",
            f"{point['body_bytes'] / 1024:,.0f}",
            f"{point['decoded_ms']:.2f}",
            f"{point['duckdb_ms']:.2f}",
            f"{point['duckdb_over_decoded']:.2f}",
        ]
        for point in results.get("small_staging") or []
    ]
    header = ["kind", "rows", "body KB", "decoded, CPU ms", "DuckDB's reader, CPU ms", "DuckDB / decoded"]
    return _table(header, rows)


def apply_runs_table(results: Results) -> list[str]:
    rows = [
        [
            f"{run['jobs']}",
            f"{run.get('organizations', 1)}",
            f"{run['rows_per_job']:,}",
            f"{run['transaction_ms']:.1f}",
            f"{run['per_job_ms']:.1f}",
        ]
        for run in results.get("apply_runs") or []
    ]
    header = ["jobs in the transaction", "organizations", "rows per job", "CPU ms per transaction", "CPU ms per job"]
    return _table(header, rows)


def render_markdown(results: Results) -> str:
    meta = results["meta"]
    lines = [
        "# Stockyard benchmark",
        "",
        f"{meta['started_at']} · {meta['cpu_count']} cores · load {meta['load_before']} before, "
        f"{meta['load_after']} after · polars {meta['versions']['polars']}, duckdb {meta['versions']['duckdb']}, "
        f"dlt {meta['versions'].get('dlt') or 'not installed'} · seed {meta['seed']}, "
        f"{meta['bad_share']:.0%} bad rows, {meta['existing_share']:.0%} existing keys",
        "",
        "## Rows per second",
        "",
        *throughput_table(results),
        "",
        f"\\* measured on a sample (the first rows of the same batch) and given as rows/s: per-row on "
        f"{meta['per_row_sample']:,} rows, dlt dicts on {meta['dlt_sample']:,} rows (good rows only). "
        "Kinds with lines count header rows (rowCount), not lines.",
        "",
        "re-merge: the same batch merged again right after (every row updates, in another order than the "
        "table's). Stages run in the benchmark's process, warm; end to end runs in the service.",
        "",
        "## Ratios",
        "",
        *ratio_table(results),
        "",
        "## Where the end-to-end time goes",
        "",
        *timeline_table(results),
        "",
        "queued: createdAt to startedAt; startedAt→completedAt: as the job record stamps them (completedAt is when "
        "the rows are written, just before COMMIT); rest: the remainder of the client's time to COMPLETED (the "
        "commit, the status update, and polling). dry run: the same body again with ?dryRun=true, to COMPLETED.",
        "",
        "## Targets, at the largest size of each kind",
        "",
        *target_table(results),
        "",
        "## Publishing the analysts' copy",
        "",
        *publish_table(results),
    ]
    if results.get("small_staging"):
        lines += [
            "",
            "## Staging a small body in the API",
            "",
            *small_staging_table(results),
            "",
            "CPU per staging (median of the rounds, alternating, DuckDB's threads included): a small JSON body staged "
            "from msgspec's decoding, as the API does, and the same body by DuckDB's reader, as a larger one is.",
        ]
    if results.get("apply_runs"):
        lines += [
            "",
            "## One apply transaction, by the small jobs it merges",
            "",
            *apply_runs_table(results),
            "",
            "Inventory jobs of one organization, then one job of each of several, applied together by "
            "`warehouse.apply_jobs`, in the benchmark's process (median CPU, DuckDB's threads included): what a "
            "transaction costs whatever it merges.",
        ]
    stream = results.get("job_stream")
    if stream:
        lines += [
            "",
            f"Small jobs: {stream['jobs']} {stream['kind']} jobs of {stream['rows_per_job']:,} rows, posted back to "
            f"back over HTTP into a warehouse of {megabytes(stream['warehouse_bytes'])} MB "
            f"({stream['warehouse_rows']:,} rows in the table): {stream['jobs_per_second']:.2f} jobs/s, applied in "
            f"{stream.get('commits', '?')} transactions (queued small jobs of one organization and kind go together); "
            f"startedAt→completedAt {seconds(stream['mean_started_to_completed_at_seconds'])} s per job on average.",
        ]
    lines += concurrency_lines(results)
    if results["notes"]:
        lines += ["", "## Notes", "", *(f"- {note}" for note in results["notes"])]
    return "\n".join(lines) + "\n"


def concurrency_lines(results: Results) -> list[str]:
    """Fairness while a large job runs, and small jobs against 1, 2, 4 workers (benchmarks/concurrency.py)."""
    found = results.get("concurrency")
    if not found:
        return []
    fair = found["fairness"]
    lines = [
        "",
        "## Many organizations at once",
        "",
        f"Fairness: while one organization's {fair['large_rows']:,}-row inventory job ran "
        f"({seconds(fair['large_seconds'])} s to COMPLETED), {fair['organizations']} other organizations posted "
        f"{fair['small_jobs']} jobs of {fair['small_rows']:,} rows, one every {fair['interval_seconds']:.1f} s, "
        f"{fair['workers']} workers. Completion latency from POST to COMPLETED: p50 {seconds(fair['p50_seconds'])} s, "
        f"p95 {seconds(fair['p95_seconds'])} s, max {seconds(fair['max_seconds'])} s (target p95 <= 1 s).",
        "",
    ]
    scaling = found["scaling"]
    base = scaling[0]["jobs_per_second"] if scaling else None
    cores = results["meta"].get("cpu_count") or 1
    rows = [
        [
            str(run["workers"]),
            f"{run['jobs']}",
            seconds(run["seconds"]),
            f"{run['jobs_per_second']:.1f}",
            times(run["jobs_per_second"] / base) if base else "",
            *_cpu_cells(run, cores),
        ]
        for run in scaling
    ]
    lines += _table(["workers", "jobs (10 organizations)", "seconds", "jobs/s", "vs 1 worker", *CPU_COLUMNS], rows)
    large = found.get("large_warehouse")
    if large:
        lines += [
            "",
            f"Into a large warehouse: the same ten organizations posted {large['jobs']} jobs of "
            f"{large['rows_per_job']:,} rows into a warehouse that held {large['warehouse_rows']:,} inventory rows "
            f"before (a block per organization), {large['workers']} workers: {seconds(large['seconds'])} s, "
            f"**{large['jobs_per_second']:.1f} jobs/s** (target 50), in {large.get('transactions') or '?'} apply "
            "transactions.",
            "",
            *_table(["jobs/s", *CPU_COLUMNS], [[f"{large['jobs_per_second']:.1f}", *_cpu_cells(large, cores)]]),
        ]
    lines += [
        "",
        "CPU per job: user + system CPU of each process from the first POST to the last COMPLETED, over the"
        " jobs (the workers summed; clients: the benchmark's own process, which posts and polls). Busy: all"
        f" of it over {cores} cores x the run's seconds. At 1.0 the machine is the bound: more jobs/s need"
        " less CPU per job.",
    ]
    return lines


CPU_COLUMNS = ["CPU ms/job: API", "workers", "Redis", "clients", "all", "busy"]
_CPU_PROCESSES = ("api", "workers", "redis", "clients")


def _cpu_cells(run: dict[str, Any], cores: int) -> list[str]:
    """The CPU per job of each process of a small-jobs run, in all, and how busy the cores were."""
    used = run.get("cpu_seconds") or {}
    if not used:
        return [""] * len(CPU_COLUMNS)
    per_job = [f"{1000 * used.get(name, 0.0) / run['jobs']:.0f}" for name in _CPU_PROCESSES]
    total = sum(used.values())
    return [*per_job, f"{1000 * total / run['jobs']:.0f}", f"{total / (cores * run['seconds']):.2f}"]


def render_chart(results: Results, path: Path) -> None:
    """Two panels, log scale: rows/s by stage per kind, and Stockyard against the floor and the peers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    largest = largest_runs(results["runs"])
    chosen = list(largest.values())
    stage_series = [(stage, [r["stage_rows_per_second"].get(stage) for r in chosen]) for stage in STAGES]
    peer_series = [
        ("Stockyard end to end", [end_to_end_rate(r) for r in chosen]),
        ("floor", [r["floor"]["rows_per_second"] for r in chosen]),
        *((f"{p}{'' if p == 'dlt arrow' else ' (sample)'}", [peer_rate(r, p) for r in chosen]) for p in PEERS),
    ]
    figure, (stages_axis, peers_axis) = plt.subplots(1, 2, figsize=(16, 6))
    panels = [
        (stages_axis, "Stages, in process", stage_series),
        (peers_axis, "End to end against the floor and the peers", peer_series),
    ]
    for axis, title, series in panels:
        width = 0.8 / len(series)
        for number, (label, rates) in enumerate(series):
            values = [value or 0.0 for value in rates]
            positions = [k + (number - (len(series) - 1) / 2) * width for k in range(len(chosen))]
            axis.bar(positions, values, width, label=label)
        axis.set_yscale("log")
        axis.set_xticks(range(len(chosen)))
        axis.set_xticklabels([f"{r['kind']}\n{r['rows']:,} rows" for r in chosen], fontsize=8)
        axis.set_ylabel("rows per second (log)")
        axis.set_title(title)
        axis.legend(fontsize=8)
        axis.grid(axis="y", which="major", alpha=0.3)
    figure.suptitle(f"Stockyard benchmark, {results['meta']['started_at']}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_outputs(results: Results, directory: Path) -> dict[str, Path]:
    """latest.json, latest.md and latest.png under `directory`; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "latest.json", "markdown": directory / "latest.md", "chart": directory / "latest.png"}
    paths["json"].write_text(json.dumps(results, indent=2) + "\n")
    paths["markdown"].write_text(render_markdown(results))
    render_chart(results, paths["chart"])
    return paths
