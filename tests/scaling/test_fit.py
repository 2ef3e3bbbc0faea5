"""Scaling-law fits recover known laws from noisy synthetic sweeps; bad input is refused clearly.

References are the generating laws themselves (and, for the outlier test, SciPy's plain
least-squares `curve_fit`), never numbers produced by the code under test.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from scipy.optimize import curve_fit

from radfm_jax.errors import ConfigError
from radfm_jax.scaling import fit as sf
from radfm_jax.scaling.fit import (
    ScalingFitError,
    best_per_value,
    bootstrap,
    compute_frontier,
    extrapolate,
    fit_joint,
    fit_power_law,
    group_budgets,
    isoflop_optimum,
)

TRUE = {"E": 0.1, "A": 2.0, "alpha": 0.3}
X = np.logspace(5, 9, 60)


def law(x: np.ndarray, E: float = 0.1, A: float = 2.0, alpha: float = 0.3) -> np.ndarray:
    return E + A * x**-alpha


def noisy(values: np.ndarray, noise: float, seed: int) -> np.ndarray:
    return values * (1 + noise * np.random.default_rng(seed).standard_normal(values.shape))


# ----------------------------------------------------------------------------- power law
@pytest.mark.parametrize("seed", range(5))
def test_power_law_recovers_a_decreasing_law(seed: int) -> None:
    """60 points, x in [1e5, 1e9], 2% multiplicative noise: |alpha - 0.3| <= 0.05 and
    |E - 0.1| <= 0.02; predictions within 3% of the noiseless law."""
    fit = fit_power_law(X, noisy(law(X), 0.02, seed), n_starts=8, seed=seed)
    assert fit.transform == "identity"
    assert fit.alpha == pytest.approx(TRUE["alpha"], abs=0.05)
    assert fit.E == pytest.approx(TRUE["E"], abs=0.02)
    np.testing.assert_allclose(fit.predict(X), law(X), rtol=0.03)


@pytest.mark.parametrize("seed", range(5))
def test_power_law_recovers_an_increasing_metric(seed: int) -> None:
    """AUROC = 1 - (E + A x^-alpha), 2% noise on the error: same tolerances as the loss; predict
    returns AUROC, not the error."""
    auroc = 1 - noisy(law(X), 0.02, seed)
    fit = fit_power_law(X, auroc, increasing_metric=True, n_starts=8, seed=seed)
    assert fit.transform == "one_minus"
    assert fit.alpha == pytest.approx(TRUE["alpha"], abs=0.05)
    assert fit.E == pytest.approx(TRUE["E"], abs=0.02)
    np.testing.assert_allclose(fit.predict(X), 1 - law(X), atol=0.005)
    np.testing.assert_allclose(fit.predict_error(X), law(X), rtol=0.03)


def test_power_law_is_exact_without_noise() -> None:
    """Noiseless data: every parameter within 1e-3 relative of the law's."""
    fit = fit_power_law(X, law(X))
    assert fit.E == pytest.approx(0.1, rel=1e-3)
    assert fit.A == pytest.approx(2.0, rel=1e-3)
    assert fit.alpha == pytest.approx(0.3, rel=1e-3)
    assert fit.params() == {"E": fit.E, "A": fit.A, "alpha": fit.alpha}
    np.testing.assert_allclose(fit.log_residuals(X, law(X)), 0.0, atol=1e-4)


def _least_squares_alpha(x: np.ndarray, y: np.ndarray) -> float:
    """Independent reference: ordinary least squares on log residuals with SciPy's curve_fit."""
    model = lambda log_x, E, A, alpha: np.log(E + A * np.exp(-alpha * log_x))
    (_, _, alpha), _ = curve_fit(
        model, np.log(x), np.log(y), p0=[0.1, 2.0, 0.3], bounds=(0, np.inf), max_nfev=20000
    )
    return alpha


