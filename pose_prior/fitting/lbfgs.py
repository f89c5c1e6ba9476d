"""Batched L-BFGS: many independent small problems at once, each with its own state and line search.

`torch.optim.LBFGS` on a summed loss couples the samples through one shared line search and one
shared curvature history. Here every sample (row of `x`) keeps its own history pairs, step size,
strong-Wolfe line search and stopping flags; only the function evaluations are batched. A sample's
trajectory is therefore the one it would follow if solved alone (up to floating-point rounding).

The line search is a vectorised port of PyTorch's `_strong_wolfe` (bracketing with cubic
extrapolation, then zoom with cubic interpolation and a safeguard), run as a per-sample state machine
that is advanced by one evaluation at a time.

Pipelining: the iterations of different samples are not synchronised. Each round calls the objective
once, on one pending point per running sample: the next trial of its line search, or, if its line search
ended in the previous round, the first trial of its next iteration (or, with `reevaluate_projected`, its
projected iterate). A sample whose line search ends in a round does its whole iteration update in that
round (accept the step, project, curvature pair, stopping tests) and chooses its next direction and first
trial step right away. So every round evaluates every running sample, and a batch costs as many
objective calls as its slowest sample needs evaluations (`calls == evaluations.max()`), instead of the
sum over iterations of the longest line search in that iteration (several times more when line-search
lengths vary across samples). This matters when an objective call has a fixed cost (e.g. a kinematic
chain and autograd graph whose cost hardly depends on the number of rows).

With `project`, the optimiser minimises the composite `f(project(y))` (so the line search sees the
objective on the constraint set: on the sphere this is the Riemannian gradient), and after each
accepted step stores `x = project(y)`. History pairs are built between projected iterates; a pair
without positive curvature is skipped, and a sample's history is reset when the projection moved
the point by more than `projection_reset_ratio` times the step length. The gradient at the projected
point is the projection's vector-Jacobian product with the objective's gradient at `project(y)` (already
known from the line search, since `project` is idempotent), so projecting costs no extra evaluation
(`reevaluate_projected=True` evaluates the objective there again, as earlier versions did: that
evaluation is the sample's pending point of the next round).

Cost: with `subset_rows=True` the objective is called as `fn(x_rows, rows)` with only the rows that need
an evaluation (`rows` their indices in the batch), so stopped samples cost nothing. Stopping: besides the
classical tests, `window` > 0 stops a sample when its loss decreased by no more than
`window_atol + window_rtol * |f|` over the last `window` iterations (a rule that stops in the flat tails
where a per-iteration relative change never gets small enough).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import torch

Objective = Callable[..., torch.Tensor]  # x (B, D) [, rows (B,) long] -> per-sample losses (B,)
Projection = Callable[[torch.Tensor], torch.Tensor]  # (B, D) -> (B, D), row-wise, differentiable
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]  # (round, f (B,), status (B,))

# Stop reasons (per sample), stored in `BatchedLBFGSResult.status`.
(RUNNING, CONVERGED_GTOL, CONVERGED_FTOL, CONVERGED_XTOL, MAX_ITER, LINE_SEARCH_FAILED, CONVERGED_WINDOW,
 MAX_EVAL) = range(8)
STATUS_NAMES = {
    RUNNING: "running",
    CONVERGED_GTOL: "gtol",
    CONVERGED_FTOL: "ftol",
    CONVERGED_XTOL: "xtol",
    MAX_ITER: "max_iter",
    LINE_SEARCH_FAILED: "line_search_failed",
    CONVERGED_WINDOW: "window",
    MAX_EVAL: "max_eval",
}
CONVERGED_CODES = (CONVERGED_GTOL, CONVERGED_FTOL, CONVERGED_XTOL, CONVERGED_WINDOW)


def evaluation_cap(max_iter: int, factor: float) -> Optional[int]:
    """`max_eval` for `max_iter` iterations: int(factor x max_iter), at least 1; None (no cap) for factor <= 0.

    torch.optim.LBFGS's default is factor 1.25 (max_iter * 5 // 4)."""
    return max(int(max_iter * factor), 1) if factor > 0 else None


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
    calls: int = 0  # objective calls (the initial evaluation included); equals evaluations.max()


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
            point = self.project(y) if self.project is not None else y
            loss = self.fn(point) if rows is None else self.fn(point, rows)
            if loss.shape != y.shape[:1]:
                raise ValueError(
                    f"batched_lbfgs: the objective must return one loss per sample, shape ({y.shape[0]},); "
                    f"got {tuple(loss.shape)}"
                )
            if self.project is not None:  # one backward pass: the gradient at y and the objective's own at project(y)
                grad, grad_point = torch.autograd.grad(loss.sum(), [y, point])
                grad = torch.cat([grad, grad_point], -1)
            else:
                (grad,) = torch.autograd.grad(loss.sum(), y)
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


