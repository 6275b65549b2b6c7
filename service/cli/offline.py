"""``xent score DATASET``: score logged predictions in Parquet / Arrow files, here or on Dask.

The dataset is read in record batches (memory bounded by one batch and one row group); each
partition is summarised into the core's mergeable statistics and the results merged, in this
process or as a tree on a Dask cluster (``--scheduler``). The report holds the
``/v1/calibration`` scalars that merge exactly, plus the cross-entropy; docs/offline-scoring.md.
"""

import argparse
import json
import os
import sys
from typing import Any

from service.core import InputError, MonitorStats
from service.core.errors import MissingDependency
from service.core.monitoring.fine_histogram import check_bins

from .datasets import (
    SUFFIXES,
    Columns,
    DatasetError,
    class_columns,
    find_files,
    n_classes_of,
    partitions,
    schema,
)
from .files import FileError, Progress
from .offline_report import UNITS, metrics, reliability_svg, report, write_atomically
from .reduce import Job, Summary, reduce_local

EXIT_OK, EXIT_FILE, EXIT_INPUT, EXIT_SERVER, EXIT_EXTRA = 0, 3, 4, 5, 6


def is_dataset(spec: str) -> bool:
    """Whether `spec` names a Parquet / Arrow dataset: a directory, a known suffix, or a glob."""
    if os.path.isdir(spec) or os.path.splitext(spec)[1].lower() in SUFFIXES:
        return True
    return not os.path.exists(spec) and any(c in spec for c in "*?[")


def add_arguments(score: argparse.ArgumentParser) -> None:
    """The dataset options of ``xent score``."""
    group = score.add_argument_group(
        "Parquet / Arrow datasets",
        "PREDICTIONS is a .parquet / .arrow file, a directory or a glob; no LABELS",
    )
    add = group.add_argument
    add(
        "--column",
        metavar="NAME",
        help="predictions: a list / fixed-size list column, or a float column (binary); default logits/probs",
    )
    add("--class-columns", metavar="A,B,C", help="predictions as one float column per class: A,B,C")
    add(
        "--class-prefix",
        metavar="PREFIX",
        help="predictions as the columns PREFIX0, PREFIX1, ... (ordered by number)",
    )
    add("--label-column", metavar="NAME", default="label", help="integer class labels (default: label)")
    add("--weight-column", metavar="NAME", help="non-negative row weights")
    add("--time-column", metavar="NAME", help="timestamps or dates, for --by day (UTC days)")
    add("--segment-column", metavar="NAME", help="any column, for --by segment")
    add("--by", choices=["day", "segment"], help="also report the metrics per UTC day or per segment")
    add(
        "--n-bins", metavar="B", type=int, default=15, help="equal-width bins, a divisor of 2520 (default 15)"
    )
    add("--closed", choices=["right", "left"], default="right", help="bins (a, b] or [a, b) (default right)")
    add(
        "--batch-size",
        metavar="ROWS",
        type=int,
        default=65_536,
        help="rows per record batch read (default 65536)",
    )
    add(
        "--output",
        "-o",
        metavar="FILE",
        help="write the JSON report to this file (it appears only on success)",
    )
    add("--svg", metavar="FILE", help="write the reliability diagram (SVG) to this file")
    add(
        "--scheduler",
        metavar="ADDRESS",
        help='run on Dask: a scheduler address (tcp://host:8786) or "local" (a LocalCluster)',
    )
    add(
        "--n-workers",
        metavar="N",
        type=int,
        default=2,
        help="worker processes of --scheduler local (default 2)",
    )


def run(args: argparse.Namespace) -> int:
    """Execute ``xent score DATASET``; return the exit code."""
    from .dask_reduce import SchedulerError

    parser = args.parser
    if args.labels is not None:
        parser.error("a dataset holds its labels: name their column with --label-column, not LABELS")
    try:
        n_bins = check_bins(args.n_bins)
    except InputError as exc:
        parser.error(f"--n-bins {exc.reason}")
    if args.batch_size < 1 or args.n_workers < 1:
        parser.error("--batch-size and --n-workers must be positive")
    if args.by == "day" and not args.time_column or args.by == "segment" and not args.segment_column:
        parser.error(f"--by {args.by} needs --{'time' if args.by == 'day' else 'segment'}-column")
    try:
        return _score(args, n_bins)
    except FileError as exc:
        return _fail(str(exc), EXIT_FILE)
    except DatasetError as exc:
        return _fail(str(exc), EXIT_INPUT)
    except MissingDependency as exc:
        return _fail(str(exc), EXIT_EXTRA)
    except SchedulerError as exc:
        return _fail(str(exc), EXIT_SERVER)