@pytest.mark.parametrize("seed", range(3))
def test_one_outlier_barely_moves_the_huber_fit(seed: int) -> None:
    """40 points, 1% noise, one point at 3x its value (a diverged run) near the large-x end: the
    Huber fit's alpha moves by < 0.02; least squares on the same data moves by > 0.1."""
    x = np.logspace(5, 9, 40)
    clean = noisy(law(x), 0.01, seed)
    dirty = clean.copy()
    dirty[-3] *= 3.0
    huber_shift = abs(fit_power_law(x, dirty).alpha - fit_power_law(x, clean).alpha)
    ls_shift = abs(_least_squares_alpha(x, dirty) - _least_squares_alpha(x, clean))
    assert huber_shift < 0.02
    assert ls_shift > 0.1


def test_power_law_with_E_fixed() -> None:
    """E held at its true value (2% noise): alpha within 0.02 and A within 10% of the law's; E is
    exactly the fixed value and the fit records it as fixed."""
    fit = fit_power_law(X, noisy(law(X), 0.02, 0), fixed={"E": 0.1}, n_starts=8)
    assert fit.alpha == pytest.approx(0.3, abs=0.02)
    assert fit.A == pytest.approx(2.0, rel=0.1)
    assert fit.E == pytest.approx(0.1, rel=1e-12) and fit.fixed == {"E": 0.1}
    assert fit.log_A == pytest.approx(np.log(fit.A))


def test_a_small_sweep_fits_with_E_fixed_at_zero() -> None:
    """Three sizes cannot determine E, A and alpha (refused, naming the fix); with E = 0 the pure
    power law 2 x^-0.3 is recovered exactly, and the wrong direction is still refused."""
    x = np.array([1e5, 1e6, 1e7])
    pure = 2.0 * x**-0.3
    with pytest.raises(ScalingFitError, match=r"needs at least 4 distinct points, got 3.*fixed=\{'E'"):
        fit_power_law(x, pure)
    fit = fit_power_law(x, pure, fixed={"E": 0.0})
    assert fit.E == 0.0 and fit.log_E == -np.inf
    assert fit.A == pytest.approx(2.0, rel=1e-3) and fit.alpha == pytest.approx(0.3, rel=1e-3)
    np.testing.assert_allclose(fit.predict(1e9), 2.0 * 1e9**-0.3, rtol=1e-3)
    with pytest.raises(ScalingFitError, match="does not fall"):
        fit_power_law(x, 1 - pure, fixed={"E": 0.0})


@pytest.mark.parametrize(
    ("fixed", "message"),
    [
        ({"beta": 0.3}, r"cannot fix \['beta'\]: this law's parameters are \['A', 'E', 'alpha'\]"),
        ({"E": 0.5}, r"fixed E = 0.5 is not below the smallest observed error"),
        ({"E": -0.1}, r"fixed E must be >= 0"),
        ({"alpha": -0.3}, r"fixed alpha must be >= 0"),
        ({"A": 0.0}, r"fixed A must be > 0"),
        ({"alpha": float("nan")}, r"fixed alpha must be a finite number"),
        ({"E": 0.1, "A": 2.0, "alpha": 0.3}, "every parameter of the law is fixed"),
    ],
)
def test_fixing_a_parameter_refuses_bad_names_and_values(fixed, message) -> None:
    with pytest.raises(ScalingFitError, match=message):
        fit_power_law(X, law(X), fixed=fixed, n_starts=2)


def test_fixed_exponent_and_fixed_coefficient() -> None:
    """Fixing alpha (or A) at the truth leaves the other two to fit: both recovered within 1e-3
    relative on noiseless data."""
    by_alpha = fit_power_law(X, law(X), fixed={"alpha": 0.3})
    assert (by_alpha.E, by_alpha.A) == (pytest.approx(0.1, rel=1e-3), pytest.approx(2.0, rel=1e-3))
    by_a = fit_power_law(X, law(X), fixed={"A": 2.0})
    assert (by_a.E, by_a.alpha) == (pytest.approx(0.1, rel=1e-3), pytest.approx(0.3, rel=1e-3))


