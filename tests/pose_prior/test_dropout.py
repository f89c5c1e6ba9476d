import math

import pytest
import torch

from pose_prior.priors.gan.dropout import FastDropout, keep_mask


def test_keep_mask_is_bernoulli_with_the_right_rate() -> None:
    torch.manual_seed(0)
    n, p = 2_000_000, 0.1
    kept = keep_mask(torch.Size([n]), p).double().mean().item()
    sigma = math.sqrt(p * (1 - p) / n)  # binomial standard error of the kept fraction
    assert abs(kept - (1 - p)) < 5 * sigma
    # entries are independent: neighbouring pairs (the two halves of one 64-bit word) are uncorrelated
    m = keep_mask(torch.Size([n]), 0.5).double()
    both = (m[0::2] * m[1::2]).mean().item()
    assert abs(both - 0.25) < 5 * math.sqrt(0.25 * 0.75 / (n // 2))


def test_fast_dropout_scales_kept_entries_and_passes_gradients_through_the_mask() -> None:
    torch.manual_seed(1)
    drop = FastDropout(0.25)
    x = torch.randn(300, 40, dtype=torch.float64, requires_grad=True)
    y = drop(x)
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    (grad,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(grad, kept.double() / 0.75)
    assert 0.70 < kept.double().mean().item() < 0.80


def test_fast_dropout_follows_torch_seed_and_eval_mode() -> None:
    drop, x = FastDropout(0.1), torch.ones(64, 512)
    torch.manual_seed(7)
    a = drop(x)
    torch.manual_seed(7)
    b = drop(x)
    assert torch.equal(a, b)
    assert not torch.equal(drop(x), drop(x))  # a fresh mask per call
    drop.eval()
    assert drop(x) is x
    assert torch.equal(FastDropout(1.0)(x), torch.zeros_like(x))
    with pytest.raises(ValueError, match="probability"):
        FastDropout(1.5)