class _LineSearch:
    """Per-sample strong-Wolfe line searches, each advanced by one evaluation at a time.

    A vectorised port of torch's `_strong_wolfe`. `start` begins a search for some rows (from a point
    with loss f, evaluator output G and directional derivative gtd < 0); the caller evaluates
    `x + t d` for every row with `searching`, and `advance` processes those evaluations: rows whose
    search ends get `t_out, f_out, g_out` and leave `searching`, the others get their next trial `t`.
    """

    BRACKET, ZOOM, DONE = 0, 1, 2

    def __init__(self, f: torch.Tensor, G: torch.Tensor, D: int, c1: float, c2: float,
                 tolerance_change: float, max_ls: int) -> None:
        self.D, self.c1, self.c2, self.tolerance_change, self.max_ls = D, c1, c2, tolerance_change, max_ls
        zeros = torch.zeros_like(f)
        self.phase = torch.full(f.shape, self.DONE, dtype=torch.long, device=f.device)
        self.ls_iter = torch.zeros_like(self.phase)  # evaluations after the first trial
        self.t, self.d, self.d_norm = zeros.clone(), G.new_zeros(G.shape[0], D), zeros.clone()
        # the search's origin
        self.f0, self.g0, self.gtd0 = f.clone(), G.clone(), -torch.ones_like(f)
        # the latest evaluation
        self.f_new, self.g_new, self.gtd_new = f.clone(), G.clone(), zeros.clone()
        # previous point of the bracketing phase
        self.t_prev, self.f_prev, self.g_prev, self.gtd_prev = zeros.clone(), f.clone(), G.clone(), zeros.clone()
        # bracket as (low, high): low has the lower loss
        self.t_lo, self.f_lo, self.g_lo, self.gtd_lo = zeros.clone(), f.clone(), G.clone(), zeros.clone()
        self.t_hi, self.f_hi, self.g_hi, self.gtd_hi = zeros.clone(), f.clone(), G.clone(), zeros.clone()
        self.insuf = torch.zeros_like(f, dtype=torch.bool)
        # results of the searches that ended
        self.t_out, self.f_out, self.g_out = zeros.clone(), f.clone(), G.clone()

    @property
    def searching(self) -> torch.Tensor:
        return self.phase != self.DONE

    def start(self, mask: torch.Tensor, t: torch.Tensor, d: torch.Tensor, f: torch.Tensor, G: torch.Tensor,
              gtd: torch.Tensor) -> None:
        """Begin a search for the rows of `mask` with first trial step t along d."""
        zeros = torch.zeros_like(f)
        self.phase = torch.where(mask, torch.full_like(self.phase, self.BRACKET), self.phase)
        self.ls_iter = torch.where(mask, torch.full_like(self.ls_iter, -1), self.ls_iter)  # -1: first trial
        self.t = torch.where(mask, t, self.t)
        self.d = _where_rows(mask, d, self.d)
        self.d_norm = torch.where(mask, d.abs().amax(dim=-1), self.d_norm)
        self.f0, self.g0, self.gtd0 = torch.where(mask, f, self.f0), _where_rows(mask, G, self.g0), \
            torch.where(mask, gtd, self.gtd0)
        self.t_prev, self.f_prev = torch.where(mask, zeros, self.t_prev), torch.where(mask, f, self.f_prev)
        self.g_prev, self.gtd_prev = _where_rows(mask, G, self.g_prev), torch.where(mask, gtd, self.gtd_prev)
        self.t_lo, self.f_lo = torch.where(mask, zeros, self.t_lo), torch.where(mask, f, self.f_lo)
        self.g_lo, self.gtd_lo = _where_rows(mask, G, self.g_lo), torch.where(mask, gtd, self.gtd_lo)
        self.t_hi, self.f_hi = torch.where(mask, zeros, self.t_hi), torch.where(mask, f, self.f_hi)
        self.g_hi, self.gtd_hi = _where_rows(mask, G, self.g_hi), torch.where(mask, gtd, self.gtd_hi)
        self.insuf = self.insuf & ~mask

    def _finish(self, mask: torch.Tensor, tt: torch.Tensor, ff: torch.Tensor, gg: torch.Tensor) -> None:
        if not mask.any():
            return
        self.t_out = torch.where(mask, tt, self.t_out)
        self.f_out = torch.where(mask, ff, self.f_out)
        self.g_out = _where_rows(mask, gg, self.g_out)
        self.phase = torch.where(mask, torch.full_like(self.phase, self.DONE), self.phase)

    def advance(self, f_eval: torch.Tensor, g_eval: torch.Tensor) -> torch.Tensor:
        """Process the evaluations at `x + t d` of every searching row; returns the rows whose search ended."""
        BRACKET, ZOOM = self.BRACKET, self.ZOOM
        just_evaluated = self.searching
        D, c1, c2, zeros = self.D, self.c1, self.c2, torch.zeros_like(self.t)
        f, g, gtd, t = self.f0, self.g0, self.gtd0, self.t
        self.f_new = f_new = torch.where(just_evaluated, f_eval, self.f_new)
        self.g_new = g_new = _where_rows(just_evaluated, g_eval, self.g_new)
        self.gtd_new = gtd_new = torch.where(just_evaluated, (g_eval[:, :D] * self.d).sum(-1), self.gtd_new)
        self.ls_iter = ls_iter = self.ls_iter + just_evaluated.long()
        armijo_rhs_slope = c1 * gtd
        # rows that were zooming before this evaluation: a row entering the zoom phase in step 1 has its
        # bracket already, and its next trial comes from step 3 (processing its evaluation again in step 2
        # would collapse a bracket whose low end is the new point, unlike torch)
        zooming = just_evaluated & (self.phase == ZOOM)

        # ---- 1. process the latest evaluation of bracketing-phase samples
        br = just_evaluated & (self.phase == BRACKET)
        if br.any():
            t_prev, f_prev, g_prev, gtd_prev = self.t_prev, self.f_prev, self.g_prev, self.gtd_prev
            out_of_evals = br & (ls_iter >= self.max_ls)
            # torch: bracket = [0, t]; the point with the lower loss wins (ties -> t = 0)
            if out_of_evals.any():
                pick_new = f_new < f
                self._finish(out_of_evals, torch.where(pick_new, t, zeros), torch.where(pick_new, f_new, f),
                             _where_rows(pick_new, g_new, g))
            br = br & ~out_of_evals
            armijo_fail = (f_new > f + t * armijo_rhs_slope) | ((ls_iter > 1) & (f_new >= f_prev))
            wolfe = gtd_new.abs() <= -c2 * gtd
            upward = gtd_new >= 0
            to_zoom = br & (armijo_fail | (~wolfe & upward))
            accepted = br & ~armijo_fail & wolfe
            extrapolate = br & ~armijo_fail & ~wolfe & ~upward
            self._finish(accepted, t, f_new, g_new)
            # bracket [t_prev, t]: order it as (low, high) by loss (ties -> t_prev is low, as torch)
            if to_zoom.any():  # (the guards skip row-wise selects with empty masks: the usual case)
                prev_low = f_prev <= f_new
                m = to_zoom & prev_low
                n = to_zoom & ~prev_low
                self.t_lo = torch.where(m, t_prev, torch.where(n, t, self.t_lo))
                self.f_lo = torch.where(m, f_prev, torch.where(n, f_new, self.f_lo))
                self.g_lo = _where_rows(m, g_prev, _where_rows(n, g_new, self.g_lo))
                self.gtd_lo = torch.where(m, gtd_prev, torch.where(n, gtd_new, self.gtd_lo))
                self.t_hi = torch.where(m, t, torch.where(n, t_prev, self.t_hi))
                self.f_hi = torch.where(m, f_new, torch.where(n, f_prev, self.f_hi))
                self.g_hi = _where_rows(m, g_new, _where_rows(n, g_prev, self.g_hi))
                self.gtd_hi = torch.where(m, gtd_new, torch.where(n, gtd_prev, self.gtd_hi))
                self.insuf = torch.where(to_zoom, torch.zeros_like(self.insuf), self.insuf)
                self.phase = torch.where(to_zoom, torch.full_like(self.phase, ZOOM), self.phase)
            if extrapolate.any():
                # extrapolation: next trial in [t + 0.01 (t - t_prev), 10 t]
                t_next = _cubic_minimiser(t_prev, f_prev, gtd_prev, t, f_new, gtd_new,
                                          t + 0.01 * (t - t_prev), t * 10)
                self.t_prev = torch.where(extrapolate, t, t_prev)
                self.f_prev = torch.where(extrapolate, f_new, f_prev)
                self.g_prev = _where_rows(extrapolate, g_new, g_prev)
                self.gtd_prev = torch.where(extrapolate, gtd_new, gtd_prev)
                self.t = torch.where(extrapolate, t_next, t)

        # ---- 2. process the latest evaluation of zoom-phase samples
        zm = zooming
        if zm.any():
            t = self.t
            t_lo, f_lo, g_lo, gtd_lo = self.t_lo, self.f_lo, self.g_lo, self.gtd_lo
            t_hi, f_hi, g_hi, gtd_hi = self.t_hi, self.f_hi, self.g_hi, self.gtd_hi
            worse = (f_new > f + t * armijo_rhs_slope) | (f_new >= f_lo)
            to_high = zm & worse
            t_hi = torch.where(to_high, t, t_hi)
            f_hi = torch.where(to_high, f_new, f_hi)
            g_hi = _where_rows(to_high, g_new, g_hi)
            gtd_hi = torch.where(to_high, gtd_new, gtd_hi)
            swap = to_high & (f_hi < f_lo)
            if swap.any():
                t_lo, t_hi = torch.where(swap, t_hi, t_lo), torch.where(swap, t_lo, t_hi)
                f_lo, f_hi = torch.where(swap, f_hi, f_lo), torch.where(swap, f_lo, f_hi)
                g_lo, g_hi = _where_rows(swap, g_hi, g_lo), _where_rows(swap, g_lo, g_hi)
                gtd_lo, gtd_hi = torch.where(swap, gtd_hi, gtd_lo), torch.where(swap, gtd_lo, gtd_hi)
            better = zm & ~worse
            wolfe = better & (gtd_new.abs() <= -c2 * gtd)
            flip = better & ~wolfe & (gtd_new * (t_hi - t_lo) >= 0)
            if flip.any():
                t_hi = torch.where(flip, t_lo, t_hi)
                f_hi = torch.where(flip, f_lo, f_hi)
                g_hi = _where_rows(flip, g_lo, g_hi)
                gtd_hi = torch.where(flip, gtd_lo, gtd_hi)
            t_lo = torch.where(better, t, t_lo)
            f_lo = torch.where(better, f_new, f_lo)
            g_lo = _where_rows(better, g_new, g_lo)
            gtd_lo = torch.where(better, gtd_new, gtd_lo)
            self.t_lo, self.f_lo, self.g_lo, self.gtd_lo = t_lo, f_lo, g_lo, gtd_lo
            self.t_hi, self.f_hi, self.g_hi, self.gtd_hi = t_hi, f_hi, g_hi, gtd_hi
            self._finish(wolfe, t_lo, f_lo, g_lo)

        # ---- 3. zoom-phase samples: stop, or choose the next trial inside the bracket
        zm = self.phase == ZOOM
        if zm.any():
            t_lo, t_hi = self.t_lo, self.t_hi
            b_min, b_max = torch.minimum(t_lo, t_hi), torch.maximum(t_lo, t_hi)
            stop = zm & ((ls_iter >= self.max_ls) | ((b_max - b_min) * self.d_norm < self.tolerance_change))
            self._finish(stop, t_lo, self.f_lo, self.g_lo)
            zm = zm & ~stop
            t_try = _cubic_minimiser(t_lo, self.f_lo, self.gtd_lo, t_hi, self.f_hi, self.gtd_hi, b_min, b_max)
            eps = 0.1 * (b_max - b_min)
            near_edge = torch.minimum(b_max - t_try, t_try - b_min) < eps
            at_or_out = (t_try >= b_max) | (t_try <= b_min)
            push = near_edge & (self.insuf | at_or_out)
            pushed = torch.where((t_try - b_max).abs() < (t_try - b_min).abs(), b_max - eps, b_min + eps)
            t_try = torch.where(push, pushed, t_try)
            self.insuf = torch.where(zm, near_edge & ~push, self.insuf)
            self.t = torch.where(zm, t_try, self.t)
        return just_evaluated & ~self.searching


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


