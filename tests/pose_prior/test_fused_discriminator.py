"""The hand-written discriminator gradients (pose_prior/priors/gan/fused.py) against autograd on the plain,
unfused formulation (per-joint layers, a loop of heads, the authors' feature-major flatten), in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pose_prior.priors.gan import fused
from pose_prior.priors.gan.losses import discriminator_loss
from pose_prior.priors.gan.networks import PoseDiscriminator

J, C, H = 5, 4, 7


def _disc(num_layers: int = 3) -> PoseDiscriminator:
    torch.manual_seed(0)
    d = PoseDiscriminator(num_joints=J, joint_features=C, hidden=H, num_layers=num_layers, slope=0.2).double()
    with torch.no_grad():  # larger biases so that every LeakyReLU sees both signs
        for p in d.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return d


def _poses(n: int, requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, J, 3, 3, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


def _plain(d: PoseDiscriminator, rotmats: torch.Tensor) -> torch.Tensor:
    """The network as written without fusion: logits (N, J + 1)."""
    n, s = rotmats.shape[0], d.slope
    x = rotmats.reshape(n, J, 9)
    h = F.leaky_relu(F.linear(x, d.joint_fc1.weight, d.joint_fc1.bias), s)
    h = F.leaky_relu(F.linear(h, d.joint_fc2.weight, d.joint_fc2.bias), s)  # (N, J, C)
    heads = torch.stack([h[:, j] @ d.head_weight[j] + d.head_bias[j] for j in range(J)], 1)  # (N, J)
    flat = h.transpose(1, 2).reshape(n, C * J)  # feature-major, as the authors' comm.view(N, -1)
    whole = d.pose_mlp(flat)  # (N, 1)
    return torch.cat([heads, whole], 1)


def _grads(outputs: torch.Tensor, inputs: list[torch.Tensor], weights: torch.Tensor) -> list[torch.Tensor]:
    return list(torch.autograd.grad((outputs * weights).sum(), inputs))


@pytest.mark.parametrize("chunk", [3, 512])  # several blocks (the last partial) and one
def test_forward_and_gradients_equal_autograd_on_the_plain_network(monkeypatch, chunk: int) -> None:
    monkeypatch.setattr(fused, "CHUNK_POSES", chunk)
    d = _disc()
    x = _poses(7, requires_grad=True)
    params = list(d.parameters())
    w = torch.randn(7, J + 1, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours, plain = d(d.prepare(x)), _plain(d, x)  # the prepared input runs the hand-written trunk
    torch.testing.assert_close(ours, plain, rtol=1e-12, atol=1e-12)
    for a, b in zip(_grads(ours, [x, *params], w), _grads(plain, [x, *params], w)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_trunk_passes_gradcheck() -> None:
    d = _disc()
    x = _poses(4, requires_grad=True)

    def f(rot, *p):
        return fused.trunk(fused.PreparedPoses(rot, J, C), d.slope, *p)

    assert torch.autograd.gradcheck(f, (x, *d._trunk_params()), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("num_layers", [1, 2, 3])
def test_step_loss_equals_the_loss_and_gradients_of_autograd(monkeypatch, num_layers: int) -> None:
    monkeypatch.setattr(fused, "CHUNK_POSES", 3)
    d = _disc(num_layers)
    x, real = _poses(7), 4  # 4 real, 3 fake
    params = list(d.parameters())
    loss, logits, parts = d.step_loss(d.prepare(x), real, joint_weight=21.0, pose_weight=1.5)
    out = _plain(d, x)
    ref, ref_parts = discriminator_loss(out[:real], out[real:], 21.0, 1.5)
    torch.testing.assert_close(loss, ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(logits, out.detach(), rtol=1e-12, atol=1e-12)
    for k in ref_parts:
        torch.testing.assert_close(parts[k], ref_parts[k], rtol=1e-12, atol=0)
    for a, b in zip(torch.autograd.grad(loss * 3.0, params), torch.autograd.grad(ref * 3.0, params)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-13)


def test_prepared_input_is_reused_and_guarded() -> None:
    d = _disc()
    x = _poses(6)
    prep = d.prepare(x)
    for _ in range(2):  # same prepared input, successive forward/backward pairs: as a fresh input
        d.zero_grad()
        d(prep).square().sum().backward()
        ours = [p.grad.clone() for p in d.parameters()]
        d.zero_grad()
        _plain(d, x).square().sum().backward()
        for a, p in zip(ours, d.parameters()):
            torch.testing.assert_close(a, p.grad, rtol=1e-10, atol=1e-13)
    first = d(prep).sum()
    d(prep).sum()  # overwrites the buffers the first forward's backward needs
    with pytest.raises(RuntimeError, match="before this backward"):
        first.backward()
    with pytest.raises(ValueError, match="detach"):
        d.step_loss(d.prepare(_poses(6, requires_grad=True)), 3, 1.0, 1.0)
    with pytest.raises(ValueError, match="must be"):
        d.prepare(torch.zeros(2, J, 9))


def test_buffers_taken_over_by_a_new_input() -> None:
    d = _disc()
    x1, x2 = _poses(6), _poses(6) * 0.5
    p1 = d.prepare(x1)
    pending = d(p1).sum()
    p2 = d.prepare(x2, reuse=p1)  # same size: takes p1's buffers (and overwrites its input)
    assert p2.buffers is p1.buffers
    with pytest.raises(RuntimeError, match="before this backward"):
        pending.backward()
    d.zero_grad()
    d(p2).square().sum().backward()
    ours = [p.grad.clone() for p in d.parameters()]
    d.zero_grad()
    _plain(d, x2).square().sum().backward()
    for a, p in zip(ours, d.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-10, atol=1e-13)
    assert d.prepare(_poses(5), reuse=p2).buffers is not p2.buffers  # another size: its own buffers
