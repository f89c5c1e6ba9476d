"""Batched L-BFGS: per-sample independence, known minima, sphere projection, agreement with scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch
from torch.optim.lbfgs import _strong_wolfe

from pose_prior.fitting.lbfgs import (
    CONVERGED_FTOL,
    CONVERGED_GTOL,
    CONVERGED_WINDOW,
    MAX_EVAL,
    MAX_ITER,
    _LineSearch,
    batched_lbfgs,
)


def rosenbrock(x: torch.Tensor) -> torch.Tensor:
    return (100 * (x[:, 1:] - x[:, :-1] ** 2) ** 2 + (1 - x[:, :-1]) ** 2).sum(-1)


def rosenbrock_np(x: np.ndarray) -> tuple[float, np.ndarray]:
    t = torch.tensor(x[None], dtype=torch.float64, requires_grad=True)
    f = rosenbrock(t).sum()
    (g,) = torch.autograd.grad(f, t)
    return float(f.detach()), g[0].numpy()


def sphere(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


class BatchedQuadratic:
    """f_b(x) = 0.5 x^T A_b x - c_b^T x, one SPD matrix per sample (rows independent)."""

    def __init__(self, B: int, D: int, dtype: torch.dtype, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        M = torch.randn(B, D, D, generator=g, dtype=torch.float64)
        self.A = (M @ M.transpose(1, 2) / D + 0.5 * torch.eye(D, dtype=torch.float64)).to(dtype)
        self.c = torch.randn(B, D, generator=g, dtype=torch.float64).to(dtype)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.einsum("bi,bij,bj->b", x, self.A, x) - (self.c * x).sum(-1)

    def rows(self, idx: torch.Tensor) -> BatchedQuadratic:
        q = object.__new__(BatchedQuadratic)
        q.A, q.c = self.A[idx], self.c[idx]
        return q


def _solo(fn_for_rows, x0: torch.Tensor, **kw) -> torch.Tensor:
    return torch.cat([batched_lbfgs(fn_for_rows(i), x0[i : i + 1], **kw).x for i in range(x0.shape[0])])


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 1e-4)])
def test_rosenbrock_result_independent_of_batch_companions(dtype, tol):
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(1, 12, generator=g, dtype=torch.float64) * 0.6 + 0.7).to(dtype)
    others = (torch.rand(31, 12, generator=g, dtype=torch.float64) * 3 - 1.5).to(dtype)
    kw = dict(max_iter=120, ftol=1e-12, gtol=1e-9)
    alone = batched_lbfgs(rosenbrock, target, **kw)
    for pos in (0, 20):
        x0 = torch.cat([others[:pos], target, others[pos:]])
        together = batched_lbfgs(rosenbrock, x0, **kw)
        assert torch.allclose(together.x[pos], alone.x[0], atol=tol, rtol=0)
        assert together.iterations[pos] == alone.iterations[0]
    # the easy start converges to the global minimum at ones
    assert (alone.x - 1).abs().max() < (1e-6 if dtype == torch.float64 else 1e-2)


@pytest.mark.slow
def test_every_sample_of_a_batch_matches_its_solo_run():
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(8, 8, generator=g, dtype=torch.float64) * 4 - 2
    kw = dict(max_iter=120, ftol=1e-12, gtol=1e-9)
    batched = batched_lbfgs(rosenbrock, x0, **kw)
    solo = _solo(lambda i: rosenbrock, x0, **kw)
    assert (batched.x - solo).abs().max() < 1e-6


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-6), (torch.float32, 5e-3)])
def test_convex_quadratic_reaches_closed_form_minimiser(dtype, tol):
    q = BatchedQuadratic(32, 16, dtype, seed=5)
    x0 = torch.randn(32, 16, dtype=dtype)
    res = batched_lbfgs(q, x0, max_iter=200, ftol=0.0, gtol=1e-6 if dtype == torch.float32 else 1e-12)
    x_star = torch.linalg.solve(q.A.double(), q.c.double())
    assert (res.x.double() - x_star).abs().max() < tol
    f_star = -0.5 * (q.c.double() * x_star).sum(-1)
    assert (res.f.double() - f_star).abs().max() < (1e-12 if dtype == torch.float64 else 1e-4)
    solo = _solo(lambda i: q.rows(torch.tensor([i])), x0[:6], max_iter=200, ftol=0.0,
                 gtol=1e-6 if dtype == torch.float32 else 1e-12)
    assert (res.x[:6] - solo).abs().max() < (1e-6 if dtype == torch.float64 else 1e-4)


def test_sphere_projection_linear_and_quadratic_closed_forms():
    g = torch.Generator().manual_seed(7)
    B, D = 16, 8
    c = torch.randn(B, D, generator=g, dtype=torch.float64)
    x0 = torch.randn(B, D, generator=g, dtype=torch.float64)
    # min c.x on the unit sphere: x = -c / |c|
    lin = batched_lbfgs(lambda x: (c * x).sum(-1), x0, project=sphere, max_iter=200, ftol=0, gtol=1e-10)
    assert (lin.x + c / c.norm(dim=-1, keepdim=True)).abs().max() < 1e-7
    assert torch.allclose(lin.x.norm(dim=-1), torch.ones(B, dtype=torch.float64), atol=1e-12)
    # min x^T A x on the sphere: smallest eigenvalue, eigenvector up to sign
    M = torch.randn(B, D, D, generator=g, dtype=torch.float64)
    A = M @ M.transpose(1, 2)
    quad = batched_lbfgs(lambda x: torch.einsum("bi,bij,bj->b", x, A, x), x0, project=sphere,
                         max_iter=500, ftol=0, gtol=1e-10)
    evals, evecs = torch.linalg.eigh(A)
    assert (quad.f - evals[:, 0]).abs().max() < 1e-8
    assert ((quad.x * evecs[:, :, 0]).sum(-1).abs() - 1).abs().max() < 1e-5
    # independence also holds with the projection
    solo = torch.cat([
        batched_lbfgs(lambda x, i=i: torch.einsum("bi,bij,bj->b", x, A[i : i + 1], x), x0[i : i + 1],
                      project=sphere, max_iter=500, ftol=0, gtol=1e-10).x
        for i in range(5)
    ])
    assert (solo - quad.x[:5]).abs().max() < 1e-6


def test_same_minimum_as_scipy_lbfgsb():
    g = torch.Generator().manual_seed(11)
    x0 = torch.rand(6, 8, generator=g, dtype=torch.float64) * 0.8 + 0.6
    ours = batched_lbfgs(rosenbrock, x0, max_iter=500, ftol=1e-14, gtol=1e-9)
    for i in range(x0.shape[0]):
        ref = scipy.optimize.minimize(rosenbrock_np, x0[i].numpy(), jac=True, method="L-BFGS-B",
                                      options=dict(maxiter=2000, ftol=1e-15, gtol=1e-10))
        assert np.abs(ours.x[i].numpy() - ref.x).max() < 1e-5
        assert abs(float(ours.f[i]) - ref.fun) < 1e-10
    # sphere: scipy on the composite f(y / |y|) reaches the same value
    c = torch.randn(4, 8, generator=g, dtype=torch.float64)
    M = torch.randn(4, 8, 8, generator=g, dtype=torch.float64)
    A = M @ M.transpose(1, 2)

    def fn(x):
        return torch.einsum("bi,bij,bj->b", x, A, x) + (c * x).sum(-1)

    ours = batched_lbfgs(fn, x0[:4], project=sphere, max_iter=500, ftol=0, gtol=1e-10)
    for i in range(4):
        def f_np(y, i=i):
            t = torch.tensor(y[None], requires_grad=True)
            v = (torch.einsum("bi,ij,bj->b", sphere(t), A[i], sphere(t)) + (c[i] * sphere(t)).sum(-1)).sum()
            (gr,) = torch.autograd.grad(v, t)
            return float(v.detach()), gr[0].numpy()

        ref = scipy.optimize.minimize(f_np, x0[i].numpy(), jac=True, method="L-BFGS-B",
                                      options=dict(maxiter=2000, ftol=1e-15, gtol=1e-11))
        assert abs(float(ours.f[i]) - ref.fun) < 1e-7
        assert np.abs(ours.x[i].numpy() - ref.x / np.linalg.norm(ref.x)).max() < 1e-4


def test_stopped_samples_stay_fixed_and_stop_reasons():
    q = BatchedQuadratic(3, 4, torch.float64, seed=2)
    x_star = torch.linalg.solve(q.A, q.c)
    x0 = torch.stack([x_star[0], x_star[1] + 1.0, x_star[2] + 1.0])
    res = batched_lbfgs(q, x0, max_iter=1, gtol=1e-9, ftol=0)
    assert res.status[0] == CONVERGED_GTOL and res.iterations[0] == 0
    assert torch.equal(res.x[0], x0[0])  # already optimal: never moved
    assert (res.status[1:] == MAX_ITER).all() and (res.iterations[1:] == 1).all()
    loose = batched_lbfgs(q, x0, max_iter=100, gtol=0, ftol=1e-3)
    assert (loose.status[1:] == CONVERGED_FTOL).all()


def test_evaluation_cap_stops_where_torch_lbfgs_stops():
    """max_eval = torch.optim.LBFGS's default (max_iter * 5 // 4): per sample, the same iterations, the same
    evaluations and the same point as torch's own L-BFGS with the strong-Wolfe line search (float64)."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(6, 4, generator=g, dtype=torch.float64) * 1.5
    max_iter = 20
    res = batched_lbfgs(rosenbrock, x0, max_iter=max_iter, max_eval=max_iter * 5 // 4, gtol=0, ftol=0, xtol=0)
    assert (res.status == MAX_EVAL).any() and (res.status == MAX_ITER).any()  # both caps are exercised
    uncapped = batched_lbfgs(rosenbrock, x0, max_iter=max_iter, gtol=0, ftol=0, xtol=0)
    assert (uncapped.evaluations > max_iter * 5 // 4).any()
    for i in range(x0.shape[0]):
        x = x0[i].clone().requires_grad_(True)
        opt = torch.optim.LBFGS([x], lr=1, max_iter=max_iter, tolerance_grad=0, tolerance_change=0,
                                history_size=10, line_search_fn="strong_wolfe")

        def closure(x=x, opt=opt):
            opt.zero_grad()
            f = rosenbrock(x[None]).sum()
            f.backward()
            return f

        opt.step(closure)
        state = opt.state[opt._params[0]]
        assert (int(res.iterations[i]), int(res.evaluations[i])) == (state["n_iter"], state["func_evals"])
        torch.testing.assert_close(res.x[i], x.detach(), rtol=0, atol=1e-10)


def test_rejects_wrong_closure_shape():
    with pytest.raises(ValueError, match="one loss per sample"):
        batched_lbfgs(lambda x: x.sum(), torch.zeros(3, 2))


def test_subset_rows_evaluates_only_running_samples_with_identical_results():
    """With subset_rows the objective sees only the rows that need an evaluation; results do not change."""
    q = BatchedQuadratic(6, 5, torch.float64, seed=4)
    x_star = torch.linalg.solve(q.A, q.c)
    x0 = x_star + torch.tensor([0.0, 1e-3, 1.0, 2.0, 3.0, 4.0], dtype=torch.float64)[:, None]
    seen: list[torch.Tensor] = []

    def rows_fn(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        seen.append(rows.clone())
        return q.rows(rows)(x)

    full = batched_lbfgs(q, x0, max_iter=50, ftol=0, gtol=1e-10)
    sub = batched_lbfgs(rows_fn, x0, max_iter=50, ftol=0, gtol=1e-10, subset_rows=True)
    assert torch.allclose(sub.x, full.x, atol=1e-12, rtol=0) and torch.equal(sub.iterations, full.iterations)
    assert torch.equal(sub.evaluations, full.evaluations)
    # each sample was evaluated exactly as often as its own count says, and never after it stopped
    per_row = torch.bincount(torch.cat(seen), minlength=6)
    assert torch.equal(per_row, sub.evaluations)
    assert sub.rows_evaluated == int(sub.evaluations.sum()) < len(seen) * 6
    assert 0 not in torch.cat(seen[1:]).tolist()  # sample 0 starts at its minimum: only the first call


def test_projected_gradient_by_chain_rule_equals_reevaluation():
    """The gradient at a projected iterate from the chain rule gives the trajectory of a fresh evaluation."""
    g = torch.Generator().manual_seed(11)
    B, D = 8, 6
    M = torch.randn(B, D, D, generator=g, dtype=torch.float64)
    A = M @ M.transpose(1, 2)
    c = torch.randn(B, D, generator=g, dtype=torch.float64)
    x0 = torch.randn(B, D, generator=g, dtype=torch.float64)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bi,bij,bj->b", x, A, x) + (c * x).sum(-1)

    kw = dict(project=sphere, max_iter=300, ftol=0, gtol=1e-10)
    fresh = batched_lbfgs(fn, x0, reevaluate_projected=True, **kw)
    chain = batched_lbfgs(fn, x0, **kw)
    assert (chain.x - fresh.x).abs().max() < 1e-8
    assert (chain.f - fresh.f).abs().max() < 1e-10
    # the chain rule saves one evaluation per iteration that moved off the sphere
    assert (chain.evaluations < fresh.evaluations).all()
    # the gradient reported at the end is the composite's gradient at x (a float64 autograd check)
    x = chain.x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(fn(sphere(x)).sum(), x)
    assert torch.allclose(chain.grad, ref, atol=1e-12, rtol=0)


def test_window_rule_stops_when_the_loss_stalls_and_only_then():
    """f = sum(x^2) / 2 scaled per sample: the window rule against a float64 re-computation of its test."""
    x0 = torch.full((3, 4), 2.0, dtype=torch.float64)
    scales = torch.tensor([1.0, 10.0, 1e3], dtype=torch.float64)
    # an ill-conditioned quadratic per sample: L-BFGS needs several iterations
    weights = torch.tensor([1.0, 3.0, 10.0, 30.0], dtype=torch.float64)
    traces: list[torch.Tensor] = []

    def fn(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return scales[rows] * 0.5 * (weights * x.square()).sum(-1)

    res = batched_lbfgs(fn, x0, max_iter=200, ftol=0, gtol=0, xtol=0, window=3, window_rtol=1e-3,
                        window_atol=1e-6, subset_rows=True, callback=lambda k, f, st: traces.append(f.clone()))
    assert (res.status == CONVERGED_WINDOW).all()
    # pipelined iterations: the callback runs after rounds where some sample completed an iteration, and a
    # sample's entry changes when it completes one (every accepted step of a convex quadratic lowers f)
    init = fn(x0, torch.arange(3))
    for b in range(3):
        path = [float(init[b])]
        for f in traces:
            if float(f[b]) != path[-1]:
                path.append(float(f[b]))
        n = int(res.iterations[b])
        assert len(path) == n + 1, b
        dec = [path[k - 3] - path[k] for k in range(3, n + 1)]
        tol = [1e-6 + 1e-3 * abs(path[k]) for k in range(3, n + 1)]
        assert dec[-1] <= tol[-1] and all(d > t for d, t in zip(dec[:-1], tol[:-1])), b


def _line_search_lengths(fn, x0: torch.Tensor, **kw) -> list[int]:
    """Evaluations of each line search of a solo run (+ re-evaluations), from the callback's round indices."""
    rounds: list[int] = []
    res = batched_lbfgs(fn, x0, callback=lambda k, f, st: rounds.append(k), **kw)
    assert len(rounds) == int(res.iterations[0])  # one sample: every callback completes one iteration
    return [b - a for a, b in zip([-1] + rounds[:-1], rounds)]


@pytest.mark.parametrize("problem", ["rosenbrock", "sphere_reevaluated"])
def test_pipelined_iterations_cost_max_evaluations_calls(problem):
    """Every call evaluates every running sample: calls = the largest per-sample evaluation count.

    The synchronous count (each iteration waits for the batch's longest line search) is rebuilt from
    solo runs; the batch must take the same per-sample path as the solo runs and far fewer calls.
    """
    g = torch.Generator().manual_seed(5)
    B, D = 12, 6
    spread = torch.linspace(0.3, 3.0, B, dtype=torch.float64)[:, None]
    M = torch.randn(B, D, D, generator=g, dtype=torch.float64)
    A = M @ M.transpose(1, 2) / D
    c = torch.randn(B, D, generator=g, dtype=torch.float64)
    calls: list[int] = []
    if problem == "rosenbrock":  # rows of different difficulty: starts at growing distances, scaled losses
        x0 = 1 + (torch.rand(B, D, generator=g, dtype=torch.float64) * 2 - 1) * spread
        kw = dict(max_iter=300, ftol=1e-12, gtol=1e-9, subset_rows=True)

        def fn(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return rosenbrock(x) * (1 + rows.to(x.dtype))
    else:  # a quartic on the sphere, with the projected iterates re-evaluated (one more evaluation each)
        x0 = torch.randn(B, D, generator=g, dtype=torch.float64) * spread
        kw = dict(project=sphere, max_iter=60, ftol=0, gtol=1e-8, subset_rows=True, reevaluate_projected=True)

        def fn(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return torch.einsum("bi,bij,bj->b", x, A[rows], x) + (c[rows] * x).sum(-1) + 0.2 * (x**4).sum(-1)

    res = batched_lbfgs(fn, x0, **kw)
    assert res.calls == len(calls) == int(res.evaluations.max())
    lengths = []
    for i in range(B):
        solo = batched_lbfgs(lambda x, rows, i=i: fn(x, rows + i), x0[i : i + 1], **kw)
        assert int(solo.evaluations[0]) == int(res.evaluations[i])
        assert int(solo.iterations[0]) == int(res.iterations[i])
        assert (solo.x[0] - res.x[i]).abs().max() < 1e-12
        lengths.append(_line_search_lengths(lambda x, rows, i=i: fn(x, rows + i), x0[i : i + 1], **kw))
    synchronous = 1 + sum(max(ls[k] for ls in lengths if k < len(ls)) for k in range(max(map(len, lengths))))
    assert res.calls < synchronous and res.calls < int(res.evaluations.sum()) / 2


def _value_and_grad(fn, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y = y.detach().requires_grad_(True)
    v = fn(y)
    (gr,) = torch.autograd.grad(v.sum(), y)
    return v.detach(), gr


@pytest.mark.parametrize("problem", ["quadratic_overshoot", "rosenbrock"])
def test_line_search_matches_torch_strong_wolfe_row_by_row(problem):
    """Each row's search returns torch's `_strong_wolfe` step, loss and evaluation count.

    The quadratic |x|^2 from x = 1 along -grad with first trials up to 2.2x the minimiser covers
    overshoots whose first trial already brackets the minimum with the trial as the bracket's low end.
    """
    g = torch.Generator().manual_seed(1)
    B = 200
    if problem == "quadratic_overshoot":
        def fn(x: torch.Tensor) -> torch.Tensor:
            return x.square().sum(-1)

        x = torch.ones(B, 1, dtype=torch.float64)
        t0 = torch.linspace(0.01, 1.1, B, dtype=torch.float64)
    else:
        fn = rosenbrock
        x = torch.rand(B, 5, generator=g, dtype=torch.float64) * 3 - 1.5
    f, G = _value_and_grad(fn, x)
    d = -G * torch.exp(0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64))  # descent directions
    gtd = (G * d).sum(-1)
    if problem == "rosenbrock":
        t0 = torch.exp(2 * torch.randn(B, generator=g, dtype=torch.float64)) * (1 / G.abs().sum(-1)).clamp(max=1)
    ls = _LineSearch(f, G, x.shape[1], c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25)
    ls.start(torch.ones(B, dtype=torch.bool), t0, d, f, G, gtd)
    evals = torch.zeros(B, dtype=torch.long)
    while ls.searching.any():
        evals += ls.searching.long()
        ls.advance(*_value_and_grad(fn, x + ls.t[:, None] * ls.d))
    for i in range(B):
        def obj(xi, t, di):
            v, gr = _value_and_grad(fn, (xi + t * di)[None])
            return float(v[0]), gr[0]

        f_ref, _, t_ref, n_ref = _strong_wolfe(obj, x[i], float(t0[i]), d[i], float(f[i]), G[i], float(gtd[i]))
        assert abs(float(ls.t_out[i]) - t_ref) <= 1e-12 * max(1.0, abs(t_ref)), i
        assert abs(float(ls.f_out[i]) - f_ref) <= 1e-12 * max(1.0, abs(f_ref)), i
        assert int(evals[i]) == n_ref, i