class _PipelinedLBFGS:
    """The per-sample L-BFGS state of `batched_lbfgs` and its round loop (see the module docstring)."""

    def __init__(self, fn: Objective, x0: torch.Tensor, project: Optional[Projection], max_iter: int,
                 max_eval: Optional[int], history_size: int, lr: float, ftol: float, gtol: float, xtol: float,
                 max_ls: int, c1: float, c2: float, projection_reset_ratio: float, window: int,
                 window_rtol: float, window_atol: float, subset_rows: bool, reevaluate_projected: bool) -> None:
        self.project, self.max_iter, self.max_eval, self.lr = project, max_iter, max_eval, lr
        self.ftol, self.gtol, self.xtol, self.ratio = ftol, gtol, xtol, projection_reset_ratio
        self.window, self.window_rtol, self.window_atol = window, window_rtol, window_atol
        self.reevaluate_projected = reevaluate_projected
        B, D = x0.shape
        self.D, self.m = D, history_size
        self.evaluate = _Evaluator(fn, project, subset_rows)
        x = x0.detach().clone()
        if project is not None:
            with torch.no_grad():
                x = project(x).detach()
        f, G = self.evaluate(x)  # G: (B, D), or (B, 2D) with the objective's gradient at the projected point
        self.x, self.f, self.G, self.g = x, f, G, G[:, :D]
        long = dict(dtype=torch.long, device=x.device)
        self.n_evals = torch.ones(B, **long)
        self.iterations = torch.zeros(B, **long)
        status = torch.full((B,), RUNNING, **long)
        status = torch.where(self.g.abs().amax(-1) <= gtol, torch.full_like(status, CONVERGED_GTOL), status)
        self.status = torch.where(~torch.isfinite(f), torch.full_like(status, LINE_SEARCH_FAILED), status)
        self.S = x.new_zeros(B, history_size, D)
        self.Y = x.new_zeros(B, history_size, D)
        self.count = torch.zeros(B, **long)
        self.eps = torch.finfo(x.dtype).eps
        # losses of the last window+1 iterates
        self.past = f[:, None].repeat(1, window + 1) if window > 0 else None
        self.ls = _LineSearch(f, G, D, c1, c2, 1e-9, max_ls)
        # the accepted step of an iteration whose update is pending (`reevaluating`: its projected point
        # is evaluated in the next round)
        self.acc_t, self.acc_x, self.acc_f, self.acc_G = torch.zeros_like(f), x.clone(), f.clone(), G.clone()
        self.acc_reset = torch.zeros(B, dtype=torch.bool, device=x.device)
        self.reevaluating = torch.zeros_like(self.acc_reset)

    def _start_iterations(self, active: torch.Tensor) -> None:
        """Direction and first trial step of the next iteration of the rows of `active`."""
        if not bool(active.any()):
            return
        g, f = self.g, self.f
        if bool(active.all()):
            d = _two_loop_direction(g, self.S, self.Y, self.count)
        else:  # only the starting rows (about half of the batch per round once pipelined)
            idx = torch.nonzero(active)[:, 0]
            d = torch.zeros_like(g).index_copy(
                0, idx, _two_loop_direction(g[idx], self.S[idx], self.Y[idx], self.count[idx]))
        gtd = (g * d).sum(-1)
        # not a descent direction (bad curvature information): restart from steepest descent
        restart = active & ~(gtd < 0)
        self.count = torch.where(restart, torch.zeros_like(self.count), self.count)
        d = _where_rows(restart, -g, d)
        gtd = torch.where(restart, (g * d).sum(-1), gtd)
        no_descent = active & ~(gtd < 0)
        self.status = torch.where(no_descent, torch.full_like(self.status, LINE_SEARCH_FAILED), self.status)
        active = active & ~no_descent
        # first step without history: scaled like torch.optim.LBFGS; afterwards the unit step
        g_l1 = g.abs().sum(-1)
        t0 = torch.where(self.count == 0, torch.clamp(1.0 / g_l1, max=1.0) * self.lr, torch.full_like(f, self.lr))
        self.ls.start(active, t0, d, f, self.G, gtd)

    def _accept_steps(self, done: torch.Tensor) -> torch.Tensor:
        """Take the step of the rows whose line search ended; returns the rows whose iteration is complete."""
        D, ls = self.D, self.ls
        step = ls.t_out[:, None] * ls.d  # (B, D)
        y_point = self.x + step
        x_new, G_new = y_point, ls.g_out
        reset = torch.zeros_like(done)
        if self.project is not None:
            idx = torch.nonzero(done)[:, 0]  # project only the rows that took a step
            with torch.no_grad():
                x_proj = self.project(y_point[idx]).detach()
            x_new = y_point.index_copy(0, idx, x_proj)
            moved = done & ((x_new - y_point).abs().amax(-1) > 0)
            if moved.any():
                if self.reevaluate_projected:
                    self.reevaluating = self.reevaluating | moved
                else:  # project(x_new) = project(y_point): same loss, gradient by the chain rule at x_new
                    g_chain = _projected_gradient(self.project, x_proj, G_new[idx, D:])
                    g_chain = G_new[:, :D].index_copy(0, idx, g_chain)
                    G_new = _where_rows(moved, torch.cat([g_chain, G_new[:, D:]], -1), G_new)
            shift = (x_new - y_point).norm(dim=-1)
            reset = done & (shift > self.ratio * step.norm(dim=-1))
        self.acc_t = torch.where(done, ls.t_out, self.acc_t)
        self.acc_x = _where_rows(done, x_new, self.acc_x)
        self.acc_f = torch.where(done, ls.f_out, self.acc_f)
        self.acc_G = _where_rows(done, G_new, self.acc_G)
        self.acc_reset = torch.where(done, reset, self.acc_reset)
        return done & ~self.reevaluating

    def _complete_iterations(self, active: torch.Tensor) -> None:
        """Curvature pair, history reset and stopping tests of the rows of `active` (step accepted)."""
        x, f, G, g, status = self.x, self.f, self.G, self.g, self.status
        x_new = _where_rows(active, self.acc_x, x)
        f_new = torch.where(active, self.acc_f, f)
        G_new = _where_rows(active, self.acc_G, G)
        g_new = G_new[:, : self.D]
        # curvature pair (between projected iterates)
        s = x_new - x
        yv = g_new - g
        sy = (s * yv).sum(-1)
        yy = (yv * yv).sum(-1)
        reset = active & self.acc_reset
        store = active & ~reset & (sy > self.eps * yy) & (sy > 0)
        count = torch.where(reset, torch.zeros_like(self.count), self.count)
        self.S = torch.where(store[:, None, None], torch.cat([self.S[:, 1:], s[:, None]], 1), self.S)
        self.Y = torch.where(store[:, None, None], torch.cat([self.Y[:, 1:], yv[:, None]], 1), self.Y)
        self.count = torch.where(store, torch.clamp(count + 1, max=self.m), count)
        # stopping tests, per sample
        self.iterations = iterations = self.iterations + active.long()
        rel_change = (f - f_new).abs() / torch.clamp(torch.maximum(f.abs(), f_new.abs()), min=1.0)
        no_progress = active & (self.acc_t == 0)
        new_status = torch.full_like(status, RUNNING)
        if self.max_eval is not None:  # checked after a whole iteration, as torch.optim.LBFGS does
            new_status = torch.where(self.n_evals >= self.max_eval, torch.full_like(status, MAX_EVAL), new_status)
        new_status = torch.where(iterations >= self.max_iter, torch.full_like(status, MAX_ITER), new_status)
        if self.past is not None:
            self.past = past = torch.where(active[:, None], torch.cat([self.past[:, 1:], f_new[:, None]], 1),
                                           self.past)
            flat = (iterations >= self.window) & (
                past[:, 0] - past[:, -1] <= self.window_atol + self.window_rtol * f_new.abs())
            new_status = torch.where(flat, torch.full_like(status, CONVERGED_WINDOW), new_status)
        new_status = torch.where(s.abs().amax(-1) <= self.xtol, torch.full_like(status, CONVERGED_XTOL), new_status)
        new_status = torch.where(rel_change <= self.ftol, torch.full_like(status, CONVERGED_FTOL), new_status)
        new_status = torch.where(g_new.abs().amax(-1) <= self.gtol, torch.full_like(status, CONVERGED_GTOL),
                                 new_status)
        # a line search that could not decrease the loss ends the sample unless the gradient is small
        new_status = torch.where(no_progress & (new_status != CONVERGED_GTOL),
                                 torch.full_like(status, LINE_SEARCH_FAILED), new_status)
        self.status = torch.where(active, new_status, status)
        self.x, self.f, self.G, self.g = x_new, f_new, G_new, g_new

    def run(self, callback: Optional[Callback]) -> BatchedLBFGSResult:
        """Rounds of one objective call each until every sample has stopped."""
        if self.max_iter > 0:
            self._start_iterations(self.status == RUNNING)
        rnd = 0
        while True:
            searching, reevaluating = self.ls.searching, self.reevaluating
            pending = searching | reevaluating
            if not pending.any():
                break
            # one objective call: every running sample's pending point
            point = _where_rows(reevaluating, self.acc_x,
                                _where_rows(searching, self.x + self.ls.t[:, None] * self.ls.d, self.x))
            f_eval, G_eval = self.evaluate(point, pending)
            self.n_evals = self.n_evals + pending.long()
            complete = reevaluating
            if reevaluating.any():
                self.acc_f = torch.where(reevaluating, f_eval, self.acc_f)
                self.acc_G = _where_rows(reevaluating, G_eval, self.acc_G)
                self.reevaluating = torch.zeros_like(reevaluating)
            if searching.any():
                ended = self.ls.advance(f_eval, G_eval)
                if ended.any():
                    complete = complete | self._accept_steps(ended)
            if complete.any():
                self._complete_iterations(complete)
                self._start_iterations(complete & (self.status == RUNNING))
                if callback is not None:
                    callback(rnd, self.f, self.status)
            rnd += 1
        status = torch.where(self.status == RUNNING, torch.full_like(self.status, MAX_ITER), self.status)
        converged = torch.isin(status, torch.tensor(CONVERGED_CODES, device=status.device))
        return BatchedLBFGSResult(x=self.x, f=self.f, grad=self.g, iterations=self.iterations,
                                  evaluations=self.n_evals, converged=converged, status=status,
                                  rows_evaluated=self.evaluate.rows, calls=self.evaluate.calls)


