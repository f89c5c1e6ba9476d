"""KeypointFittingModule under a Lightning Trainer: per-frame results in memory, merged by index, errors as SPIN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from datamodules.h36m.reader import H36MEvalDataset, read_h36m_p2
from datamodules.h36m.synthetic import synthesize_h36m, write_synthetic_h36m
from lightning_modules.keypoint_fitting import KeypointFittingModule, merge_fits
from pose_prior.body_model.h36m_regressor import h36m_regressor_for
from pose_prior.evaluation.metrics3d import h36m_p2_errors
from pose_prior.fitting.keypoint_fit import FitSettings, fit_keypoints, to_crop_pixels


def synthetic_file(tmp_path: Path, body_model, n: int = 6) -> Path:
    g = torch.Generator().manual_seed(0)
    poses = (torch.randn(n, 63, generator=g, dtype=torch.float64) * 0.15).numpy()
    reg = h36m_regressor_for("open-light", None, body_model.num_vertices)
    return write_synthetic_h36m(tmp_path / "p2.npz", synthesize_h36m(body_model, poses, reg, seed=1))


def test_synthetic_file_is_consistent_with_its_ground_truth(tmp_path: Path, light_body_model_f64) -> None:
    path = synthetic_file(tmp_path, light_body_model_f64)
    data = read_h36m_p2(path)
    arrays = np.load(path)
    assert data.layout == "spin24" and data.S.shape == (6, 24, 4)
    # GT bodies through the P2 evaluation give zero error
    bm = light_body_model_f64
    verts = bm(torch.as_tensor(arrays["gt_body_pose"]), global_orient=torch.as_tensor(arrays["gt_global_orient"])).vertices
    mpjpe, pmpjpe = h36m_p2_errors(verts, torch.as_tensor(data.S), h36m_regressor_for("open-light", None, bm.num_vertices))
    assert mpjpe.max() < 1e-9 and pmpjpe.max() < 1e-9
    # the crop transform is the identity for this file and the bodies lie inside the 224 crop
    kp = torch.as_tensor(data.keypoints)
    crop = to_crop_pixels(kp, torch.as_tensor(data.center), torch.as_tensor(data.scale))
    assert torch.allclose(crop, kp)
    vis = data.keypoints[..., 2] > 0
    for frame, v in zip(data.keypoints, vis):
        xy = frame[v, :2]
        assert 100 < xy[:, 1].max() - xy[:, 1].min() < 260  # a ~1.7 m body at SPIN's depth
        assert np.abs(xy.mean(0) - 112).max() < 40


def test_module_keeps_per_frame_results_equal_to_direct_fitting(tmp_path: Path, light_body_model) -> None:
    bm = light_body_model
    path = synthetic_file(tmp_path, load_f64())
    data = read_h36m_p2(path)
    reg = h36m_regressor_for("open-light", None, bm.num_vertices)
    settings = FitSettings(body_iters=5, camera_iters=3)
    module = KeypointFittingModule(None, bm, reg, layout="spin24", settings=settings)
    trainer = pl.Trainer(inference_mode=False, logger=False, enable_progress_bar=False, accelerator="cpu", devices=1,
                         default_root_dir=tmp_path)
    trainer.test(module, DataLoader(H36MEvalDataset(data), batch_size=4), verbose=False)
    merged = module.fits
    assert sorted(tmp_path.rglob("*.npz")) == [path]  # the module writes nothing
    assert merged["index"].tolist() == list(range(6))
    # the same frames fitted directly give the same poses and errors
    kp = torch.as_tensor(data.keypoints, dtype=torch.float32)
    direct = fit_keypoints(None, bm, kp[4:], "spin24", (112.0, 112.0), settings)
    assert np.allclose(merged["body_pose"][4:], direct.body_pose.numpy(), atol=1e-3)
    verts = bm(direct.body_pose, global_orient=direct.global_orient).vertices
    mpjpe, pmpjpe = h36m_p2_errors(verts, torch.as_tensor(data.S[4:]), reg)
    assert np.allclose(merged["p_mpjpe"][4:], pmpjpe.numpy(), atol=0.01)  # mm; float32 fits
    assert np.allclose(merged["mpjpe"][4:], mpjpe.numpy(), atol=0.01)
    assert {"global_orient", "transl", "iterations", "loss_total"} <= set(merged)


def test_merge_drops_frames_duplicated_by_the_distributed_sampler() -> None:
    parts = [{"index": np.array(idx), "p_mpjpe": np.array(idx) * 1.0 + rank}
             for rank, idx in ((0, [0, 2, 4]), (1, [1, 3, 0]))]  # rank 1 pads with frame 0 again
    merged = merge_fits(parts, 5)
    assert merged["index"].tolist() == [0, 1, 2, 3, 4]
    assert merged["p_mpjpe"].tolist() == [0.0, 2.0, 2.0, 4.0, 4.0]
    with pytest.raises(ValueError, match="expected 6"):
        merge_fits(parts, 6)


def load_f64():
    from pose_prior.body_model import load_body_model

    return load_body_model("open-light", "smpl", dtype=torch.float64)
