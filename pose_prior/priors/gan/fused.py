"""The discriminator as hand-written forward/backward code: `trunk` (an autograd Function) and
`discriminator_step_loss` (the whole network and the LSGAN discriminator loss as one Function).

The trunk is everything that runs per joint: the shared layers over each joint's 9 rotation-matrix
entries (9 -> C -> C, LeakyReLU after each), the J per-joint linear heads and the whole-pose MLP's first
linear layer (before its LeakyReLU). It maps (N*J, 9) inputs to per-joint logits (N, J) and the MLP's
first pre-activation (N, H). Written out by hand because, at the authors' widths (C = 32, H = 64,
batch 2 x 1024), autograd's version of a discriminator step spent about as long outside the matrix
products as in them (bench/train_throughput.py):
- the first layer's bias rides in its GEMM as an appended ones column of the input, so its weight and
  bias gradients are one product; the input with that column is made once per `PreparedPoses`;
- LeakyReLU runs in place; its backward reads the sign of the OUTPUT (the same as the input's for a
  positive slope), so no pre-activation is kept or re-read;
- the heads are an element-wise product and a sum over C instead of J block rows of a (J + H) x J*C
  GEMM, 20/21 of whose entries are zeros: a quarter of the first layer's multiply-adds;
- the whole-pose weight is permuted from its stored feature-major order once per call (H x J*C), not
  the activations;
- every weight gradient is computed as (input^T @ grad)^T, the layout that MKL runs several times
  faster when the reduction runs over the N*J rows;
- the per-joint work runs in blocks of CHUNK_POSES poses, so a block's activations stay in cache from
  one operation to the next;
- the input gradient is computed only when the input requires grad (the generator step), the weight
  gradients only for parameters that require grad (none in the generator step);
- `PreparedPoses` holds the input and the activation / gradient buffers, so the 10 discriminator steps
  of the authors' iteration, which see the same input, prepare it once and reuse the buffers.
`discriminator_step_loss` (the discriminator steps) adds the rest of the whole-pose MLP and the loss of
`losses.discriminator_loss` with their gradients written out, which removes autograd's ~40 small nodes
per step; as the loss is a sum over poses, its forward runs forward and backward block by block (each
block's activations stay in cache, the weight gradients are accumulated) and its backward only scales
the gradients by the incoming d_loss.
The arithmetic is the plain formulation's (tests/pose_prior/test_fused_discriminator.py compares values
and gradients with autograd's in float64); only the order of floating-point sums differs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

_leaky_relu_backward = torch.ops.aten.leaky_relu_backward

# Poses per block of the per-joint loops: a block's activations stay in cache between ops. 512 and 1024 are
# equally fast on one thread (2048 is ~15% slower there), but with 2 threads every block is a parallel region
# ending in a barrier: 2048 (one block per real or fake half at batch 1024) gave 3.09x against 2.67-3.06x
# for 1024 in bench/train_throughput.py on the quiet 2-core machine.
CHUNK_POSES = 2048


class _Buffers:
    """(N*J, 10) input x1; (N*J, C) activations h1, h2 (kept for the backward) and gradients g1, g2 (g1 also
    the heads' scratch), with the number of forwards (and refills) that have written them. Reusing them
    saves more than computing: 30 MB of fresh pages cost ~15 ms of page faults per iteration."""

    def __init__(self, rows: int, features: int, like: torch.Tensor) -> None:
        self.x1 = like.new_empty(rows, 10)
        self.x1[:, 9] = 1.0  # bias column for the first layer
        self.h1, self.h2, self.g1, self.g2 = (like.new_empty(rows, features) for _ in range(4))
        self.generation = 0

    def fits(self, rows: int, features: int, like: torch.Tensor) -> bool:
        return self.h1.shape == (rows, features) and self.h1.dtype == like.dtype and self.h1.device == like.device


class PreparedPoses:
    """A discriminator input (N, J, 3, 3) made ready for `trunk`: the (N*J, 10) matrix of the 9 entries
    and a ones column, and the (N*J, C) activation and gradient buffers that every call with it reuses
    (taken over from `reuse` when it is given and of the same size: the next iteration, the fresh steps).

    Reuse is safe while each forward's backward runs before the next forward with the same buffers (the
    discriminator steps); otherwise the backward raises instead of reading overwritten activations."""

    def __init__(self, rotmats: torch.Tensor, num_joints: int, joint_features: int,
                 reuse: PreparedPoses | None = None) -> None:
        if rotmats.dim() != 4 or rotmats.shape[1:] != (num_joints, 3, 3):
            raise ValueError(f"discriminator input must be (N, {num_joints}, 3, 3), got {tuple(rotmats.shape)}")
        self.rotmats = rotmats
        self.num_poses, self.num_joints, self.joint_features = rotmats.shape[0], int(num_joints), int(joint_features)
        rows = self.num_poses * self.num_joints
        x = rotmats.detach().reshape(rows, 9)
        if reuse is not None and reuse.buffers.fits(rows, self.joint_features, x):
            self.buffers = reuse.buffers
            self.claim()  # the input is overwritten: a pending backward of `reuse` must fail
        else:
            self.buffers = _Buffers(rows, self.joint_features, x)
        b = self.buffers
        b.x1[:, :9] = x  # (N*J, 10): the 9 entries and the ones column
        self.x1, self.h1, self.h2, self.g1, self.g2 = b.x1, b.h1, b.h2, b.g1, b.g2

    def __len__(self) -> int:
        return self.num_poses

    def claim(self) -> int:
        """Mark the buffers as holding a new forward's activations -> its generation number."""
        self.buffers.generation += 1
        return self.buffers.generation

    def check(self, generation: int) -> None:
        if self.buffers.generation != generation:
            raise RuntimeError("PreparedPoses was used for another discriminator forward before this backward; "
                               "prepare one input per pending backward")