def _score(args: argparse.Namespace, n_bins: int) -> int:
    files = find_files(args.predictions)
    parts = partitions(files)
    columns = _columns(args, schema(*files[0]).names)
    first = next((p for p in parts if p.rows), parts[0] if parts else None)
    if first is None:
        raise FileError(f"{args.predictions}: holds no row groups")
    n_classes, binary = n_classes_of(first, columns)
    eps: Any = "auto" if args.eps == "auto" else _float(args.parser, args.eps)
    total = sum(p.rows for p in parts)
    job = Job(columns, n_classes, binary, eps, args.batch_size, args.by)
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    if args.scheduler:
        from .dask_reduce import reduce_on_dask

        meter = Progress(f"{args.predictions} ({len(parts)} partitions on Dask)", len(parts), enabled=show)
        done = [0]

        def on_part(count: int) -> None:
            done[0] += count
            meter.update(done[0])

        try:
            summary = reduce_on_dask(parts, job, args.scheduler, n_workers=args.n_workers, on_part=on_part)
        finally:
            meter.close()
        scored_by = f"dask {args.scheduler}"
    else:
        meter = Progress(args.predictions, total, enabled=show)
        rows = [0]

        def on_rows(count: int) -> None:
            rows[0] += count
            meter.update(rows[0])

        try:
            summary = reduce_local(parts, job, on_rows=on_rows)
        finally:
            meter.close()
        scored_by = "local"
    return _write(args, summary, job, n_bins, scored_by, files=len(files), n_parts=len(parts))


def _write(
    args: argparse.Namespace,
    summary: Summary,
    job: Job,
    n_bins: int,
    scored_by: str,
    *,
    files: int,
    n_parts: int,
) -> int:
    stats = summary.total or MonitorStats.empty(job.n_classes, binary=job.binary)
    header = {
        "predictions": args.predictions,
        "files": files,
        "partitions": n_parts,
        "input": job.columns.kind,
        "form": "binary" if job.binary else "categorical",
        "scored_by": scored_by,
    }
    result = report(
        summary, stats, header=header, n_bins=n_bins, closed=args.closed, base=args.base, by=job.by
    )
    text = json.dumps(result, indent=2) + "\n"
    if args.svg:
        values = metrics(stats, n_bins=n_bins, closed=args.closed, base=args.base)
        write_atomically(args.svg, reliability_svg(stats, n_bins=n_bins, closed=args.closed, values=values))
    if args.output:
        write_atomically(args.output, text)
    if args.json or not args.output:
        sys.stdout.write(text if args.json else _table(result))
    return EXIT_OK


def _columns(args: argparse.Namespace, names: list[str]) -> Columns:
    """The columns to read, from the flags (and the first file's column names)."""
    given = [flag for flag in ("column", "class_columns", "class_prefix") if getattr(args, flag)]
    if len(given) > 1:
        args.parser.error("give one of --column, --class-columns, --class-prefix")
    kind = args.kind
    column: str | None = args.column
    classes: tuple[str, ...] = ()
    if args.class_columns:
        classes = tuple(name.strip() for name in args.class_columns.split(",") if name.strip())
    elif args.class_prefix:
        classes = class_columns(names, args.class_prefix)
        if not classes:
            raise DatasetError(args.predictions, None, args.class_prefix + "*", "matches no column")
    elif column is None:
        found = [name for name in ((kind,) if kind else ("logits", "probs")) if name in names]
        if not found:
            args.parser.error("name the predictions with --column, --class-columns or --class-prefix")
        column = found[0]
    if kind is None and column in ("logits", "probs"):
        kind = column
    if kind is None:
        args.parser.error("say whether the predictions are --logits or --probs")
    if len(classes) == 1:
        args.parser.error("one class column is not a distribution; give at least two")
    return Columns(
        kind,
        None if classes else column,
        classes,
        args.label_column,
        args.weight_column,
        args.time_column if args.by == "day" else None,
        args.segment_column if args.by == "segment" else None,
    )


def _float(parser: argparse.ArgumentParser, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        parser.error(f'--eps must be "auto" or a number; got {text!r}')


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"xent score: error: {message}\n")
    return code


def _table(result: dict[str, Any]) -> str:
    unit = UNITS[result["convention"]["base"]]
    lines = [
        f"dataset      {result['predictions']}  ({result['files']} files, {result['partitions']} partitions)",
        f"predictions  {result['input']}, {result['form']}, K = {result['n_classes']}",
        f"samples      {result['n']}",
        f"scored by    {result['scored_by']}",
        "",
    ]
    for name, value in result["metrics"].items():
        shown = f"{value:.6f}" if isinstance(value, float) else value
        suffix = f" {unit}" if name in ("nll", "cross_entropy") else ""
        lines.append(f"{name:<18} {shown}{suffix}")
    if "series" in result:
        lines += [
            "",
            f"by {result['series']['by']:<10} {'n':>9}  {'cross_entropy':>13}  {'accuracy':>8}  {'ece':>8}",
        ]
        for group in result["series"]["groups"]:
            m = group["metrics"]
            cells = [
                f"{m[name]:.6f}" if isinstance(m[name], float) else m[name]
                for name in ("cross_entropy", "accuracy", "ece")
            ]
            lines.append(
                f"{str(group['key']):<13} {group['n']:>9}  {cells[0]:>13}  {cells[1]:>8}  {cells[2]:>8}"
            )
    lines.append("")
    lines.append(f"left out (not mergeable): {', '.join(result['left_out'])}")
    return "\n".join(lines) + "\n"
