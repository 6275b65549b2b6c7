"""``xent score PREDICTIONS LABELS``: score a file of predictions, locally or on a server.

``xent score DATASET`` scores a Parquet / Arrow dataset (a file, a directory or a glob) in
bounded memory, here or on a Dask cluster (:mod:`service.cli.offline`).

Exit codes
----------
0  scored
2  bad command line (unknown option or metric)
3  a file is missing, unreadable, or holds no usable array
4  the arrays were rejected (wrong shape, non-finite values, labels out of range, ...)
5  the server (``--url``) or the Dask scheduler could not be reached, or a server error
6  an optional dependency is missing (the message names the extra to install)
"""

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from service import core
from service.core._typing import IntArray

from . import offline
from .files import FileError, Loaded, read_array, split_spec

if TYPE_CHECKING:
    from service.client import XentClient

EXIT_OK, EXIT_USAGE, EXIT_FILE, EXIT_INPUT, EXIT_SERVER = 0, 2, 3, 4, 5
Kind = Literal["logits", "probs"]
BASES: dict[str, Any] = {"e": "e", "2": 2, "10": 10}


class Scorer(Protocol):
    """What a metric reads: the same attributes locally (core) and remotely (server)."""

    n: int
    form: str
    dtype: str

    @property
    def cross_entropy(self) -> float: ...  # noqa: D102

    @property
    def accuracy(self) -> float: ...  # noqa: D102

    @property
    def mean_entropy(self) -> float: ...  # noqa: D102

    @property
    def ece(self) -> float: ...  # noqa: D102

    @property
    def brier(self) -> float: ...  # noqa: D102

    @property
    def temperature(self) -> float: ...  # noqa: D102


@dataclass(frozen=True)
class Metric:
    """A row of the output table: its title, the `Scorer` attribute, and whether it is in log units."""

    title: str
    read: Callable[[Scorer], float]
    logarithmic: bool


#: Metrics by command-line name. A new metric is a property on both scorers and a line here.
METRICS: dict[str, Metric] = {
    "ce": Metric("cross-entropy", lambda s: s.cross_entropy, True),
    "accuracy": Metric("accuracy", lambda s: s.accuracy, False),
    "entropy": Metric("mean entropy", lambda s: s.mean_entropy, True),
    "ece": Metric("ECE (top-label, 15 bins)", lambda s: s.ece, False),
    "brier": Metric("Brier score", lambda s: s.brier, False),
    "temperature": Metric("fitted temperature", lambda s: s.temperature, False),
}
DEFAULT_METRICS = "ce,accuracy,entropy,ece,brier"


class LocalScorer:
    """Scores with :mod:`service.core` in this process."""

    def __init__(self, predictions: np.ndarray, labels: np.ndarray, kind: Kind, eps: Any, base: Any) -> None:
        if kind == "logits":
            logits = core.check_logits(predictions)
            self.dist = core.Distribution.from_logits(logits, validate=False)
            self.scores = logits  # what a temperature divides: the logits as given
        else:
            probs = core.check_probabilities(predictions)
            self.dist = core.Distribution.from_probs(probs, eps=eps, validate=False)
            self.scores = self.dist.log_probs
        n = self.dist.log_probs.shape[0]
        core.check_same_length("labels", labels.shape[0] if labels.ndim else 0, n, other=kind)
        self.labels: IntArray = core.check_labels(labels, self.dist.n_classes)
        self.base = math.e if base == "e" else float(base)
        self.n = n
        self.form = "binary" if self.dist.binary else "categorical"
        self.dtype = self.dist.log_probs.dtype.name

    def _mean(self, values: np.ndarray) -> float:
        return float(np.mean(core.to_base(values, self.base), dtype=np.float64))

    @cached_property
    def cross_entropy(self) -> float:
        """Mean cross-entropy of the labels, in the chosen base."""
        return self._mean(core.nll(self.labels, self.dist.log_probs))

    @cached_property
    def accuracy(self) -> float:
        """Top-1 accuracy (ties to the lower class)."""
        return float(np.mean(self.dist.predicted() == self.labels))

    @cached_property
    def mean_entropy(self) -> float:
        """Mean entropy of the predicted distributions, in the chosen base."""
        return self._mean(core.entropy(self.dist.probs, self.dist.log_probs))

    @cached_property
    def _fit_metrics(self) -> core.FitMetrics:
        return core.fit_metrics(self.dist.log_probs, labels=self.labels)

    @property
    def ece(self) -> float:
        """Top-label ECE, 15 equal-width bins (b/15, (b+1)/15]."""
        return self._fit_metrics.ece

    @property
    def brier(self) -> float:
        """Mean Brier score (halved for K = 2, as scikit-learn's brier_score_loss)."""
        return self._fit_metrics.brier

    @cached_property
    def temperature(self) -> float:
        """The temperature minimising the NLL of softmax(scores / T)."""
        if np.isneginf(self.scores).any():
            raise core.InputError("eps", "must be positive to fit a temperature to probabilities with zeros")
        return core.fit_temperature(self.scores, labels=self.labels, validate=False).temperature