def _blocks(num_poses: int, num_joints: int) -> list[tuple[slice, slice]]:
    """(pose slice, row slice) blocks of CHUNK_POSES poses over N poses of J joints."""
    step = max(1, int(CHUNK_POSES))
    return [(slice(s, min(num_poses, s + step)), slice(s * num_joints, min(num_poses, s + step) * num_joints))
            for s in range(0, num_poses, step)]


def _joint_major(w0: torch.Tensor, num_joints: int) -> torch.Tensor:
    """The whole-pose weight (H, C*J) as stored, feature-major (c*J + j) -> joint-major (H, J*C): the
    order of the activations, so the weight is permuted instead of them."""
    H = w0.shape[0]
    return w0.view(H, -1, num_joints).transpose(1, 2).reshape(H, -1)


def _feature_major(g: torch.Tensor, num_joints: int) -> torch.Tensor:
    """Inverse of `_joint_major` (for the weight's gradient)."""
    H = g.shape[0]
    return g.view(H, num_joints, -1).transpose(1, 2).reshape(H, -1)


def _trunk_forward(prep: PreparedPoses, slope: float, w1, b1, w2, b2, head_w, head_b, w0p, b0):
    """-> per-joint logits (N, J), first pre-activation (N, H); w0p: `_joint_major` whole-pose weight.
    Leaves the activations in prep.h1, prep.h2."""
    N, J, C = prep.num_poses, prep.num_joints, prep.joint_features
    H = w0p.shape[0]
    w1b_t = torch.cat([w1, b1[:, None]], 1).t()  # (10, C)
    w2_t = w2.t()
    w0p_t = w0p.t()
    h1, h2, x1 = prep.h1, prep.h2, prep.x1  # (N*J, C), (N*J, C), (N*J, 10)
    scratch = prep.g1.view(N, J, C)
    hidden = h1.new_empty(N, H)
    per_joint = h1.new_empty(N, J)
    for poses, rows in _blocks(N, J):
        n = poses.stop - poses.start
        h1c, h2c = h1[rows], h2[rows]
        torch.mm(x1[rows], w1b_t, out=h1c)
        F.leaky_relu_(h1c, slope)
        torch.addmm(b2, h1c, w2_t, out=h2c)
        F.leaky_relu_(h2c, slope)
        torch.addmm(b0, h2c.view(n, J * C), w0p_t, out=hidden[poses])
        torch.mul(h2c.view(n, J, C), head_w, out=scratch[poses])
        torch.sum(scratch[poses], -1, out=per_joint[poses])
    per_joint.add_(head_b)
    return per_joint, hidden


