"""Batched L-BFGS: many independent small problems at once, each with its own state and line search.

`torch.optim.LBFGS` on a summed loss couples the samples through one shared line search and one
shared curvature history. Here every sample (row of `x`) keeps its own history pairs, step size,
strong-Wolfe line search and stopping flags; only the function evaluations are batched. A sample's
trajectory is therefore the one it would follow if solved alone (up to floating-point rounding).

The line search is a vectorised port of PyTorch's `_strong_wolfe` (bracketing with cubic
extrapolation, then zoom with cubic interpolation and a safeguard), run as a per-sample state machine:
each round evaluates the closure once on the whole batch and advances every sample that needs it.

With `project`, the optimiser minimises the composite `f(project(y))` (so the line search sees the
objective on the constraint set: on the sphere this is the Riemannian gradient), and after each
accepted step stores `x = project(y)`. History pairs are built between projected iterates; a pair
without positive curvature is skipped, and a sample's history is reset when the projection moved
the point by more than `projection_reset_ratio` times the step length. The gradient at the projected
point is the projection's vector-Jacobian product with the objective's gradient at `project(y)` (already
known from the line search, since `project` is idempotent), so projecting costs no extra evaluation
(`reevaluate_projected=True` evaluates the objective there again, as earlier versions did).

Cost: with `subset_rows=True` the objective is called as `fn(x_rows, rows)` with only the rows that need
an evaluation (`rows` their indices in the batch), so stopped samples and samples whose line search is
over cost nothing. Stopping: besides the classical tests, `window` > 0 stops a sample when its loss
decreased by no more than `window_atol + window_rtol * |f|` over the last `window` iterations
(a rule that stops in the flat tails where a per-iteration relative change never gets small enough).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import torch

Objective = Callable[..., torch.Tensor]  # x (B, D) [, rows (B,) long] -> per-sample losses (B,)
Projection = Callable[[torch.Tensor], torch.Tensor]  # (B, D) -> (B, D), row-wise, differentiable

# Stop reasons (per sample), stored in `BatchedLBFGSResult.status`.
RUNNING, CONVERGED_GTOL, CONVERGED_FTOL, CONVERGED_XTOL, MAX_ITER, LINE_SEARCH_FAILED, CONVERGED_WINDOW = range(7)
STATUS_NAMES = {
    RUNNING: "running",
    CONVERGED_GTOL: "gtol",
    CONVERGED_FTOL: "ftol",
    CONVERGED_XTOL: "xtol",
    MAX_ITER: "max_iter",
    LINE_SEARCH_FAILED: "line_search_failed",
    CONVERGED_WINDOW: "window",
}
CONVERGED_CODES = (CONVERGED_GTOL, CONVERGED_FTOL, CONVERGED_XTOL, CONVERGED_WINDOW)


@dataclass
class BatchedLBFGSResult:
    """Per-sample results of `batched_lbfgs`."""

    x: torch.Tensor  # (B, D) final (projected) points
    f: torch.Tensor  # (B,) final losses
    grad: torch.Tensor  # (B, D) gradients of f(project(.)) at x
    iterations: torch.Tensor  # (B,) L-BFGS iterations taken by each sample
    evaluations: torch.Tensor  # (B,) closure evaluations that concerned each sample
    converged: torch.Tensor  # (B,) bool: stopped on gtol, ftol, xtol or the window rule
    status: torch.Tensor  # (B,) int: one of the codes in STATUS_NAMES
    rows_evaluated: int = 0  # sum over objective calls of the rows evaluated (the cost with subset_rows)
    history_resets: Optional[torch.Tensor] = None  # (B,) curvature histories dropped (projection or non-descent)


class _Evaluator:
    """Evaluates the closure and returns per-sample values and gradients.

    Returns (f (B,), G): G is the gradient of f(project(.)) at y, (B, D); with a projection it is
    (B, 2D), the second half the objective's gradient at the projected point project(y) (what the
    gradient at the projected iterate is computed from). With `subset_rows`, only the rows of `mask`
    are evaluated (`fn(y[rows], rows)`); the other rows get f = 0 and G = 0, which callers ignore.
    """

    def __init__(self, fn: Objective, project: Optional[Projection], subset_rows: bool = False) -> None:
        self.fn = fn
        self.project = project
        self.subset_rows = subset_rows
        self.calls = 0
        self.rows = 0

    def __call__(self, y: torch.Tensor, mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        B = y.shape[0]
        if self.subset_rows and mask is not None and not bool(mask.all()):
            idx = torch.nonzero(mask)[:, 0]
            f_sub, g_sub = self._evaluate(y[idx], idx)
            f = y.new_zeros(B).index_copy(0, idx, f_sub)
            g = y.new_zeros(B, g_sub.shape[1]).index_copy(0, idx, g_sub)
            return f, g
        idx = torch.arange(B, device=y.device) if self.subset_rows else None
        return self._evaluate(y, idx)

    def _evaluate(self, y: torch.Tensor, rows: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        y = y.detach().requires_grad_(True)
        with torch.enable_grad():
            if self.project is not None:
                point = self.project(y)
                free = point.detach().requires_grad_(True)  # the objective's own gradient at project(y)
            else:
                point = free = y
            loss = self.fn(free) if rows is None else self.fn(free, rows)
            if loss.shape != y.shape[:1]:
                raise ValueError(
                    f"batched_lbfgs: the objective must return one loss per sample, shape ({y.shape[0]},); "
                    f"got {tuple(loss.shape)}"
                )
            (grad_point,) = torch.autograd.grad(loss.sum(), free)
            if self.project is not None:
                (grad,) = torch.autograd.grad(point, y, grad_point)
                grad = torch.cat([grad, grad_point], -1)
            else:
                grad = grad_point
        self.calls += 1
        self.rows += int(y.shape[0])
        loss = loss.detach()
        bad = ~torch.isfinite(loss)
        loss = torch.where(bad, torch.full_like(loss, float("inf")), loss)  # NaN -> +inf: never accepted
        return loss, grad.detach()


def _projected_gradient(project: Projection, x: torch.Tensor, grad_point: torch.Tensor) -> torch.Tensor:
    """Gradient of f(project(.)) at x from the objective's gradient at project(x): a vector-Jacobian product."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(project(x), x, grad_point)
    return g.detach()