class RemoteScorer:
    """Scores by calling a Xent server; each endpoint is called at most once."""

    def __init__(self, client: "XentClient", fields: dict[str, Any]) -> None:
        self.client = client
        self.fields = fields
        convention = self._cross_entropy.convention
        self.n = self._cross_entropy.n
        self.form = convention.form
        self.dtype = convention.dtype

    @cached_property
    def _cross_entropy(self) -> Any:
        return self.client.cross_entropy(**self.fields)

    @property
    def cross_entropy(self) -> float:
        """The server's mean cross-entropy."""
        return float(self._cross_entropy.loss)

    @property
    def accuracy(self) -> float:
        """The server's top-1 accuracy."""
        return float(self._cross_entropy.accuracy)

    @property
    def mean_entropy(self) -> float:
        """The server's mean predictive entropy."""
        return float(self._cross_entropy.mean_entropy)

    @cached_property
    def _temperature(self) -> Any:
        return self.client.temperature(**self.fields)

    @property
    def ece(self) -> float:
        """The server's top-label ECE of the predictions as sent."""
        return float(self._temperature.before.ece)

    @property
    def brier(self) -> float:
        """The server's Brier score of the predictions as sent."""
        return float(self._temperature.before.brier)

    @property
    def temperature(self) -> float:
        """The server's fitted temperature."""
        return float(self._temperature.temperature)


def add_parser(commands: Any) -> None:
    """Register ``score`` on the ``xent`` subcommand parser."""
    score = commands.add_parser(
        "score",
        help="score a file of predictions against labels (locally, or on a server with --url)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    score.add_argument(
        "predictions",
        help="N×K (or length-N binary) array: FILE.npy, FILE.csv, FILE.npz[:NAME], or a Parquet dataset",
    )
    score.add_argument(
        "labels", nargs="?", help="length-N integer class labels: FILE.npy, FILE.csv, FILE.npz[:NAME]"
    )
    kind = score.add_mutually_exclusive_group()
    kind.add_argument(
        "--logits", dest="kind", action="store_const", const="logits", help="predictions are logits"
    )
    kind.add_argument(
        "--probs", dest="kind", action="store_const", const="probs", help="predictions are probabilities"
    )
    score.add_argument(
        "--metrics",
        default=DEFAULT_METRICS,
        help=f"comma-separated, from: {', '.join(METRICS)} (default {DEFAULT_METRICS})",
    )
    score.add_argument("--base", choices=list(BASES), default="e", help="log base: e (nats), 2 (bits), 10")
    score.add_argument(
        "--eps", default="auto", help='floor for probabilities before the log: "auto" or a number'
    )
    score.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    score.add_argument(
        "--url", help="score on this Xent server instead of locally (e.g. http://127.0.0.1:8000)"
    )
    score.add_argument("--api-key", help="API key for --url (default: $XENT_API_KEY)")
    score.add_argument(
        "--timeout", type=float, default=60.0, help="seconds per request with --url (default 60)"
    )
    progress = score.add_mutually_exclusive_group()
    progress.add_argument(
        "--progress", dest="progress", action="store_true", default=None, help="always show read progress"
    )
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show progress")
    offline.add_arguments(score)
    score.set_defaults(handler=run, parser=score)


