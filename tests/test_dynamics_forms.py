"""Fixed points and their stability for every RateRNN form, against SciPy on the form's own step (float64)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy import optimize

import schurjax as sj
from schurjax import dynamics
from schurjax.dynamics.points import step_jacobians

TOL = 1e-6


def phi(name, a):
    return {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0), "softplus": lambda z: np.log1p(np.exp(z))}[name](a)


def step(h, W, u, alpha, name, form):
    """The form's own update (schurjax.rnn docstring), written out independently in float64."""
    if form == "rate":
        return (1 - alpha) * h + alpha * phi(name, W @ h + u)
    if form == "post":
        return phi(name, (1 - alpha) * h + alpha * (W @ h + u))
    return (1 - alpha) * h + alpha * (W @ phi(name, h) + u)


def fd_jacobian(h, W, u, alpha, name, form, eps=1e-6):
    n = h.size
    J = np.empty((n, n))
    for j in range(n):
        e = np.zeros(n)
        e[j] = eps
        J[:, j] = (step(h + e, W, u, alpha, name, form) - step(h - e, W, u, alpha, name, form)) / (2 * eps)
    return J


def scipy_points(W, u, alpha, name, form, starts):
    """SciPy's hybrid Powell root finder on ``step(h) - h`` (finite-difference Jacobian), deduplicated."""
    found = []
    for s in starts:
        sol = optimize.root(lambda h: step(h, W, u, alpha, name, form) - h, s, method="hybr", options={"xtol": 1e-13})
        F = step(sol.x, W, u, alpha, name, form) - sol.x
        if np.linalg.norm(F) <= alpha * TOL and not any(np.linalg.norm(sol.x - f) < 1e-5 for f in found):
            found.append(sol.x)
    return np.array(found).reshape(-1, W.shape[0])


def make_model(n, alpha, name, form, seed):
    rng = np.random.default_rng(seed)
    gain = 1.8 if name == "tanh" else 0.7  # several tanh fixed points; a bounded relu/softplus network
    W = rng.standard_normal((n, n)) * gain / np.sqrt(n)
    b = 0.3 * rng.standard_normal(n)
    model = sj.RateRNN.from_arrays(
        W_in=rng.standard_normal((n, 1)), W_rec=W, b=b, W_out=np.ones((1, n)), alpha=alpha, nonlinearity=name, form=form
    )
    return model, np.asarray(model.W_rec, np.float64), np.asarray(model.b, np.float64)


# every form and nonlinearity once, several alphas (each case compiles its own solver: keep the list short;
# test_step_jacobians_at_any_state covers every form x nonlinearity)
CASES = [
    ("rate", "tanh", 0.2),
    ("rate", "relu", 0.5),
    ("post", "tanh", 0.5),
    ("post", "softplus", 0.2),
    ("current", "relu", 0.2),
    ("current", "tanh", 0.05),
]