def _cubic_minimiser(
    x1: torch.Tensor,
    f1: torch.Tensor,
    g1: torch.Tensor,
    x2: torch.Tensor,
    f2: torch.Tensor,
    g2: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
) -> torch.Tensor:
    """Minimiser of the cubic through (x1, f1, g1), (x2, f2, g2), clamped to [lo, hi]; bisection fallback."""
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_sq = d1 * d1 - g1 * g2
    d2 = d2_sq.clamp_min(0).sqrt()
    first = x1 <= x2
    pos_a = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    pos_b = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    pos = torch.where(first, pos_a, pos_b)
    pos = torch.minimum(torch.maximum(pos, lo), hi)
    mid = (lo + hi) / 2
    ok = (d2_sq >= 0) & torch.isfinite(pos)
    return torch.where(ok, pos, mid)


def _where_rows(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise select for (B, D) tensors with a (B,) mask."""
    return torch.where(mask[:, None], a, b)


def _strong_wolfe_batched(
    evaluate: _Evaluator,
    x: torch.Tensor,  # (B, D)
    t: torch.Tensor,  # (B,) initial trial steps
    d: torch.Tensor,  # (B, D) descent directions
    f: torch.Tensor,  # (B,)
    g: torch.Tensor,  # (B, D) or (B, 2D): the evaluator's G (see `_Evaluator`)
    gtd: torch.Tensor,  # (B,) directional derivatives (< 0 for active samples)
    active: torch.Tensor,  # (B,) bool
    c1: float,
    c2: float,
    tolerance_change: float,
    max_ls: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-sample strong-Wolfe line search; returns step t, f, g at x + t d and evaluation counts."""
    BRACKET, ZOOM, DONE = 0, 1, 2
    zeros = torch.zeros_like(f)
    d_norm = d.abs().amax(dim=-1)  # (B,)
    D = d.shape[1]
    t = torch.where(active, t, zeros)
    f_new, g_new = evaluate(x + t[:, None] * d, active)
    gtd_new = (g_new[:, :D] * d).sum(-1)
    n_evals = active.long()
    ls_iter = torch.zeros_like(n_evals)
    phase = torch.where(active, torch.full_like(n_evals, BRACKET), torch.full_like(n_evals, DONE))
    # previous point of the bracketing phase
    t_prev, f_prev, g_prev, gtd_prev = zeros.clone(), f.clone(), g.clone(), gtd.clone()
    # bracket as (low, high): low has the lower loss
    t_lo, f_lo, g_lo, gtd_lo = zeros.clone(), f.clone(), g.clone(), gtd.clone()
    t_hi, f_hi, g_hi, gtd_hi = zeros.clone(), f.clone(), g.clone(), gtd.clone()
    insuf = torch.zeros_like(active)
    # results (filled as samples finish); inactive samples keep t = 0 at their own point
    t_out, f_out, g_out = zeros.clone(), f.clone(), g.clone()
    armijo_rhs_slope = c1 * gtd  # (B,)
    just_evaluated = active.clone()  # samples whose latest evaluation is unprocessed

    def finish(mask, tt, ff, gg):
        nonlocal t_out, f_out, g_out, phase
        t_out = torch.where(mask, tt, t_out)
        f_out = torch.where(mask, ff, f_out)
        g_out = _where_rows(mask, gg, g_out)
        phase = torch.where(mask, torch.full_like(phase, DONE), phase)

    while True:
        # ---- 1. process the latest evaluation of bracketing-phase samples
        br = just_evaluated & (phase == BRACKET)
        if br.any():
            out_of_evals = br & (ls_iter >= max_ls)
            # torch: bracket = [0, t]; the point with the lower loss wins (ties -> t = 0)
            pick_new = f_new < f
            finish(out_of_evals, torch.where(pick_new, t, zeros), torch.where(pick_new, f_new, f),
                   _where_rows(pick_new, g_new, g))
            br = br & ~out_of_evals
            armijo_fail = (f_new > f + t * armijo_rhs_slope) | ((ls_iter > 1) & (f_new >= f_prev))
            wolfe = gtd_new.abs() <= -c2 * gtd
            upward = gtd_new >= 0
            to_zoom = br & (armijo_fail | (~wolfe & upward))
            accepted = br & ~armijo_fail & wolfe
            extrapolate = br & ~armijo_fail & ~wolfe & ~upward
            finish(accepted, t, f_new, g_new)
            # bracket [t_prev, t]: order it as (low, high) by loss (ties -> t_prev is low, as torch)
            prev_low = f_prev <= f_new
            m = to_zoom & prev_low
            n = to_zoom & ~prev_low
            t_lo = torch.where(m, t_prev, torch.where(n, t, t_lo))
            f_lo = torch.where(m, f_prev, torch.where(n, f_new, f_lo))
            g_lo = _where_rows(m, g_prev, _where_rows(n, g_new, g_lo))
            gtd_lo = torch.where(m, gtd_prev, torch.where(n, gtd_new, gtd_lo))
            t_hi = torch.where(m, t, torch.where(n, t_prev, t_hi))
            f_hi = torch.where(m, f_new, torch.where(n, f_prev, f_hi))
            g_hi = _where_rows(m, g_new, _where_rows(n, g_prev, g_hi))
            gtd_hi = torch.where(m, gtd_new, torch.where(n, gtd_prev, gtd_hi))
            insuf = torch.where(to_zoom, torch.zeros_like(insuf), insuf)
            phase = torch.where(to_zoom, torch.full_like(phase, ZOOM), phase)
            # extrapolation: next trial in [t + 0.01 (t - t_prev), 10 t]
            t_next = _cubic_minimiser(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                      t + 0.01 * (t - t_prev), t * 10)
            t_prev = torch.where(extrapolate, t, t_prev)
            f_prev = torch.where(extrapolate, f_new, f_prev)
            g_prev = _where_rows(extrapolate, g_new, g_prev)
            gtd_prev = torch.where(extrapolate, gtd_new, gtd_prev)
            t = torch.where(extrapolate, t_next, t)
            need_eval = extrapolate
        else:
            need_eval = torch.zeros_like(active)

        # ---- 2. process the latest evaluation of zoom-phase samples
        zm = just_evaluated & (phase == ZOOM)
        if zm.any():
            worse = (f_new > f + t * armijo_rhs_slope) | (f_new >= f_lo)
            to_high = zm & worse
            t_hi = torch.where(to_high, t, t_hi)
            f_hi = torch.where(to_high, f_new, f_hi)
            g_hi = _where_rows(to_high, g_new, g_hi)
            gtd_hi = torch.where(to_high, gtd_new, gtd_hi)
            swap = to_high & (f_hi < f_lo)
            t_lo, t_hi = torch.where(swap, t_hi, t_lo), torch.where(swap, t_lo, t_hi)
            f_lo, f_hi = torch.where(swap, f_hi, f_lo), torch.where(swap, f_lo, f_hi)
            g_lo, g_hi = _where_rows(swap, g_hi, g_lo), _where_rows(swap, g_lo, g_hi)
            gtd_lo, gtd_hi = torch.where(swap, gtd_hi, gtd_lo), torch.where(swap, gtd_lo, gtd_hi)
            better = zm & ~worse
            wolfe = better & (gtd_new.abs() <= -c2 * gtd)
            flip = better & ~wolfe & (gtd_new * (t_hi - t_lo) >= 0)
            t_hi = torch.where(flip, t_lo, t_hi)
            f_hi = torch.where(flip, f_lo, f_hi)
            g_hi = _where_rows(flip, g_lo, g_hi)
            gtd_hi = torch.where(flip, gtd_lo, gtd_hi)
            t_lo = torch.where(better, t, t_lo)
            f_lo = torch.where(better, f_new, f_lo)
            g_lo = _where_rows(better, g_new, g_lo)
            gtd_lo = torch.where(better, gtd_new, gtd_lo)
            finish(wolfe, t_lo, f_lo, g_lo)

        # ---- 3. zoom-phase samples: stop, or choose the next trial inside the bracket
        zm = phase == ZOOM
        if zm.any():
            b_min, b_max = torch.minimum(t_lo, t_hi), torch.maximum(t_lo, t_hi)
            stop = zm & ((ls_iter >= max_ls) | ((b_max - b_min) * d_norm < tolerance_change))
            finish(stop, t_lo, f_lo, g_lo)
            zm = zm & ~stop
            t_try = _cubic_minimiser(t_lo, f_lo, gtd_lo, t_hi, f_hi, gtd_hi, b_min, b_max)
            eps = 0.1 * (b_max - b_min)
            near_edge = torch.minimum(b_max - t_try, t_try - b_min) < eps
            at_or_out = (t_try >= b_max) | (t_try <= b_min)
            push = near_edge & (insuf | at_or_out)
            pushed = torch.where((t_try - b_max).abs() < (t_try - b_min).abs(), b_max - eps, b_min + eps)
            t_try = torch.where(push, pushed, t_try)
            insuf = torch.where(zm, near_edge & ~push, insuf)
            t = torch.where(zm, t_try, t)
            need_eval = need_eval | zm

        if not need_eval.any():
            break
        # ---- 4. one batched evaluation for every sample that needs one
        f_eval, g_eval = evaluate(x + t[:, None] * d, need_eval)
        f_new = torch.where(need_eval, f_eval, f_new)
        g_new = _where_rows(need_eval, g_eval, g_new)
        gtd_new = torch.where(need_eval, (g_eval[:, :D] * d).sum(-1), gtd_new)
        ls_iter = ls_iter + need_eval.long()
        n_evals = n_evals + need_eval.long()
        just_evaluated = need_eval
    return t_out, f_out, g_out, n_evals


def _two_loop_direction(
    g: torch.Tensor,  # (B, D)
    S: torch.Tensor,  # (B, m, D) oldest first
    Y: torch.Tensor,  # (B, m, D)
    count: torch.Tensor,  # (B,) number of valid pairs (the newest `count` slots)
) -> torch.Tensor:
    """L-BFGS direction -H g per sample, from the compact form of H (Byrd, Nocedal & Schnabel 1994).

    Equal to the two-loop recursion; written with (B, m, m) Gram matrices so the cost per iteration is
    a handful of batched ops. Invalid (empty) slots are zeroed and get a unit diagonal in R, which
    decouples them. Samples without history get -g.
    """
    m = S.shape[1]
    slots = torch.arange(m, device=g.device)
    valid = slots[None, :] >= (m - count)[:, None]  # (B, m)
    S = S * valid[..., None]
    Y = Y * valid[..., None]
    SY = S @ Y.transpose(1, 2)  # (B, m, m): s_i . y_j
    YY = Y @ Y.transpose(1, 2)  # (B, m, m)
    Sg = (S * g[:, None, :]).sum(-1)  # (B, m)
    Yg = (Y * g[:, None, :]).sum(-1)
    eye = torch.eye(m, dtype=g.dtype, device=g.device)
    R = torch.triu(SY) + torch.diag_embed((~valid).to(g.dtype))  # (B, m, m) upper triangular
    Dg = torch.diagonal(SY, dim1=-2, dim2=-1)  # (B, m)
    has = count > 0
    sy_new = Dg[:, -1]
    yy_new = YY[:, -1, -1]
    gamma = torch.where(has, sy_new / torch.where(has, yy_new, torch.ones_like(yy_new)), torch.ones_like(yy_new))
    p = torch.linalg.solve_triangular(R, Sg[..., None], upper=True)[..., 0]  # (B, m) = R^-1 S g
    inner = ((Dg[..., None] * eye) + gamma[:, None, None] * YY) @ p[..., None]  # (B, m, 1)
    rhs = inner[..., 0] - gamma[:, None] * Yg
    top = torch.linalg.solve_triangular(R.transpose(1, 2), rhs[..., None], upper=False)[..., 0]  # R^-T (...)
    Hg = gamma[:, None] * g + (top[..., None] * S).sum(1) - gamma[:, None] * (p[..., None] * Y).sum(1)
    return -Hg


def batched_lbfgs(
    fn: Objective,
    x0: torch.Tensor,
    *,
    project: Optional[Projection] = None,
    max_iter: int = 100,
    history_size: int = 10,
    lr: float = 1.0,
    ftol: float = 1e-9,
    gtol: float = 1e-7,
    xtol: float = 1e-12,
    max_ls: int = 25,
    c1: float = 1e-4,
    c2: float = 0.9,
    projection_reset_ratio: float = 0.5,
    window: int = 0,
    window_rtol: float = 0.0,
    window_atol: float = 0.0,
    subset_rows: bool = False,
    reevaluate_projected: bool = False,
    callback: Optional[Callable[[int, torch.Tensor, torch.Tensor], None]] = None,
) -> BatchedLBFGSResult:
    """Minimise `fn` independently for every row of `x0` (B, D) with per-sample L-BFGS + strong Wolfe.

    `fn(x (B, D)) -> (B,)` must treat rows independently (its gradient is taken on the sum); with
    `subset_rows=True` it is called as `fn(x_rows, rows)` on the rows that need an evaluation only.
    Per sample, stop when max|grad| <= gtol, when the relative loss change
    |f_k - f_{k+1}| / max(|f_k|, |f_{k+1}|, 1) <= ftol, when max|x_{k+1} - x_k| <= xtol, when (window > 0)
    f_{k-window} - f_k <= window_atol + window_rtol * |f_k|, after `max_iter` iterations, or when the line
    search makes no progress. Stopped samples stay fixed. `callback(iteration, f (B,), status (B,))` is
    called after every iteration (for traces of the loss).
    """
    if x0.ndim != 2:
        raise ValueError(f"batched_lbfgs: x0 must be (B, D), got shape {tuple(x0.shape)}")
    if not x0.is_floating_point():
        raise ValueError(f"batched_lbfgs: x0 must be floating point, got {x0.dtype}")
    B, D = x0.shape
    m = history_size
    evaluate = _Evaluator(fn, project, subset_rows)
    x = x0.detach().clone()
    if project is not None:
        with torch.no_grad():
            x = project(x).detach()
    f, G = evaluate(x)  # G: (B, D), or (B, 2D) with the objective's gradient at the projected point
    g = G[:, :D]
    n_evals = torch.ones(B, dtype=torch.long, device=x.device)
    iterations = torch.zeros(B, dtype=torch.long, device=x.device)
    status = torch.full((B,), RUNNING, dtype=torch.long, device=x.device)
    status = torch.where(g.abs().amax(-1) <= gtol, torch.full_like(status, CONVERGED_GTOL), status)
    status = torch.where(~torch.isfinite(f), torch.full_like(status, LINE_SEARCH_FAILED), status)
    S = x.new_zeros(B, m, D)
    Y = x.new_zeros(B, m, D)
    count = torch.zeros(B, dtype=torch.long, device=x.device)
    eps = torch.finfo(x.dtype).eps
    past = f[:, None].repeat(1, window + 1) if window > 0 else None  # losses of the last window+1 iterates
    resets = torch.zeros(B, dtype=torch.long, device=x.device)

    for k in range(max_iter):
        active = status == RUNNING
        if not active.any():
            break
        d = _two_loop_direction(g, S, Y, count)
        gtd = (g * d).sum(-1)
        # not a descent direction (bad curvature information): restart from steepest descent
        restart = active & ~(gtd < 0)
        resets = resets + (restart & (count > 0)).long()
        count = torch.where(restart, torch.zeros_like(count), count)
        d = _where_rows(restart, -g, d)
        gtd = torch.where(restart, (g * d).sum(-1), gtd)
        no_descent = active & ~(gtd < 0)
        status = torch.where(no_descent, torch.full_like(status, LINE_SEARCH_FAILED), status)
        active = active & ~no_descent
        d = _where_rows(active, d, torch.zeros_like(d))
        gtd = torch.where(active, gtd, -torch.ones_like(gtd))
        # first step without history: scaled like torch.optim.LBFGS; afterwards the unit step
        g_l1 = g.abs().sum(-1)
        t0 = torch.where(count == 0, torch.clamp(1.0 / g_l1, max=1.0) * lr, torch.full_like(f, lr))
        t, f_new, G_new, ls_evals = _strong_wolfe_batched(
            evaluate, x, t0, d, f, G, gtd, active, c1, c2, 1e-9, max_ls
        )
        n_evals = n_evals + ls_evals
        step = t[:, None] * d  # (B, D)
        y_point = x + step
        x_new = y_point
        g_new = G_new[:, :D]
        if project is not None:
            with torch.no_grad():
                x_new = project(y_point).detach()
            moved = active & ((x_new - y_point).abs().amax(-1) > 0)
            if moved.any():
                if reevaluate_projected:
                    f_proj, G_proj = evaluate(_where_rows(moved, x_new, x), moved)
                    f_new = torch.where(moved, f_proj, f_new)
                    G_new = _where_rows(moved, G_proj, G_new)
                    n_evals = n_evals + moved.long()
                else:  # project(x_new) = project(y_point): same loss, gradient by the chain rule at x_new
                    G_new = _where_rows(moved, torch.cat([_projected_gradient(project, x_new, G_new[:, D:]),
                                                          G_new[:, D:]], -1), G_new)
                g_new = G_new[:, :D]
            shift = (x_new - y_point).norm(dim=-1)
            reset = active & (shift > projection_reset_ratio * step.norm(dim=-1))
        else:
            reset = torch.zeros_like(active)
        x_new = _where_rows(active, x_new, x)
        f_new = torch.where(active, f_new, f)
        G_new = _where_rows(active, G_new, G)
        g_new = G_new[:, :D]
        # curvature pair (between projected iterates)
        s = x_new - x
        yv = g_new - g
        sy = (s * yv).sum(-1)
        yy = (yv * yv).sum(-1)
        store = active & ~reset & (sy > eps * yy) & (sy > 0)
        resets = resets + (reset & (count > 0)).long()
        count = torch.where(reset, torch.zeros_like(count), count)
        S = torch.where(store[:, None, None], torch.cat([S[:, 1:], s[:, None]], 1), S)
        Y = torch.where(store[:, None, None], torch.cat([Y[:, 1:], yv[:, None]], 1), Y)
        count = torch.where(store, torch.clamp(count + 1, max=m), count)
        # stopping tests, per sample
        iterations = iterations + active.long()
        rel_change = (f - f_new).abs() / torch.clamp(torch.maximum(f.abs(), f_new.abs()), min=1.0)
        no_progress = active & (t == 0)
        new_status = torch.full_like(status, RUNNING)
        new_status = torch.where(iterations >= max_iter, torch.full_like(status, MAX_ITER), new_status)
        if past is not None:
            past = torch.where(active[:, None], torch.cat([past[:, 1:], f_new[:, None]], 1), past)
            flat = (iterations >= window) & (past[:, 0] - past[:, -1] <= window_atol + window_rtol * f_new.abs())
            new_status = torch.where(flat, torch.full_like(status, CONVERGED_WINDOW), new_status)
        new_status = torch.where(s.abs().amax(-1) <= xtol, torch.full_like(status, CONVERGED_XTOL), new_status)
        new_status = torch.where(rel_change <= ftol, torch.full_like(status, CONVERGED_FTOL), new_status)
        new_status = torch.where(g_new.abs().amax(-1) <= gtol, torch.full_like(status, CONVERGED_GTOL), new_status)
        # a line search that could not decrease the loss ends the sample unless the gradient is small
        new_status = torch.where(no_progress & (new_status != CONVERGED_GTOL),
                                 torch.full_like(status, LINE_SEARCH_FAILED), new_status)
        status = torch.where(active, new_status, status)
        x, f, G, g = x_new, f_new, G_new, g_new
        if callback is not None:
            callback(k, f, status)

    status = torch.where(status == RUNNING, torch.full_like(status, MAX_ITER), status)
    converged = torch.isin(status, torch.tensor(CONVERGED_CODES, device=status.device))
    return BatchedLBFGSResult(x=x, f=f, grad=g, iterations=iterations, evaluations=n_evals,
                              converged=converged, status=status, rows_evaluated=evaluate.rows,
                              history_resets=resets)
