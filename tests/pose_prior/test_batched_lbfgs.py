"""Batched L-BFGS: per-sample independence, known minima, sphere projection, agreement with scipy."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from pose_prior.fitting.lbfgs import (
    CONVERGED_FTOL,
    CONVERGED_GTOL,
    CONVERGED_WINDOW,
    MAX_ITER,
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
    f = torch.stack(traces)  # (iterations, 3): stopped samples keep their last value
    init = fn(x0, torch.arange(3))
    path = torch.cat([init[None], f])
    for b in range(3):
        n = int(res.iterations[b])
        dec = [float(path[k - 3, b] - path[k, b]) for k in range(3, n + 1)]
        tol = [1e-6 + 1e-3 * abs(float(path[k, b])) for k in range(3, n + 1)]
        assert dec[-1] <= tol[-1] and all(d > t for d, t in zip(dec[:-1], tol[:-1])), b