@pytest.mark.parametrize(("form", "name", "alpha"), CASES)
def test_points_and_stability_against_scipy(form, name, alpha):
    n = 8
    model, W, b = make_model(n, alpha, name, form, seed=hash((form, name)) % 1000)
    sf = sj.ordered_schur(W)
    variants = sj.ablate.Variants.concat(sj.ablate.all_nonnormal(sf), sj.ablate.single_couplings(sf)[:1])
    fp = dynamics.fixed_points(
        model, sf, variants, key=jax.random.key(3), n_starts=12, base_starts=64, n_trials=8, relax_steps=20
    )
    assert fp.dynamics == model.dynamics and len(fp.base) >= 1
    dT = variants.delta_T()
    for k, ps in enumerate([fp.base, *fp.sets]):
        Wk = sf.reconstruct() if k == 0 else sf.Q @ (sf.T + dT[k - 1]) @ sf.Q.T
        starts = np.concatenate([fp.base.points, fp.starts]) if k == 0 else fp.starts_of(Wk, b)
        ref = scipy_points(Wk, b, alpha, name, form, starts)
        ours = ps.points
        # every reported point is a fixed point of the model's own step, in float64
        for h in ours:
            assert np.linalg.norm(step(h, Wk, b, alpha, name, form) - h) <= alpha * TOL * 1.01
        # every point SciPy finds from the same starts is reported (and for tanh the two sets agree)
        d = np.linalg.norm(ours[:, None] - ref[None], axis=-1)
        assert ref.shape[0] >= 1 and np.all(d.min(axis=0) <= 1e-6), (k, ref.shape, ours.shape)
        if name == "tanh":
            assert ref.shape[0] == ours.shape[0], (k, ref.shape, ours.shape)
        # stability from the spectral radius of a finite-difference Jacobian of the step
        for j, h in enumerate(ours):
            ev = np.linalg.eigvals(fd_jacobian(h, Wk, b, alpha, name, form))
            r = np.abs(ev).max()
            assert abs(r - ps.radius[j]) <= 1e-5 * max(1.0, r), (k, j, r, ps.radius[j])
            if abs(r - 1.0) > 1e-4:
                assert bool(ps.stable[j]) == (r < 1.0)
            assert ps.n_unstable[j] == int((np.abs(ev) > 1.0 + 1e-6).sum()) or abs(r - 1) < 1e-4


@pytest.mark.parametrize("form", ["rate", "post", "current"])
@pytest.mark.parametrize("name", ["tanh", "relu", "softplus"])
def test_step_jacobians_at_any_state(form, name):
    model, W, b = make_model(6, 0.3, name, form, seed=5)
    P = np.random.default_rng(6).standard_normal((4, 6))
    J = step_jacobians(W, P, b, model)
    for p in range(4):
        np.testing.assert_allclose(J[p], fd_jacobian(P[p], W, b, 0.3, name, form), atol=1e-6)
    # the jax step agrees with the written-out one (same model)
    h = np.asarray(model.step(P[0].astype(np.float32), b.astype(np.float32)), np.float64)
    np.testing.assert_allclose(h, step(P[0], W, b, 0.3, name, form), atol=1e-5)


def test_rate_form_points_do_not_depend_on_alpha_but_stability_does():
    n = 8
    _, W, b = make_model(n, 1.0, "tanh", "rate", seed=11)
    starts = np.random.default_rng(12).uniform(-1, 1, (32, n))
    one = dynamics.solve_points(W[None], b, starts)[0]
    leaky = dynamics.solve_points(W[None], b, starts, dynamics=sj.rnn.Dynamics(0.1, "tanh", "rate"))[0]
    np.testing.assert_array_equal(one, leaky)  # the same equation tanh(W h + u) = h
    ok = np.linalg.norm(np.tanh(one @ W.T + b) - one, axis=1) <= TOL
    pts = one[ok]
    assert len(pts) >= 1
    _, _, l2, _ = dynamics.classify(W, pts, u=b, dynamics=sj.rnn.Dynamics(0.1, "tanh", "rate"))
    # J_leaky = 0.9 I + 0.1 J_1: its spectral radius is max |0.9 + 0.1 mu| over the eigenvalues mu of J_1
    mu = np.linalg.eigvals((1.0 - pts * pts)[:, :, None] * W)
    np.testing.assert_allclose(np.abs(l2), np.abs(0.9 + 0.1 * mu).max(axis=1), rtol=1e-9)


def test_errors_name_the_argument():
    W = np.eye(3)
    with pytest.raises(ValueError, match=r"^classify: the rate form with relu needs the drive u"):
        dynamics.classify(W, np.zeros((1, 3)), dynamics=sj.rnn.Dynamics(0.5, "relu", "rate"))
    with pytest.raises(ValueError, match=r"^classify: dynamics must name a nonlinearity"):
        dynamics.classify(W, np.zeros((1, 3)), dynamics=(0.5, "gelu", "rate"))
    with pytest.raises(ValueError, match=r"alpha must be a real number in \(0, 1\]"):
        dynamics.classify(W, np.zeros((1, 3)), dynamics=(0.0, "tanh", "rate"))