def _trunk_backward(prep: PreparedPoses, slope: float, w1, w2, head_w, w0p, d_per_joint, d_hidden,
                    need: Sequence[bool]) -> list[torch.Tensor | None]:
    """Gradients of (x, w1, b1, w2, b2, head_w, head_b, w0p, b0), each only where `need` says (else None);
    w0p's joint-major, as w0p (`_feature_major` turns it into w0's)."""
    N, J, C = prep.num_poses, prep.num_joints, prep.joint_features
    h1, h2, g1, g2, x1 = prep.h1, prep.h2, prep.g1, prep.g2, prep.x1
    feat = h2.view(N, J * C)
    d_per_joint = d_per_joint.contiguous()
    d_hidden = d_hidden.contiguous()
    grads: list[torch.Tensor | None] = [None] * 9
    if need[7]:  # whole-pose weight, joint-major
        grads[7] = feat.t().mm(d_hidden).t()
    if need[8]:
        grads[8] = d_hidden.sum(0)
    if need[6]:
        grads[6] = d_per_joint.sum(0)
    need_x, need_w1, need_w2 = need[0], need[1] or need[2], need[3]
    # per block: heads' weight gradient, feature gradient (MLP's first layer + heads), LeakyReLU, layer 2,
    # LeakyReLU, layer 1
    head_grad = h1.new_zeros(J * C) if need[5] else None
    w2_grad_t = h1.new_zeros(C, C) if need_w2 else None  # (in, out): the weight gradient, transposed
    w1b_grad_t = h1.new_zeros(10, C) if need_w1 else None
    x_grad = h1.new_empty(N * J, 9) if need_x else None
    need_features = need_x or need_w1 or need_w2 or need[4]
    d_pj = d_per_joint.unsqueeze(-1)
    for poses, rows in _blocks(N, J):
        n = poses.stop - poses.start
        g2c, h2c, h1c = g2[rows], h2[rows], h1[rows]
        if head_grad is not None:  # head j: sum_n d_per_joint[n, j] * h2[n, j, :] (a strided bmm: 5x slower)
            scratch = g1[rows].view(n, J, C)
            torch.mul(h2c.view(n, J, C), d_pj[poses], out=scratch)
            head_grad += scratch.view(n, J * C).sum(0)
        if not need_features:
            continue
        torch.mm(d_hidden[poses], w0p, out=g2c.view(n, J * C))
        g2c.view(n, J, C).addcmul_(d_pj[poses], head_w)
        _leaky_relu_backward.grad_input(g2c, h2c, slope, True, grad_input=g2c)  # d pre-activation 2
        if w2_grad_t is not None:
            w2_grad_t.addmm_(h1c.t(), g2c)
        if not (need_x or need_w1):
            continue
        g1c = g1[rows]
        torch.mm(g2c, w2, out=g1c)
        _leaky_relu_backward.grad_input(g1c, h1c, slope, True, grad_input=g1c)  # d pre-activation 1
        if w1b_grad_t is not None:
            w1b_grad_t.addmm_(x1[rows].t(), g1c)  # weight and bias in one product
        if x_grad is not None:
            torch.mm(g1c, w1, out=x_grad[rows])
    if head_grad is not None:
        grads[5] = head_grad.view(J, C)
    if w2_grad_t is not None:
        grads[3] = w2_grad_t.t()
    if need[4]:
        grads[4] = g2.sum(0)  # (all blocks were written when b2 needs a gradient)
    if w1b_grad_t is not None:
        grads[1], grads[2] = w1b_grad_t[:-1].t(), w1b_grad_t[-1]
    grads[0] = x_grad
    return grads


