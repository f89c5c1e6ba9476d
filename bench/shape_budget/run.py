"""GAN-beta collapse study (docs/shape_priors.md): the authors' iteration in a plain loop, one thread, one
setting changed per variant; at every `--every` iterations prints the spread and mean norm of 2,000 generated
betas and their recall / precision (Eq. 5, zero pose, open model) against the open shape set's test split.

A study, not a ratio benchmark (`make bench` does not run it):
    .venv/bin/python bench/shape_budget/run.py --iters 3000 --disc_hidden 10,5     # HMR's shape discriminator
    .venv/bin/python bench/shape_budget/run.py --iters 2500 --disc_hidden 64,64    # the embedded default's
"""
import argparse
import json
import time

import torch

from datamodules.shapes.datamodule import ShapeDataModule
from pose_prior.body_model import load_body_model
from pose_prior.evaluation.shape_coverage import evaluate_shape_coverage
from pose_prior.priors.gan.training import make_optimizers
from pose_prior.priors.latent import make_latent
from pose_prior.priors.shape.networks import ShapeDiscriminator, ShapeGenerator
from pose_prior.priors.shape.training import flat_authors_step

p = argparse.ArgumentParser()
p.add_argument("--iters", type=int, default=3000)
p.add_argument("--batch", type=int, default=256)
p.add_argument("--lr", type=float, default=2e-4)
p.add_argument("--d_lr", type=float, default=None)
p.add_argument("--d_steps", type=int, default=10)
p.add_argument("--latent_dim", type=int, default=32)
p.add_argument("--disc_hidden", type=str, default="10,5")
p.add_argument("--slope", type=float, default=0.2)
p.add_argument("--g_slope", type=float, default=None)
p.add_argument("--every", type=int, default=1000)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--body", default="open")
p.add_argument("--n_gen", type=int, default=2000)
p.add_argument("--tag", default="")
a = p.parse_args()
torch.set_num_threads(1)

torch.manual_seed(a.seed)
dm = ShapeDataModule(batch_size=a.batch)
train, test = dm.betas("train"), dm.betas("test")
bm = load_body_model(a.body)
gen = ShapeGenerator(latent_dim=a.latent_dim, slope=a.slope if a.g_slope is None else a.g_slope)
disc = ShapeDiscriminator(hidden=tuple(int(h) for h in a.disc_hidden.split(",")), slope=a.slope)
latent = make_latent("S", a.latent_dim)
g_opt, d_opt = make_optimizers(gen, disc, g_lr=a.lr, d_lr=a.d_lr or a.lr, betas=(0.5, 0.999))
groups = [("shape", 1, 1.0)]
g = torch.Generator().manual_seed(a.seed)


def evaluate(it, secs):
    gen.eval()
    with torch.no_grad():
        z = latent.sample(a.n_gen, generator=torch.Generator().manual_seed(123))
        b = gen(z)
    gen.train()
    cov = evaluate_shape_coverage(b, test, bm).summary()
    out = {"tag": a.tag, "iter": it, "secs": round(secs, 1), "recall": round(cov["recall"]["mean_mm"], 2),
           "precision": round(cov["precision"]["mean_mm"], 2), "gen_std": round(float(b.std(0).mean()), 3),
           "gen_mean_norm": round(float(b.mean(0).norm()), 3)}
    print(json.dumps(out), flush=True)


t0 = time.process_time()
for it in range(1, a.iters + 1):
    idx = torch.randint(0, train.shape[0], (a.batch,), generator=g)
    flat_authors_step(gen, disc, g_opt, d_opt, train[idx], latent, a.d_steps, groups)
    if it % a.every == 0:
        secs = time.process_time() - t0
        evaluate(it, secs)
