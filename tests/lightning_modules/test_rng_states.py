import itertools

import torch

from lightning_modules.rng_states import seed_step_stream, stream_seed


def test_step_seeds_are_a_pure_function_of_seed_epoch_batch_and_rank() -> None:
    keys = list(itertools.product(range(2), range(3), range(4), range(8)))  # seed, epoch, batch, rank
    seeds = [stream_seed(*k) for k in keys]
    assert len(set(seeds)) == len(keys) and all(0 <= s < 2**63 for s in seeds)
    assert seeds == [stream_seed(*k) for k in keys]
    draws = []
    for rank in (0, 1, 0):
        torch.randn(5)  # whatever drew before does not matter
        seed_step_stream(3, 1, 7, rank)
        draws.append(torch.randn(4))
    assert torch.equal(draws[0], draws[2]) and not torch.equal(draws[0], draws[1])
