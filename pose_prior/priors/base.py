"""The one prior interface every prior kind implements, and the shared base of the latent priors.

Every consumer (keypoint fitting, inversion, coverage, interpolation, image regression, `compare`) talks
to a prior only through `Prior`; none branches on the kind of prior. A new kind subclasses `Prior` (or
`LatentPrior` when it decodes a continuous latent space), implements the abstract members, and
registers a file loader with `pose_prior.priors.register_prior_kind`.

Conventions: a latent `z` is (n, latent_dim); `decode` yields what `Prior.yields` names (today
"body_pose": the (n, 63) SMPL-H body pose in axis-angle); priors are frozen (parameters never require
grad, always in eval mode) while `z` stays differentiable, so fitting and regression optimise the latent.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from pose_prior.body_model.posing import posed_vertices
from pose_prior.priors.latent import LatentSpace, NormalLatent
from pose_prior.rotations import body_pose_to_matrices, matrices_to_body_pose

if TYPE_CHECKING:  # pragma: no cover
    from pose_prior.fitting.keypoint_fit import FitSettings

NUM_BODY_JOINTS = 21


class Prior(nn.Module):
    """A frozen pose prior: a distribution over latents `z` and a decoder from `z` to body poses."""

    kind: ClassVar[str] = ""  # the prior file's `kind`
    yields: ClassVar[str] = "body_pose"  # what `decode` returns: (n, 63) axis-angle body pose
    latent_is_pose: ClassVar[bool] = False  # z IS the 63-d pose (GMM, none): no latent to regress into

    def __init__(self, provenance: dict | None = None, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.provenance = dict(provenance or {})
        # Carries the working device and dtype for priors with no parameters of their own (GMM, none).
        self.register_buffer("_anchor", torch.zeros((), dtype=dtype), persistent=False)
        super().train(False)

    def train(self, mode: bool = True) -> Prior:
        """Stays in eval mode (no dropout, frozen batch norm) whatever `mode` is: the prior is frozen."""
        return super().train(False)

    def freeze(self) -> Prior:
        for p in self.parameters():
            p.requires_grad_(False)
        return self

    # --- what it is ------------------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        return self._anchor.dtype

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @property
    def latent_dim(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def latent_type(self) -> str:
        """A short name of the latent space for reports: "S", "U", "N", or "pose"."""
        return "pose"

    @property
    def constrained(self) -> bool:
        """True where `project` is not the identity (the latent must be projected after each step)."""
        return False

    def describe(self) -> dict[str, Any]:
        """What a results file records about the prior."""
        return {"kind": self.kind, "latent": self.latent_type, "latent_dim": self.latent_dim}

    # --- the distribution and the decoder --------------------------------------------------------
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latents (n, latent_dim) on the prior's device and dtype."""
        raise NotImplementedError(f"{type(self).__name__} has no distribution to sample from")

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, 63) axis-angle body pose; differentiable in z."""
        return matrices_to_body_pose(self.decode_matrices(z))

    def decode_matrices(self, z: torch.Tensor) -> torch.Tensor:
        """(n, latent_dim) -> (n, 21, 3, 3) body rotation matrices; differentiable in z."""
        return body_pose_to_matrices(self.decode(z))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decode(z)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """(..., latent_dim) onto the latent support (identity where the support is all of R^d)."""
        return z

    def interpolate(self, z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
        """(dim,) -> (steps, dim) or (B, dim) -> (B, steps, dim), both endpoints included."""
        raise NotImplementedError

    def vertices(self, z: torch.Tensor, body_model: nn.Module) -> torch.Tensor:
        """(n, latent_dim) -> (n, V, 3) vertices of the decoded bodies (neutral shape, zero orientation)."""
        return posed_vertices(body_model, self.decode_matrices(z), lambda: self.decode(z))

    def invert(self, body_pose: torch.Tensor, body_model: nn.Module, return_distance: bool = False,
               **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Latents (B, latent_dim) whose decoded meshes best match `body_pose` (B, 63) under Eq. 5;
        with `return_distance` also the Eq. 5 distances (B,) in model units."""
        raise NotImplementedError

    # --- fitting ---------------------------------------------------------------------------------
    def fit_starts(self, count: int, candidates: int, seed: int) -> torch.Tensor:
        """(count, latent_dim) starting latents of a fit, the same for every sample (prior's dtype)."""
        raise NotImplementedError

    def fit_penalty(self, z: torch.Tensor, settings: FitSettings) -> torch.Tensor | None:
        """(B, latent_dim) -> (B,) the prior term added to a fit's data term, or None for no term."""
        return None

    # --- files -----------------------------------------------------------------------------------
    def file_entries(self) -> dict[str, Any]:
        """The kind's own entries of its prior file (tensors and plain values), read back by its loader."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved as a prior file")

    def save(self, path: str | os.PathLike, provenance: dict | None = None,
             extra_entries: dict[str, Any] | None = None) -> None:
        """Write this prior as a prior file (`pose_prior.priors.file_format`), atomically; `extra_entries`
        (e.g. a GAN's discriminator) are stored beside the kind's own and ignored by its loader."""
        from pose_prior.priors.file_format import write_prior_file

        write_prior_file(path, self.kind, self.latent_type, self.latent_dim,
                         {**dict(extra_entries or {}), **self.file_entries()}, self.provenance, provenance)


class LatentPrior(Prior):
    """A decoder network over a continuous latent space (GAN-S/U/N, VPoser).

    Sampling, projection and interpolation are the latent space's; inversion is the shared latent
    optimisation of `pose_prior.priors.inversion`; a fit starts from the most neutral of seeded samples.
    """

    def __init__(self, latent: LatentSpace, provenance: dict | None = None) -> None:
        super().__init__(provenance)
        self.latent = latent

    def extra_repr(self) -> str:
        return f"latent={self.latent!r}"

    @property
    def dtype(self) -> torch.dtype:
        param = next(self.parameters(), None)
        return self._anchor.dtype if param is None else param.dtype

    @property
    def device(self) -> torch.device:
        param = next(self.parameters(), None)
        return self._anchor.device if param is None else param.device

    @property
    def latent_dim(self) -> int:
        return self.latent.dim

    @property
    def latent_type(self) -> str:
        return self.latent.name

    @property
    def constrained(self) -> bool:
        return self.latent.constrained

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.latent.sample(n, generator=generator, dtype=self.dtype).to(self.device)

    def decode_matrices(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return self.latent.project(z)

    def interpolate(self, z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
        """SLERP for S, linear for U and N (paper Eqs. 2-3)."""
        return self.latent.interpolate(z0, z1, steps)

    def invert(self, body_pose: torch.Tensor, body_model: nn.Module, return_distance: bool = False,
               **kwargs: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Seeded nearest starts, Adam on Eq. 5, then Levenberg-Marquardt (`invert_latent`)."""
        from pose_prior.priors.inversion import invert_latent

        return invert_latent(self, body_pose, body_model, return_distance=return_distance, **kwargs)

    def fit_starts(self, count: int, candidates: int, seed: int) -> torch.Tensor:
        """The latent space's mode (N, U: zero) if it has one, then the most neutral of `candidates`
        seeded samples (smallest decoded pose norm): deterministic, identical for every sample."""
        g = torch.Generator().manual_seed(seed)
        cand = self.sample(max(candidates, count), generator=g)
        with torch.no_grad():
            neutral = self.decode(cand).norm(dim=-1)  # (C,) distance of the decoded pose from the rest pose
        order = torch.argsort(neutral)
        mode = self.latent.mode(dtype=cand.dtype, device=cand.device)
        if mode is None:
            return cand[order[:count]]
        return torch.cat([mode[None], cand[order[: count - 1]]])

    def fit_penalty(self, z: torch.Tensor, settings: FitSettings) -> torch.Tensor | None:
        """latent_l2_weight^2 ||z||^2 when that weight is set; the paper fits with no prior term (0)."""
        if settings.latent_l2_weight > 0:
            return settings.latent_l2_weight**2 * z.square().sum(-1)
        return None


class GeneratorPrior(LatentPrior):
    """A latent prior whose decoder is one frozen generator network (GAN-S/U/N, the shape GANs); its file
    entry is `"generator": {"class", "kwargs", "state_dict"}`."""

    def __init__(self, generator: nn.Module, latent: LatentSpace, provenance: dict | None = None) -> None:
        if generator.latent_dim != latent.dim:
            raise ValueError(f"generator latent_dim {generator.latent_dim} != latent space dim {latent.dim}")
        super().__init__(latent, provenance)
        self.generator = generator
        self.freeze().train(False)

    def file_entries(self) -> dict[str, Any]:
        from pose_prior.priors.file_format import cpu_state_dict

        g = self.generator
        return {"generator": {"class": type(g).__name__, "kwargs": g.arch_kwargs(), "state_dict": cpu_state_dict(g)}}


class PosePrior(Prior):
    """Base of the priors whose latent is the body pose itself (the GMM, and "none")."""

    latent_is_pose = True
    num_joints = NUM_BODY_JOINTS

    @property
    def latent_dim(self) -> int:
        return 3 * NUM_BODY_JOINTS

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Identity: the latent is the (n, 63) axis-angle body pose."""
        return z

    def decode_matrices(self, z: torch.Tensor) -> torch.Tensor:
        return body_pose_to_matrices(z)

    def interpolate(self, z0: torch.Tensor, z1: torch.Tensor, steps: int) -> torch.Tensor:
        """Linear in axis-angle."""
        return NormalLatent(self.latent_dim).interpolate(z0, z1, steps)

    def invert(self, body_pose: torch.Tensor, body_model: nn.Module | None = None, return_distance: bool = False,
               **_: Any) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Identity: a pose is its own latent (exact, distance 0)."""
        z = body_pose.detach().clone().to(self._anchor)
        return (z, torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)) if return_distance else z