def run(args: argparse.Namespace) -> int:
    """Execute ``xent score``; return the exit code."""
    from service.client import XentAPIError, XentConnectionError

    if offline.is_dataset(args.predictions):
        return offline.run(args)
    if args.labels is None:
        archive, _ = split_spec(args.predictions)
        if not archive.lower().endswith(".npz"):
            args.parser.error("LABELS is required for .npy / .csv predictions (one .npz may hold both)")
        args.labels = archive  # the labels array of the same archive (labels, y, targets, ...)
    names = [name.strip() for name in args.metrics.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRICS]
    if unknown or not names:
        args.parser.error(
            f"unknown metric {', '.join(unknown) or '(none)'}; choose from {', '.join(METRICS)}"
        )
    eps: Any = "auto" if args.eps == "auto" else _float(args.parser, args.eps)
    try:
        predictions = read_array(args.predictions, role="predictions", progress=args.progress)
        labels = read_array(args.labels, role="labels", progress=args.progress)
        kind, detected = _kind(predictions, args.kind)
        with ExitStack() as resources:
            scorer = _scorer(args, predictions.array, labels.array, kind, eps, resources)
            values = {name: METRICS[name].read(scorer) for name in names}
    except FileError as exc:
        return _fail(str(exc), EXIT_FILE)
    except core.InputError as exc:
        return _fail(f"{args.predictions} / {args.labels}: {exc}", EXIT_INPUT)
    except XentAPIError as exc:
        return _fail(f"{args.url}: {exc}", EXIT_INPUT if exc.status < 500 else EXIT_SERVER)
    except XentConnectionError as exc:
        return _fail(f"{args.url}: {exc}", EXIT_SERVER)
    unit = {"e": "nats", "2": "bits", "10": "hartleys"}[args.base]
    report = {
        "predictions": predictions.path,
        "labels": labels.path,
        "input": kind,
        "detected": detected,
        "form": scorer.form,
        "dtype": scorer.dtype,
        "n": scorer.n,
        "unit": unit,
        "scored_by": args.url or "local",
        "metrics": values,
    }
    sys.stdout.write(_json(report) if args.json else _table(report, names))
    return EXIT_OK


def _float(parser: argparse.ArgumentParser, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        parser.error(f'--eps must be "auto" or a number; got {text!r}')


def _kind(predictions: Loaded, flag: Kind | None) -> tuple[Kind, bool]:
    """The kind of predictions: the flag, else the ``.npz`` key, else by their values."""
    if flag is not None:
        return flag, False
    if predictions.name in ("logits", "probs"):
        return predictions.name, False  # type: ignore[return-value]
    values = predictions.array
    if values.dtype.kind not in "fiu" or values.size == 0:
        return "logits", True
    in_unit = bool(np.all((values >= 0) & (values <= 1)))
    sums_to_one = values.ndim == 1 or bool(np.allclose(values.sum(axis=-1), 1, atol=1e-4))
    return ("probs" if in_unit and sums_to_one else "logits"), True


def _scorer(
    args: argparse.Namespace,
    predictions: np.ndarray,
    labels: np.ndarray,
    kind: Kind,
    eps: Any,
    resources: ExitStack,
) -> Scorer:
    base = BASES[args.base]
    if args.url is None:
        return LocalScorer(predictions, labels, kind, eps, base)
    from service.client import XentClient

    api_key = args.api_key or os.environ.get("XENT_API_KEY")
    client = resources.enter_context(XentClient(args.url, api_key=api_key, timeout=args.timeout))
    return RemoteScorer(client, {kind: predictions, "labels": labels, "eps": eps, "base": base})


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"xent score: error: {message}\n")
    return code


def _number(value: float) -> float | str:
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def _json(report: dict[str, Any]) -> str:
    metrics = {name: _number(value) for name, value in report["metrics"].items()}
    return json.dumps({**report, "metrics": metrics}, indent=2) + "\n"


def _table(report: dict[str, Any], names: list[str]) -> str:
    kind = report["input"] + (" (detected)" if report["detected"] else "")
    lines = [
        f"predictions  {report['predictions']}  {kind}, {report['form']}, {report['dtype']}",
        f"labels       {report['labels']}",
        f"samples      {report['n']}",
        f"scored by    {report['scored_by']}",
        "",
    ]
    width = max(len(METRICS[name].title) for name in names)
    for name in names:
        metric = METRICS[name]
        unit = f" {report['unit']}" if metric.logarithmic else ""
        lines.append(f"{metric.title:<{width}}  {report['metrics'][name]:.6f}{unit}")
    return "\n".join(lines) + "\n"