class _Trunk(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, prep, slope, w1, b1, w2, b2, head_w, head_b, w0, b0):
        w0p = _joint_major(w0, prep.num_joints)
        per_joint, hidden = _trunk_forward(prep, slope, w1, b1, w2, b2, head_w, head_b, w0p, b0)
        ctx.prep, ctx.slope, ctx.generation = prep, slope, prep.claim()
        ctx.save_for_backward(w1, w2, head_w, w0p)
        return per_joint, hidden

    @staticmethod
    @once_differentiable
    def backward(ctx, d_per_joint, d_hidden):
        ctx.prep.check(ctx.generation)
        w1, w2, head_w, w0p = ctx.saved_tensors
        need = ctx.needs_input_grad  # (x, prep, slope, w1, b1, w2, b2, head_w, head_b, w0, b0)
        g = _trunk_backward(ctx.prep, ctx.slope, w1, w2, head_w, w0p, d_per_joint, d_hidden, need[:1] + need[3:])
        if g[7] is not None:
            g[7] = _feature_major(g[7], ctx.prep.num_joints)
        return (g[0], None, None, *g[1:])


def trunk(
    prep: PreparedPoses,
    slope: float,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    head_w: torch.Tensor,
    head_b: torch.Tensor,
    w0: torch.Tensor,
    b0: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-joint logits (N, J) and the whole-pose MLP's first pre-activation (N, H) of `prep`'s poses.

    w1 (C, 9), b1 (C,), w2 (C, C), b2 (C,): the shared layers; head_w (J, C), head_b (J,): the heads;
    w0 (H, C*J) feature-major, b0 (H,): the MLP's first layer. Differentiable in the parameters and in
    `prep.rotmats` (when it requires grad)."""
    x = prep.rotmats.reshape(prep.num_poses * prep.num_joints, 9)
    return _Trunk.apply(x, prep, float(slope), w1, b1, w2, b2, head_w, head_b, w0, b0)


class _Block:
    """Poses [start, stop) of a PreparedPoses, with activation buffers shared by all blocks (the first
    block's rows of the prepared buffers): duck-types PreparedPoses for `_trunk_forward`/`_trunk_backward`."""

    def __init__(self, prep: PreparedPoses, poses: slice, rows: slice) -> None:
        self.num_poses = poses.stop - poses.start
        self.num_joints, self.joint_features = prep.num_joints, prep.joint_features
        self.x1 = prep.x1[rows]
        n = rows.stop - rows.start
        self.h1, self.h2, self.g1, self.g2 = prep.h1[:n], prep.h2[:n], prep.g1[:n], prep.g2[:n]


class _DiscriminatorStepLoss(torch.autograd.Function):
    """The loss is a sum over poses, so the forward runs forward AND backward block by block (the block's
    activations never leave the cache) and accumulates the gradients; backward scales them by d_loss."""

    @staticmethod
    def forward(ctx, prep, num_real, slope, joint_weight, pose_weight, *params):
        w1, b1, w2, b2, head_w, head_b, w0, b0, *tail = params  # tail: (W, b) of the MLP's later layers
        N, J, R = prep.num_poses, prep.num_joints, num_real
        need = ctx.needs_input_grad[5:]
        # d loss / d logit = 2 err * weight / (J + 1) / entries of its term (losses.discriminator_loss)
        scale = w1.new_empty(N, J + 1)
        scale[:R, :J] = joint_weight / (R * J)
        scale[R:, :J] = joint_weight / ((N - R) * J)
        scale[:R, J] = pose_weight / R
        scale[R:, J] = pose_weight / (N - R)
        scale *= 2.0 / (J + 1)
        logits, err = w1.new_empty(N, J + 1), w1.new_empty(N, J + 1)  # err: logit - label
        grads: list[torch.Tensor | None] = [torch.zeros_like(p) if n else None for p, n in zip(params, need)]
        n_lin = len(tail) // 2
        trunk_need = (False, *need[:8])
        w0p = _joint_major(w0, J)
        if need[6]:  # accumulated joint-major, permuted once at the end
            grads[6] = grads[6].view(w0p.shape)
        for poses, rows in _blocks(N, J):
            block = _Block(prep, poses, rows)
            per_joint, hidden = _trunk_forward(block, slope, w1, b1, w2, b2, head_w, head_b, w0p, b0)
            acts = [F.leaky_relu(hidden, slope)]  # post-activations: inputs of the later layers
            for i in range(n_lin - 1):
                acts.append(F.leaky_relu_(torch.addmm(tail[2 * i + 1], acts[-1], tail[2 * i].t()), slope))
            out = logits[poses]
            out[:, :J] = per_joint
            torch.addmm(tail[-1], acts[-1], tail[-2].t(), out=out[:, J:])
            e = err[poses]
            e.copy_(out)
            e[: max(0, min(R - poses.start, block.num_poses))] -= 1.0  # real poses: label 1
            if not any(need):
                continue
            d_logits = e * scale[poses]
            d = d_logits[:, J:]  # gradient w.r.t. the current layer's output
            for i in range(n_lin - 1, -1, -1):
                a = acts[i]
                if need[8 + 2 * i]:
                    grads[8 + 2 * i].addmm_(d.t(), a)
                if need[9 + 2 * i]:
                    grads[9 + 2 * i] += d.sum(0)
                d = _leaky_relu_backward(d.mm(tail[2 * i]), a, slope, True)  # through the LeakyReLU making a
            g = _trunk_backward(block, slope, w1, w2, head_w, w0p, d_logits[:, :J], d, trunk_need)
            for i in range(8):
                if g[i + 1] is not None:
                    grads[i] += g[i + 1]
        if need[6]:
            grads[6] = _feature_major(grads[6], J)
        sq = err.square()
        parts = torch.stack([sq[:R, :J].mean(), sq[:R, J].mean(), sq[R:, :J].mean(), sq[R:, J].mean()])
        loss = (joint_weight * (parts[0] + parts[2]) + pose_weight * (parts[1] + parts[3])) / (J + 1)
        prep.claim()  # the buffers were overwritten: a pending `trunk` backward on them must fail
        ctx.grads = grads
        ctx.mark_non_differentiable(logits, parts)
        return loss, logits, parts

    @staticmethod
    @once_differentiable
    def backward(ctx, d_loss, _d_logits, _d_parts):
        return (None, None, None, None, None, *(None if g is None else g * d_loss for g in ctx.grads))


def discriminator_step_loss(
    prep: PreparedPoses,
    num_real: int,
    slope: float,
    joint_weight: float,
    pose_weight: float,
    trunk_params: Sequence[torch.Tensor],
    tail_params: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """The discriminator's LSGAN loss on `prep` (first num_real poses real, the rest fake), as
    `losses.discriminator_loss` on the network's logits -> (loss, logits (N, J + 1) detached, parts).

    trunk_params: `trunk`'s eight parameters in its order; tail_params: weight and bias of every later
    linear layer of the whole-pose MLP (each but the last followed by LeakyReLU(slope)). Differentiable in
    the parameters only (the discriminator steps train on fixed poses)."""
    if prep.rotmats.requires_grad:
        raise ValueError("discriminator_step_loss does not differentiate w.r.t. the poses; detach them")
    if not 0 < num_real < prep.num_poses:
        raise ValueError(f"need real and fake poses, got {num_real} real of {prep.num_poses}")
    loss, logits, parts = _DiscriminatorStepLoss.apply(prep, int(num_real), float(slope), float(joint_weight),
                                                       float(pose_weight), *trunk_params, *tail_params)
    names = ("joint_real", "pose_real", "joint_fake", "pose_fake")
    return loss, logits, dict(zip(names, parts.unbind()))
