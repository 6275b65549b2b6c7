"""``POST /v1/calibration`` with ``multilabel: true``: each of K columns calibrated as a binary problem."""

import math

import numpy as np

from service import core
from service.api.formats.inputs import Body
from service.api.schemas.calibration import (
    BootstrapResult,
    CalibrationMetrics,
    CalibrationOptions,
    CalibrationResult,
)
from service.core.calibration.multilabel import (
    MULTILABEL_ALLOWED,
    MULTILABEL_METRICS,
    MultilabelPairs,
    multilabel_calibration,
)
from service.core.calibration.multilabel_bootstrap import multilabel_bootstrap
from service.core.multilabel import (
    check_logit_matrix,
    check_unit_matrix,
    multilabel_log_probs,
)

from . import log_base

_MATCHES = (
    "per column: torchmetrics BinaryCalibrationError / sklearn calibration_curve under the preset's "
    "binning, sklearn brier_score_loss, torch binary_cross_entropy; means over the K classes"
)


def multilabel_calibration_result(
    body: Body, options: CalibrationOptions, convention: core.Convention
) -> CalibrationResult:
    """Class-wise calibration of N×K independent predictions against N×K `targets`."""
    from .calibration import calibration_convention, reliability_bins
    from .calibration_document import ConventionStated

    if body.fields.get("labels") is not None:
        raise core.InputError(
            "labels", "do not apply with multilabel: send N×K `targets` (0/1 indicators or probabilities)"
        )
    sent = {
        "ignore_index": options.ignore_index is not None,
        "top_k": options.top_k is not None,
        "pos_label": options.pos_label is not None,
        "normalize": options.normalize,
    }
    for field, is_sent in sent.items():
        if is_sent:
            raise core.InputError(field, "does not apply with multilabel input")
    if convention.target not in (None, "classwise"):
        raise core.InputError(
            "target", f'must be "classwise" with multilabel input; got "{convention.target}"'
        )
    allowed = (*MULTILABEL_ALLOWED, "reliability")
    unsupported = sorted(set(options.metrics or ()) - set(allowed))
    if unsupported:
        raise core.InputError(
            "metrics",
            f"with multilabel input, must name metrics from {', '.join(allowed)}; got {unsupported[0]!r}",
        )
    name = body.pick("logits", "probs")
    values = body.array(name)
    if name == "logits":
        lp = multilabel_log_probs(logits=check_logit_matrix(values, field="logits"))
    else:
        lp = multilabel_log_probs(probs=check_unit_matrix(values, field="probs"), eps=options.eps)
    if body.fields.get("targets") is None:
        raise core.InputError(
            "targets", "are required with multilabel (an N×K matrix of 0/1 or probabilities)"
        )
    targets = check_unit_matrix(body.array("targets"), field="targets", shape=lp.log_p.shape)
    n, k = targets.shape
    if options.classes is not None and len(options.classes) != k:
        raise core.InputError(
            "classes", f"declares {len(options.classes)} classes but the predictions have {k} columns"
        )
    weights = None
    if body.fields.get("sample_weight") is not None:
        weights = core.check_sample_weight(body.array("sample_weight"), n)
    wanted = [name for name in options.metrics or MULTILABEL_METRICS if name != "reliability"]
    reliability = "reliability" in (options.metrics or ())
    report = multilabel_calibration(
        targets, lp, convention, sample_weight=weights, metrics=wanted, reliability=reliability
    )
    scale = 1.0 / math.log(log_base(options.base))
    factor = {"nll": scale}
    metrics = {name: report.means[name] * factor.get(name, 1.0) for name in wanted}
    per_class = {name: (report.per_class[name] * factor.get(name, 1.0)).tolist() for name in wanted}
    assert report.prep is not None
    boot = None if options.bootstrap is None else _bootstrap(options, report.prep, wanted, scale, weights)
    conv = report.convention
    return CalibrationResult(
        n=n,
        n_classes=k,
        metrics=CalibrationMetrics(**metrics),
        per_class=per_class,
        reliability=reliability_bins(report.reliability, weighted=weights is not None)
        if reliability
        else None,
        bootstrap=boot,
        convention=calibration_convention(
            options,
            conv,
            input="logits" if name == "logits" else "probs",
            form="multilabel",
            dtype=lp.log_p.dtype,
            weighted=weights is not None,
            stated=ConventionStated(
                n_bins=report.n_bins,
                n_excluded_bins=0,
                target="classwise",
                brier_scale="sum" if conv.brier_scale == "sum" else "half",
                eps=lp.eps,
                n_clipped=lp.n_clipped,
                tolerance=0.0,
                n_normalized=0,
                tests_on="positive_class",
                p_values="none computed for multilabel input",
                matches=(core.PRESETS[conv.preset].matches + "; " if conv.preset else "") + _MATCHES,
            ),
        ),
    )


def _bootstrap(
    options: CalibrationOptions,
    prep: MultilabelPairs,
    names: list[str],
    nll_scale: float,
    weights: np.ndarray | None,
) -> BootstrapResult:
    from .calibration import bootstrap_result

    spec = options.bootstrap
    assert spec is not None
    intervals = multilabel_bootstrap(prep, names, n_resamples=spec.n, level=spec.level, seed=spec.seed)
    return bootstrap_result(
        spec,
        intervals,
        nll_scale,
        "resample N rows (every column of a row together) with replacement "
        "(numpy.random.default_rng(seed).integers), bins fixed from the full sample (ace_nixon's ranges "
        "cut anew per resample); the mean over classes per resample; percentile interval "
        "(np.nanpercentile, linear).",
        weighted=weights is not None,
    )
