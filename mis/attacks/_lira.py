"""The likelihood-ratio attack LiRA (Carlini et al. 2022) over stored signals.

Notation: ``s[m, j, q]`` is the signal (:func:`~mis.attacks.lira_signal`) of
example ``j`` under query (augmentation) ``q`` on model ``m``; ``keep[m, j]``
says whether model ``m`` trained on ``j``. For a target model ``t`` every other
model is a shadow. Per example and query, over the shadows,

* IN set: shadows with ``keep[m, j]``, OUT set: the others;
* centre ``μ_in, μ_out``: the mean (default) or the median;
* variance ``σ²_in = SS_in / n_in`` (maximum likelihood, ddof 0; ``SS`` is the
  sum of squared deviations about the mean), likewise ``σ²_out``; with
  ``fixed_variance`` one pooled variance for all examples and queries,
  ``σ²_in = Σ_{j,q} SS_in / Σ_{j,q} n_in`` (likewise OUT).

Scores (higher = more likely a member), averaged over queries:

* online (Carlini et al., Alg. 1 and Eq. 3 with Gaussians):
  ``log N(s; μ_in, σ²_in) − log N(s; μ_out, σ²_out)``;
* offline (Eq. 4, one-sided): ``log Φ((s − μ_out) / σ_out)``.

Zero variance rule: every variance (per example or pooled) below
``var_floor`` (default 1e-12, i.e. σ ≥ 1e-6 in signal units, far below the
spread of real scaled logits) is raised to ``var_floor`` and a
:class:`~mis.exceptions.DegenerateStatisticWarning` reports how many were
raised, so scores are always finite.

``compat="carlini2022"`` reproduces tensorflow/privacy
``research/mi_lira_2021/plot.py`` bit for bit instead (see :func:`lira`).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import special, stats

from mis._kernels import lira as _k
from mis._validation import boolean, choice, real
from mis.attacks._inputs import (
    COMPAT_MODES,
    chunk_progress,
    chunk_spans,
    examples_per_chunk,
    float_array,
    kernel_view,
    membership,
    nonfinite_error,
    target_index,
)
from mis.exceptions import DegenerateStatisticWarning, MisValueError

__all__ = ["lira", "lira_all_targets"]

MODES = ("online", "offline")
CENTERS = ("mean", "median")
DEFAULT_VAR_FLOOR = 1e-12
_REF_MAX_SIZE = 100_000  # in_size / out_size cap of the reference code


# --------------------------------------------------------------------------------------------
# validation
# --------------------------------------------------------------------------------------------
def _signals_array(signals) -> np.ndarray:
    """Signals ``(n_models, n_examples, n_queries)`` with a target and at least one shadow."""
    arr = float_array(signals, "signals", 3, "(n_models, n_examples, n_queries)")
    if arr.shape[0] < 2:
        raise MisValueError(
            f"signals must hold at least 2 models (a target and a shadow); got {arr.shape[0]}"
        )
    return arr


def _options(mode, fixed_variance, center, compat, var_floor) -> tuple[bool, bool, bool, float]:
    """Checked options as ``(online, fixed_variance, median centre, var_floor)``."""
    choice(mode, "mode", MODES)
    choice(compat, "compat", COMPAT_MODES)
    fixed_variance = boolean(fixed_variance, "fixed_variance")
    if center is None:
        center = "median" if compat else "mean"
    choice(center, "center", CENTERS)
    if compat and center != "median":
        raise MisValueError(
            "center must be 'median' (or None) with compat='carlini2022': the reference code "
            f"centres on the median; got {center!r}"
        )
    var_floor = real(var_floor, "var_floor", 0.0, open_lo=True)
    return mode == "online", fixed_variance, center == "median", var_floor


def _check_counts(n_in: np.ndarray, n_out: np.ndarray, online: bool, who: str) -> None:
    """Every example needs an OUT shadow (and an IN shadow online)."""
    for counts, what in ((n_out, "OUT"), (n_in, "IN")):
        if what == "IN" and not online:
            continue
        bad = counts < 1
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise MisValueError(
                f"keep: example {j} is never {what} among the shadow models {who} "
                f"({int(bad.sum())} examples affected); "
                f"{'online' if online else 'offline'} LiRA needs at least one {what} shadow per "
                "example — train more shadow models or drop those examples"
            )


def _stat_view(sig, keep, a, b):
    """(signals, keep, start, stop) for a kernel: in place when possible, else a float64 copy."""
    direct = kernel_view(sig)
    if direct is not None:
        return direct, keep, a, b
    block = np.ascontiguousarray(sig[:, a:b], dtype=np.float64)
    return block, np.ascontiguousarray(keep[:, a:b]), 0, b - a


# --------------------------------------------------------------------------------------------
# scoring shared by the per-target and leave-one-out paths
# --------------------------------------------------------------------------------------------
class _Floor:
    """Applies the variance floor and counts what it raised."""

    def __init__(self, var_floor: float):
        self.value = var_floor
        self.raised = 0
        self.total = 0

    def __call__(self, var):
        var = np.asarray(var, dtype=np.float64)
        low = var < self.value
        self.raised += int(low.sum())
        self.total += var.size
        return np.maximum(var, self.value)

    def warn(self):
        if self.raised:
            warnings.warn(
                f"{self.raised} of {self.total} LiRA variances were below var_floor = "
                f"{self.value:g} (a single shadow in the set, or a constant signal) and were "
                "raised to it",
                DegenerateStatisticWarning,
                stacklevel=3,
            )


def _score(s, mu_in, var_in, mu_out, var_out, online: bool) -> np.ndarray:
    """Per-query LiRA log-likelihood ratio (online) or log Φ (offline), averaged over queries."""
    if online:
        d_in = s - mu_in
        d_out = s - mu_out
        term = 0.5 * (d_out * d_out / var_out - d_in * d_in / var_in)
        term += 0.5 * (np.log(var_out) - np.log(var_in))
    else:
        term = special.log_ndtr((s - mu_out) / np.sqrt(var_out))
    return term.mean(axis=-1)


# --------------------------------------------------------------------------------------------
# default mode
# --------------------------------------------------------------------------------------------
def _lira_one(sig, keep, t, online, fixed, median, floor, size) -> np.ndarray:
    n_models, n_examples, n_queries = sig.shape
    stats_ = {k: np.empty((n_examples, n_queries)) for k in ("mu_in", "ss_in", "mu_out", "ss_out")}
    counts = np.empty(n_examples, dtype=np.int64)
    for a, b in chunk_spans(n_examples, size):
        view, kv, lo, hi = _stat_view(sig, keep, a, b)
        bad = _k.shadow_stats(
            view,
            kv,
            t,
            lo,
            hi,
            median,
            stats_["mu_in"][a:b],
            stats_["ss_in"][a:b],
            stats_["mu_out"][a:b],
            stats_["ss_out"][a:b],
            counts[a:b],
        )
        if bad:
            raise nonfinite_error(sig, "signals", bad)
    _check_counts(counts, (n_models - 1) - counts, online, f"of target {t}")
    s = np.ascontiguousarray(sig[t], dtype=np.float64)
    if online and not fixed:  # the common case, fused in one pass
        out = np.empty(n_examples)
        n_out = (n_models - 1) - counts
        floor.total += 2 * counts.size * n_queries
        floor.raised += _k.online_scores(
            s,
            stats_["mu_in"],
            stats_["ss_in"],
            counts,
            stats_["mu_out"],
            stats_["ss_out"],
            n_out,
            floor.value,
            out,
        )
        return out
    n_in = counts.astype(np.float64)[:, None]
    n_out = (n_models - 1) - n_in
    if fixed:
        var_in = floor(stats_["ss_in"].sum() / (n_in.sum() * n_queries)) if online else None
        var_out = floor(stats_["ss_out"].sum() / (n_out.sum() * n_queries))
    else:
        var_in = floor(stats_["ss_in"] / n_in) if online else None
        var_out = floor(stats_["ss_out"] / n_out)
    return _score(s, stats_["mu_in"], var_in, stats_["mu_out"], var_out, online)


def _loo_chunk(sig, keep, a, b, median):
    n_models, _, n_queries = sig.shape
    shape = (n_models, b - a, n_queries)
    mu_in, ss_in, mu_out, ss_out = (np.empty(shape) for _ in range(4))
    view, kv, lo, hi = _stat_view(sig, keep, a, b)
    bad = _k.loo_stats(view, kv, lo, hi, median, mu_in, ss_in, mu_out, ss_out)
    if bad:
        raise nonfinite_error(sig, "signals", bad)
    return mu_in, ss_in, mu_out, ss_out


def _lira_loo(sig, keep, online, fixed, median, floor, size) -> np.ndarray:
    n_models, n_examples, n_queries = sig.shape
    n_in_all = keep.sum(axis=0)
    spans = chunk_spans(n_examples, size)
    if fixed:  # pass 1: pooled sums of squares per target
        tot_in = np.zeros(n_models)
        tot_out = np.zeros(n_models)
        cnt_in = np.zeros(n_models)
        cnt_out = np.zeros(n_models)
        for a, b in chunk_progress(spans, "LiRA pooled variance"):
            _, ss_in, _, ss_out = _loo_chunk(sig, keep, a, b, False)
            n_in = n_in_all[None, a:b] - keep[:, a:b]
            tot_in += ss_in.sum(axis=(1, 2))
            tot_out += ss_out.sum(axis=(1, 2))
            cnt_in += n_in.sum(axis=1) * n_queries
            cnt_out += ((n_models - 1) - n_in).sum(axis=1) * n_queries
        fixed_in = floor(tot_in / cnt_in)[:, None, None] if online else None
        fixed_out = floor(tot_out / cnt_out)[:, None, None]
    out = np.empty((n_models, n_examples))
    for a, b in chunk_progress(spans, "LiRA leave-one-out"):
        mu_in, ss_in, mu_out, ss_out = _loo_chunk(sig, keep, a, b, median)
        if fixed:
            var_in, var_out = fixed_in, fixed_out
        else:
            n_in = (n_in_all[None, a:b] - keep[:, a:b]).astype(np.float64)[:, :, None]
            var_in = floor(ss_in / n_in) if online else None
            var_out = floor(ss_out / ((n_models - 1) - n_in))
        out[:, a:b] = _score(
            np.asarray(sig[:, a:b], dtype=np.float64), mu_in, var_in, mu_out, var_out, online
        )
    return out


# --------------------------------------------------------------------------------------------
# compat="carlini2022"
# --------------------------------------------------------------------------------------------
def _ref_values(sig, in_set, shadows, a, b, size) -> np.ndarray:
    """The first ``size`` shadow values (load order) of each example in a set: (b-a, size, Q).

    ``in_set`` is the (n_shadows, b - a) membership of the set; equals the
    reference's ``np.array([scores[keep[:, j], j, :][:size] for j ...])``.
    """
    block = np.asarray(sig[shadows, a:b], dtype=np.float64)
    first = np.argsort(~in_set, axis=0, kind="stable")[:size]  # set members first, in order
    vals = block[first, np.arange(b - a)[None, :], :]
    return np.ascontiguousarray(vals.transpose(1, 0, 2))


def _lira_carlini2022(sig, keep, t, online, fixed, size) -> np.ndarray:
    """Reference plot.py ``generate_ours`` / ``generate_ours_offline`` for target ``t``."""
    n_models, n_examples, _ = sig.shape
    shadows = np.array([m for m in range(n_models) if m != t])
    k_sh = keep[shadows]
    n_in = k_sh.sum(axis=0)
    in_size = min(int(n_in.min()), _REF_MAX_SIZE)
    out_size = min(int((shadows.size - n_in).min()), _REF_MAX_SIZE)
    spans = chunk_spans(n_examples, size)
    glob = None
    if fixed:  # np.std over the whole truncated IN (online) / OUT (offline) matrix
        which, wsize = (True, in_size) if online else (False, out_size)
        full = np.empty((n_examples, wsize, sig.shape[2]))
        for a, b in spans:
            member = k_sh[:, a:b] if which else ~k_sh[:, a:b]
            full[a:b] = _ref_values(sig, member, shadows, a, b, wsize)
        glob = np.std(full)
        del full
    out = np.empty(n_examples)
    for a, b in spans:
        sc = np.asarray(sig[t, a:b], dtype=np.float64)
        if not np.isfinite(sc).all():
            raise nonfinite_error(sig, "signals", int((~np.isfinite(sc)).sum()))
        dat_out = _ref_values(sig, ~k_sh[:, a:b], shadows, a, b, out_size)
        if not np.isfinite(dat_out).all():
            raise nonfinite_error(sig, "signals", int((~np.isfinite(dat_out)).sum()))
        mean_out = np.median(dat_out, 1)
        if online:
            dat_in = _ref_values(sig, k_sh[:, a:b], shadows, a, b, in_size)
            if not np.isfinite(dat_in).all():
                raise nonfinite_error(sig, "signals", int((~np.isfinite(dat_in)).sum()))
            mean_in = np.median(dat_in, 1)
            if fixed:
                std_in = glob
                std_out = glob  # the reference uses the IN std for both
            else:
                std_in = np.std(dat_in, 1)
                std_out = np.std(dat_out, 1)
            pr_in = -stats.norm.logpdf(sc, mean_in, std_in + 1e-30)
            pr_out = -stats.norm.logpdf(sc, mean_out, std_out + 1e-30)
            score = pr_in - pr_out
        else:
            std_out = glob if fixed else np.std(dat_out, 1)
            score = stats.norm.logpdf(sc, mean_out, std_out + 1e-30)  # two-sided
        # the reference ranks by -prediction; return that, so higher = member
        out[a:b] = -score.mean(1)
    return out


def _warn_nonfinite_compat(scores: np.ndarray) -> None:
    bad = ~np.isfinite(scores)
    if bad.any():
        warnings.warn(
            f"{int(bad.sum())} LiRA scores are non-finite: compat='carlini2022' reproduces the "
            "reference's std + 1e-30 rule, which breaks down when a std is 0; use compat=None "
            "for the var_floor rule",
            DegenerateStatisticWarning,
            stacklevel=3,
        )


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------
def lira(
    signals,
    keep,
    target,
    *,
    mode="online",
    fixed_variance=False,
    center=None,
    compat=None,
    var_floor=DEFAULT_VAR_FLOOR,
    chunk_size=None,
) -> np.ndarray:
    """LiRA membership scores of every example on one target model.

    Every model other than ``target`` is a shadow; see the module docstring
    for the exact estimator.

    Parameters
    ----------
    signals : array_like of float, shape (n_models, n_examples, n_queries)
        From :func:`~mis.attacks.lira_signal`; may be a memory map (read in
        chunks of examples).
    keep : array_like of bool, shape (n_models, n_examples)
        ``keep[m, j]``: model ``m`` trained on example ``j``.
    target : int
        Index of the target model (negative counts from the end; ``-1`` is the
        reference code's choice).
    mode : {"online", "offline"}
        Online: Gaussian likelihood ratio IN vs OUT (Carlini et al. 2022,
        Alg. 1). Offline: one-sided ``log Φ((s − μ_out)/σ_out)`` (Eq. 4).
    fixed_variance : bool, default False
        One pooled IN variance and one pooled OUT variance for all examples
        and queries instead of per-example variances.
    center : {None, "mean", "median"}
        Centre of the IN/OUT Gaussians; ``None`` means ``"mean"`` (``"median"``
        with compat). The variance is always about the mean.
    compat : {None, "carlini2022"}
        Reproduce tensorflow/privacy ``research/mi_lira_2021/plot.py``
        (``generate_ours`` / ``generate_ours_offline``) bit for bit, quirks
        included: centre = ``np.median``, spread = ``np.std`` (ddof 0) plus
        1e-30; IN/OUT sets truncated to their smallest size over examples,
        keeping the first shadows in model order; fixed variance = the std of
        *all* truncated IN values (online, used for both IN and OUT — between-
        example spread included) or of all OUT values (offline); offline is
        the two-sided ``scipy.stats.norm.logpdf`` of the OUT Gaussian, so very
        low signals also score as members. The reference ranks by
        ``-prediction``; this returns exactly that array. ``var_floor`` is
        not used; a non-finite score (a zero std) is kept, with a warning.
        With ``target=-1`` the shadows are the reference's ``keep[:-1]``.
    var_floor : float, default 1e-12
        Lower bound of every variance (the zero-variance rule).
    chunk_size : int, optional
        Examples per chunk (default: about 128 MiB of signals).

    Returns
    -------
    ndarray of float64, shape (n_examples,)
        Higher = more likely a member of ``target``.

    Raises
    ------
    MisValueError
        Shapes that do not match, non-finite signals, a target out of range,
        or an example that is never OUT (or, online, never IN) among the shadows.

    References
    ----------
    Carlini, Chien, Nasr, Song, Terzis, Tramèr (2022), *Membership inference
    attacks from first principles*, IEEE S&P, §4 (Alg. 1, Eq. 3–4).
    """
    online, fixed, median, var_floor = _options(mode, fixed_variance, center, compat, var_floor)
    sig = _signals_array(signals)
    n_models, n_examples, n_queries = sig.shape
    k = membership(keep, n_models, n_examples)
    t = target_index(target, n_models)
    size = examples_per_chunk(chunk_size, n_examples, n_models * n_queries * 8)
    if compat:
        n_in = k.sum(axis=0) - k[t]
        _check_counts(n_in, (n_models - 1) - n_in, online, f"of target {t}")
        scores = _lira_carlini2022(sig, k, t, online, fixed, size)
        _warn_nonfinite_compat(scores)
        return scores
    floor = _Floor(var_floor)
    scores = _lira_one(sig, k, t, online, fixed, median, floor, size)
    floor.warn()
    return scores


def lira_all_targets(
    signals,
    keep,
    *,
    mode="online",
    fixed_variance=False,
    center=None,
    compat=None,
    var_floor=DEFAULT_VAR_FLOOR,
    chunk_size=None,
) -> np.ndarray:
    """LiRA scores with each model in turn as the target and all others as shadows.

    Same estimator as :func:`lira` (parameters alike). Strategy, default
    mode: per example and query the mean, sum of squared deviations and (for
    the median centre) the sorted values of the full IN and OUT sets are
    computed once; each target's leave-one-out statistics are then downdated
    in O(1) — ``mean' = mean + (mean − v)/(n − 1)``, ``SS' = SS − (v − mean)(v −
    mean')``, the median read off the sorted values with the target's rank
    skipped — so the cost is O(n_models) per example and query, not
    O(n_models²). Results equal :func:`lira` per target up to floating-point
    rounding of the downdate (medians exactly). With ``fixed_variance`` the
    signals are read twice (pooled variances first). With
    ``compat="carlini2022"`` the reference's truncation and global std depend
    on the target in ways that do not downdate, so :func:`lira` is called
    per target (n_models times the work; bit-exact).

    Returns
    -------
    ndarray of float64, shape (n_models, n_examples)
        Row ``t``: scores of every example on target ``t``.

    Raises
    ------
    MisValueError
        As :func:`lira`; an example must be IN (online) and OUT in at least
        two models, so that every target leaves one of each among its shadows.
    """
    online, fixed, median, var_floor = _options(mode, fixed_variance, center, compat, var_floor)
    sig = _signals_array(signals)
    n_models, n_examples, n_queries = sig.shape
    k = membership(keep, n_models, n_examples)
    n_in = k.sum(axis=0)
    n_out = n_models - n_in
    # the worst target removes one member of a non-empty set
    _check_counts(n_in - (n_in > 0), n_out - (n_out > 0), online, "of some target")
    # leave-one-out keeps about ten (n_models, chunk, n_queries) float64 arrays alive
    size = examples_per_chunk(chunk_size, n_examples, 10 * n_models * n_queries * 8)
    if compat:
        out = np.empty((n_models, n_examples))
        for t in chunk_progress(range(n_models), "LiRA (carlini2022) targets"):
            out[t] = _lira_carlini2022(sig, k, t, online, fixed, size)
        _warn_nonfinite_compat(out)
        return out
    floor = _Floor(var_floor)
    out = _lira_loo(sig, k, online, fixed, median, floor, size)
    floor.warn()
    return out