# ------------------------------------------------------------------------------------ joint
def _grid_4x4() -> tuple[np.ndarray, np.ndarray]:
    n, d = np.meshgrid(np.logspace(6, 9, 4), np.logspace(3, 6, 4))
    return n.ravel(), d.ravel()


def joint_law(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    return 0.5 + 50.0 * n**-0.3 + 20.0 * d**-0.35


@pytest.mark.parametrize("seed", range(3))
def test_joint_law_recovers_both_exponents(seed: int) -> None:
    """4 x 4 grid (N in [1e6, 1e9], D in [1e3, 1e6]), 2% noise: alpha (0.3) and beta (0.35)
    within 0.1; predictions within 5% of the noiseless law."""
    n, d = _grid_4x4()
    fit = fit_joint(n, d, noisy(joint_law(n, d), 0.02, seed), n_starts=12, seed=seed)
    assert fit.alpha == pytest.approx(0.3, abs=0.1)
    assert fit.beta == pytest.approx(0.35, abs=0.1)
    np.testing.assert_allclose(fit.predict(n, d), joint_law(n, d), rtol=0.05)


def test_joint_law_on_an_increasing_metric() -> None:
    """Recall@1 = 1 - joint law / 4 (values in (0.6, 0.9)), 1% noise: exponents within 0.1."""
    n, d = _grid_4x4()
    error = joint_law(n, d) / 4
    fit = fit_joint(n, d, 1 - noisy(error, 0.01, 0), increasing_metric=True, n_starts=12)
    assert fit.alpha == pytest.approx(0.3, abs=0.1)
    assert fit.beta == pytest.approx(0.35, abs=0.1)
    np.testing.assert_allclose(fit.predict(n, d), 1 - error, atol=0.01)


@pytest.mark.parametrize("seed", range(3))
def test_joint_law_with_E_fixed(seed: int) -> None:
    """The 4 x 4 grid with E held at its true 0.5: alpha and beta within 0.05 (0.1 when E is
    fitted too); E is reported as fixed."""
    n, d = _grid_4x4()
    fit = fit_joint(n, d, noisy(joint_law(n, d), 0.02, seed), fixed={"E": 0.5}, n_starts=12)
    assert fit.alpha == pytest.approx(0.3, abs=0.05)
    assert fit.beta == pytest.approx(0.35, abs=0.05)
    assert fit.E == pytest.approx(0.5) and fit.fixed == {"E": 0.5}
    with pytest.raises(ScalingFitError, match=r"parameters are \['A', 'B', 'E', 'alpha', 'beta'\]"):
        fit_joint(n, d, joint_law(n, d), fixed={"gamma": 1.0})


# The README's demo sweep as measured (4 CLIP sizes x 3 training subsets, 300 steps each):
# zero-shot AUROC barely moves with data, so the joint law's d term is not determined.
DEMO_N = np.repeat([85250, 244226, 700418, 1179650], 3).astype(float)
DEMO_D = np.tile([1880, 5668, 18952], 4).astype(float)
DEMO_AUROC = np.array([0.736, 0.738, 0.728, 0.736, 0.749, 0.754,
                       0.776, 0.767, 0.774, 0.759, 0.762, 0.771])


def test_a_fit_whose_exponent_runs_off_is_refused_and_fixing_E_fits_it() -> None:
    """A bootstrap resample of the demo sweep on which beta runs off to ~1000, so that B overflows
    float64 (the fit used to return B = inf): refused, saying which term diverged and how to fix
    a parameter; with E fixed at 0 the same points fit to finite numbers."""
    rows = [0, 1, 1, 2, 2, 3, 3, 3, 4, 6, 8, 11]
    args = DEMO_N[rows], DEMO_D[rows], DEMO_AUROC[rows]
    with pytest.raises(ScalingFitError, match=r"diverged: beta ran to .*\(B overflows float64\).*fixed="):
        fit_joint(*args, increasing_metric=True, n_starts=2)
    fit = fit_joint(*args, increasing_metric=True, n_starts=2, fixed={"E": 0.0})
    assert np.all(np.isfinite(list(fit.params().values())))
    assert np.all(np.isfinite(fit.predict(np.array([1e7]), np.array([2e5]))))


# ---------------------------------------------------------------------------------- IsoFLOP
CHINCHILLA = {"E": 1.69, "A": 406.4, "alpha": 0.34, "B": 410.7, "beta": 0.28}


def chinchilla_isoflop(seed: int, noise: float = 0.002) -> tuple[np.ndarray, ...]:
    """Five budgets C = 6 N D in [1e18, 1e22]; nine sizes per budget spanning two decades around
    the naive guess sqrt(C / 6) / 2, not around the true optimum."""
    rng = np.random.default_rng(seed)
    flops, n, d = [], [], []
    for budget in np.logspace(18, 22, 5):
        sizes = np.sqrt(budget / 6) / 2 * np.logspace(-1, 1, 9)
        flops += [budget] * 9
        n += list(sizes)
        d += list(budget / (6 * sizes))
    flops, n, d = map(np.array, (flops, n, d))
    c = CHINCHILLA
    loss = c["E"] + c["A"] * n ** -c["alpha"] + c["B"] * d ** -c["beta"]
    return flops, n, d, loss * (1 + noise * rng.standard_normal(loss.shape))


@pytest.mark.parametrize("seed", range(3))
def test_isoflop_recovers_the_compute_optimal_exponents(seed: int) -> None:
    """N* ~ C^a with a = beta / (alpha + beta) = 0.4516 and D* ~ C^b with b = alpha / (alpha +
    beta) = 0.5484 (Hoffmann et al. 2022, eq. 4): both within 0.05."""
    flops, n, d, loss = chinchilla_isoflop(seed)
    result = isoflop_optimum(flops, n, d, loss)
    a = CHINCHILLA["beta"] / (CHINCHILLA["alpha"] + CHINCHILLA["beta"])
    assert result.n_exponent == pytest.approx(a, abs=0.05)
    assert result.d_exponent == pytest.approx(1 - a, abs=0.05)
    assert len(result.budgets) == 5 and result.skipped == ()
    for budget in result.budgets:
        assert budget.in_range
        # D* follows from C = 6 N* D* because the runs satisfy it exactly.
        assert 6 * budget.n_opt * budget.d_opt == pytest.approx(budget.budget, rel=1e-9)


def test_isoflop_flags_an_optimum_outside_the_sampled_sizes() -> None:
    """The largest budget's nine sizes moved 300x smaller (noiseless), all below its optimum: its
    parabola's minimum lies beyond the largest size trained. It is still fitted, but flagged (in_range
    False, listed in ``extrapolated``) and warned about; the other budgets are not."""
    flops, n, d, loss = chinchilla_isoflop(0)
    top = flops == flops.max()
    n[top] /= 300
    d[top] = flops[top] / (6 * n[top])
    c = CHINCHILLA
    loss[top] = c["E"] + c["A"] * n[top] ** -c["alpha"] + c["B"] * d[top] ** -c["beta"]
    with pytest.warns(UserWarning, match=r"1 of 5 budgets .* 1e\+22") as caught:
        result = isoflop_optimum(flops, n, d, loss)
    assert result.extrapolated == (pytest.approx(1e22),)
    assert issubclass(caught[0].category, sf.ExtrapolationWarning)
    assert [b.in_range for b in result.budgets] == [True, True, True, True, False]
    outside = result.budgets[-1]
    assert outside.n_opt > outside.params.max()


def test_isoflop_maximises_an_increasing_metric() -> None:
    """The same sweep scored as 1 - loss / 10 has its optimum at the same model sizes."""
    flops, n, d, loss = chinchilla_isoflop(0)
    as_loss = isoflop_optimum(flops, n, d, loss)
    as_score = isoflop_optimum(flops, n, d, 1 - loss / 10, increasing_metric=True)
    np.testing.assert_allclose(
        [b.n_opt for b in as_score.budgets], [b.n_opt for b in as_loss.budgets], rtol=1e-6
    )
    with pytest.raises(ScalingFitError, match="has no minimum"):
        isoflop_optimum(flops, n, d, 1 - loss / 10)  # a score fitted as a loss has no minimum


def test_isoflop_groups_budgets_within_tolerance_and_skips_thin_ones() -> None:
    """Step rounding makes FLOPs differ by a few percent within one budget."""
    flops = np.array([1.00e18, 1.03e18, 0.99e18, 1e19, 1.04e19, 1e19, 1e20, 1e20])
    assert group_budgets(flops).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    n = np.array([1e7, 3e7, 1e8, 3e7, 1e8, 3e8, 1e8, 3e8])
    loss = np.array([3.0, 2.8, 2.9, 2.6, 2.5, 2.55, 2.3, 2.2])
    result = isoflop_optimum(flops, n, 1e10 / n, loss)
    assert len(result.budgets) == 2
    assert len(result.skipped) == 1 and "2 model size(s)" in result.skipped[0]


# -------------------------------------------------------------------------------- bootstrap
def test_bootstrap_intervals_cover_the_true_alpha() -> None:
    """95% percentile intervals (60 resamples, 30 points, 2% noise) contain alpha = 0.3 in at
    least 8 of 10 seeds."""
    x = np.logspace(5, 9, 30)
    refit = functools.partial(fit_power_law, n_starts=2)
    covered = 0
    for seed in range(10):
        boot = bootstrap(refit, x, noisy(law(x), 0.02, seed), n_boot=60, seed=seed)
        assert set(boot) == {"E", "A", "alpha"}
        low, high = boot["alpha"]
        assert low < high
        covered += low <= TRUE["alpha"] <= high
    assert covered >= 8


def test_bootstrap_intervals_widen_with_noise() -> None:
    """The alpha interval at 4% noise is wider than at 0.5% noise (same points, same seed)."""
    x = np.logspace(5, 9, 30)
    refit = functools.partial(fit_power_law, n_starts=2)
    widths = []
    for noise in (0.005, 0.04):
        boot = bootstrap(refit, x, noisy(law(x), noise, 3), n_boot=60)
        widths.append(boot["alpha"][1] - boot["alpha"][0])
    assert widths[1] > 2 * widths[0]


def test_bootstrap_counts_resamples_that_cannot_be_fitted() -> None:
    """The demo sweep, 40 resamples: a few leave too few distinct points and some drive an
    exponent to hundreds (which used to put B = inf into the refits, so an infinite interval for
    B and a NaN extrapolation band). Every interval and the band are now finite, and the failed
    resamples are counted (each was drawn again: 40 refits remain)."""
    failures = []

    def refit(n, d, y):
        try:
            return fit_joint(n, d, y, increasing_metric=True, n_starts=2)
        except ScalingFitError as error:
            failures.append(str(error))
            raise

    boot = bootstrap(refit, DEMO_N, DEMO_D, DEMO_AUROC, n_boot=40, ci=0.95, seed=1)
    assert np.all(np.isfinite(list(boot.values())))
    fit = fit_joint(DEMO_N, DEMO_D, DEMO_AUROC, increasing_metric=True, n_starts=16)
    band = extrapolate(fit, (np.array([1e7]), np.array([2e5])), boot)
    assert np.all(np.isfinite(band))
    assert band[1][0] <= band[0][0] <= band[2][0]
    assert boot.failed == len(failures) > 0 and len(boot.fits) == 40
    assert any("diverged" in failure for failure in failures)
    assert boot.last_failure == failures[-1]
    assert f"{len(failures)} of {40 + len(failures)} resamples" in boot.failure_note()


def test_bootstrap_gives_no_interval_to_a_fixed_parameter() -> None:
    x = np.logspace(5, 9, 30)
    refit = functools.partial(fit_power_law, fixed={"E": 0.1}, n_starts=2)
    boot = bootstrap(refit, x, noisy(law(x), 0.02, 0), n_boot=30)
    assert set(boot) == {"A", "alpha"} and boot.fixed == {"E": 0.1}
    assert boot["alpha"][0] <= 0.3 <= boot["alpha"][1]
    with pytest.raises(KeyError, match="fixed at 0.1"):
        boot["E"]
    assert boot.failed == 0 and boot.failure_note() == ""


def test_extrapolation_band_contains_the_truth_and_grows_beyond_the_data() -> None:
    """At 1e10 and 1e12 (beyond the data's 1e9) the 95% band contains the true law, and the
    band is wider further out."""
    x = np.logspace(5, 9, 40)
    fit = fit_power_law(x, noisy(law(x), 0.01, 0))
    boot = bootstrap(functools.partial(fit_power_law, n_starts=2), x, noisy(law(x), 0.01, 0),
                     n_boot=60)
    x_new = np.array([1e10, 1e12])
    prediction, low, high = extrapolate(fit, x_new, boot)
    np.testing.assert_allclose(prediction, fit.predict(x_new))
    assert np.all(low <= law(x_new)) and np.all(law(x_new) <= high)
    assert high[1] - low[1] > high[0] - low[0]


def test_extrapolation_of_a_joint_fit() -> None:
    n, d = _grid_4x4()
    y = noisy(joint_law(n, d), 0.01, 0)
    fit = fit_joint(n, d, y, n_starts=8)
    boot = bootstrap(functools.partial(fit_joint, n_starts=2), n, d, y, n_boot=20)
    prediction, low, high = extrapolate(fit, (np.array([1e10]), np.array([1e7])), boot)
    assert low[0] <= prediction[0] <= high[0]
    assert {"alpha", "beta"} <= set(boot)


def test_bootstrap_of_isoflop_exponents() -> None:
    flops, n, d, loss = chinchilla_isoflop(0, noise=0.005)
    boot = bootstrap(isoflop_optimum, flops, n, d, loss, n_boot=50)
    low, high = boot["n_exponent"]
    assert low <= 0.28 / (0.34 + 0.28) <= high


# ----------------------------------------------------------------------------------- sweeps
def test_best_per_value_and_compute_frontier() -> None:
    """Hand-checked: per x the minimum (maximum for increasing metrics); the frontier keeps a
    run only if it beats every run that is cheaper or within 5% of its cost."""
    x = [1, 2, 1, 2, 3]
    y = [0.5, 0.4, 0.3, 0.6, 0.35]
    values, best = best_per_value(x, y)
    assert values.tolist() == [1, 2, 3] and best.tolist() == [0.3, 0.4, 0.35]
    assert best_per_value(x, y, increasing_metric=True)[1].tolist() == [0.5, 0.6, 0.35]
    flops = [10, 20, 30, 40, 50]
    loss = [3.0, 3.2, 2.5, 2.6, 2.0]
    assert compute_frontier(flops, loss).tolist() == [0, 2, 4]
    assert compute_frontier(flops, [0.5, 0.6, 0.55, 0.7, 0.65], increasing_metric=True).tolist() == [0, 1, 3]
    # Runs of one budget (FLOPs within 5%): only the best of them, if it beats cheaper budgets.
    flops = [100, 101, 102, 1000, 1010]
    assert compute_frontier(flops, [3.0, 2.5, 2.8, 2.6, 2.2]).tolist() == [1, 4]


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("x", "y", "kwargs", "message"),
    [
        ([1e5, 1e6, 1e7], [0.3, 0.2, 0.15], {}, "needs at least 4 distinct points, got 3"),
        ([1e5, 1e5, 1e6, 1e6, 1e7], [0.3] * 5, {}, "needs at least 4 distinct points, got 3"),
        ([1e5, 0.0, 1e7, 1e8], [0.3, 0.2, 0.15, 0.1], {}, r"x must be > 0.*index 1"),
        ([1e5, 1e6, 1e7, 1e8], [0.3, np.nan, 0.15, 0.1], {}, "y has 1 NaN"),
        ([1e5, 1e6, 1e7, 1e8], [0.3, 0.2, -0.1, 0.1], {}, r"y must be > 0.*increasing_metric=True"),
        ([1e5, 1e6, 1e7, 1e8], [70.0, 80.0, 85.0, 90.0], {"increasing_metric": True},
         r"y must be < 1.*not percent"),
        ([1e5, 1e6, 1e7, 1e8], [0.3, 0.2, 0.15], {}, "same length"),
        ([1e5, 1e6, 1e7, 1e8], [0.3, 0.2, 0.15, 0.1], {"huber_delta": 0.0}, "huber_delta"),
    ],
)
def test_power_law_refuses_bad_input(x, y, kwargs, message) -> None:
    with pytest.raises(ScalingFitError, match=message) as error:
        fit_power_law(x, y, **kwargs)
    assert isinstance(error.value, ConfigError) and isinstance(error.value, ValueError)


