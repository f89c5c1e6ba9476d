"""Fitting a body to observations through a prior: 2D keypoints (SMPLify style) on a batched per-sample L-BFGS."""

from pose_prior.fitting.keypoint_fit import FitResult, FitSettings, fit_keypoints, fitted_vertices
from pose_prior.fitting.lbfgs import batched_lbfgs

__all__ = ["FitResult", "FitSettings", "batched_lbfgs", "fit_keypoints", "fitted_vertices"]
