"""Shape priors of the paper's supplement D: GAN-beta (shape only), GAN-theta-beta (pose and shape from one
latent) and the disentangled pair (GAN-S + GAN-beta). Modules: `networks` (generators, HMR's shape
discriminator, the 24-output discriminator), `losses` (LSGAN over column groups, the authors' scale),
`settings`, `training` (the authors' iteration over flat samples), `prior` (file kinds "gan_beta",
"gan_theta_beta"), `pair` (the disentangled prior).
"""

from pose_prior.priors.shape.pair import PoseShapePair
from pose_prior.priors.shape.prior import GanBetaPrior, GanThetaBetaPrior

__all__ = ["GanBetaPrior", "GanThetaBetaPrior", "PoseShapePair"]