def test_joint_and_isoflop_refuse_bad_input() -> None:
    n, d = _grid_4x4()
    with pytest.raises(ScalingFitError, match="d takes 1 distinct value"):
        fit_joint(n, np.full_like(n, 1e4), joint_law(n, d))
    with pytest.raises(ScalingFitError, match="needs at least 6 distinct points, got 5"):
        fit_joint(n[[0, 1, 2, 5, 10]], d[[0, 1, 2, 5, 10]], joint_law(n, d)[[0, 1, 2, 5, 10]])
    with pytest.raises(ScalingFitError, match="found 1"):
        isoflop_optimum([1e18] * 3, [1e7, 3e7, 1e8], [1e9, 3e8, 1e8], [3.0, 2.0, 3.0])
    with pytest.raises(ScalingFitError, match="examples must be > 0"):
        isoflop_optimum([1e18] * 3, [1e7, 3e7, 1e8], [1e9, 0, 1e8], [3.0, 2.0, 3.0])


def test_bootstrap_refuses_bad_settings_and_unfittable_data() -> None:
    x = np.logspace(5, 9, 30)
    with pytest.raises(ScalingFitError, match="ci must be in"):
        bootstrap(fit_power_law, x, law(x), ci=95)
    with pytest.raises(ScalingFitError, match="same length"):
        bootstrap(fit_power_law, x, law(x)[:-1])
    # Four points: most resamples repeat one, leaving fewer than 4 distinct x.
    with pytest.raises(ScalingFitError, match="could not be fitted"):
        bootstrap(fit_power_law, x[:4], law(x[:4]), n_boot=50)


def test_a_fit_whose_data_run_the_wrong_way_is_refused() -> None:
    """An error rate (falls with scale) fitted as if it were AUROC, and AUROC fitted as a loss:
    both refused with the fix named, rather than returning alpha = 0; the right direction fits."""
    error_rate = noisy(law(X), 0.02, 0)
    with pytest.raises(ScalingFitError, match=r"does not rise .* increasing_metric=False"):
        fit_power_law(X, error_rate, increasing_metric=True, n_starts=2)
    assert fit_power_law(X, error_rate, n_starts=2).alpha == pytest.approx(0.3, abs=0.05)
    with pytest.raises(ScalingFitError, match=r"does not fall .* increasing_metric=True"):
        fit_power_law(X, 1 - error_rate, n_starts=2)
    n, d = np.meshgrid(np.logspace(6, 8, 4), np.logspace(4, 6, 4))
    auroc = 1 - (0.1 + 3 * n.ravel() ** -0.3 + 1 * d.ravel() ** -0.3)
    with pytest.raises(ScalingFitError, match="along any input"):
        fit_joint(n.ravel(), d.ravel(), auroc, n_starts=2)