def batched_lbfgs(
    fn: Objective,
    x0: torch.Tensor,
    *,
    project: Optional[Projection] = None,
    max_iter: int = 100,
    max_eval: Optional[int] = None,
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
    callback: Optional[Callback] = None,
) -> BatchedLBFGSResult:
    """Minimise `fn` independently for every row of `x0` (B, D) with per-sample L-BFGS + strong Wolfe.

    `fn(x (B, D)) -> (B,)` must treat rows independently (its gradient is taken on the sum); with
    `subset_rows=True` it is called as `fn(x_rows, rows)` on the rows that need an evaluation only.
    Per sample, stop when max|grad| <= gtol, when the relative loss change
    |f_k - f_{k+1}| / max(|f_k|, |f_{k+1}|, 1) <= ftol, when max|x_{k+1} - x_k| <= xtol, when (window > 0)
    f_{k-window} - f_k <= window_atol + window_rtol * |f_k|, after `max_iter` iterations, at the end of the
    first iteration after which the sample has used `max_eval` objective evaluations (the initial one
    included; None = no cap; torch.optim.LBFGS's default is max_iter * 5 // 4), or when the line search
    makes no progress. Stopped samples stay fixed.

    Samples' iterations are pipelined (see the module docstring): `callback(round, f (B,), status (B,))`
    is called after every round (objective call, counted from 0 after the initial evaluation) in which
    at least one sample completed an iteration; f holds every sample's latest accepted loss (a sample's
    entry changes only in rounds where it completed an iteration) and status the stop codes. A sample's
    k-th completed iteration may fall in a different round than another sample's k-th.
    """
    if x0.ndim != 2:
        raise ValueError(f"batched_lbfgs: x0 must be (B, D), got shape {tuple(x0.shape)}")
    if not x0.is_floating_point():
        raise ValueError(f"batched_lbfgs: x0 must be floating point, got {x0.dtype}")
    if max_eval is not None and max_eval < 1:
        raise ValueError(f"batched_lbfgs: max_eval must be >= 1 or None, got {max_eval}")
    solver = _PipelinedLBFGS(fn, x0, project, max_iter, max_eval, history_size, lr, ftol, gtol, xtol, max_ls, c1, c2,
                             projection_reset_ratio, window, window_rtol, window_atol, subset_rows,
                             reevaluate_projected)
    return solver.run(callback)
