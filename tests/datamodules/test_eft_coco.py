"""EFT JSON reader, crop geometry, augmentation consistency, and the synthetic EFT-format image set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.spatial.transform import Rotation

from datamodules.eft_coco import (
    AugmentSettings,
    EftFileError,
    EftImageDataset,
    crop_image,
    crop_matrix,
    eft_keypoints_px,
    flip_pose,
    keypoints_to_crop,
    read_eft_json,
)
from datamodules.eft_demo import standin_h36m_regressor, write_demo_images
from datamodules.h36m.reader import read_h36m_p2
from pose_prior.body_model.h36m_regressor import load_h36m_regressor
from pose_prior.body_model.keypoints import H36M_TO_J14, J24_TO_J14, keypoint_map_for_body_model


def _fits(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    aa = rng.normal(0, 0.3, size=(n, 24, 3))
    aa[:, 0] = 0.0
    pose = Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(n, 24, 3, 3)
    pose[:, 0] = np.diag([1.0, -1.0, -1.0]) @ Rotation.from_rotvec(rng.normal(0, 0.3, (n, 3))).as_matrix()
    return {"pose": pose, "betas": rng.normal(0, 1, (n, 10)), "cam": np.c_[rng.uniform(0.7, 1.0, n), rng.normal(0, 0.1, (n, 2))],
            "center": rng.uniform(200, 400, (n, 2)), "scale": rng.uniform(1.0, 3.0, n)}


def _item_keypoints_3d(body_model, kmap, item: dict) -> np.ndarray:
    """(49, 3) model keypoints of one dataset item's pose and shape (float64)."""
    with torch.no_grad():
        out = body_model(item["body_pose"].double()[None], betas=item["betas"].double()[None],
                         global_orient=item["global_orient"].double()[None])
        return kmap(out.vertices, out.joints)[0].numpy()


def _fabricated_json(path: Path, body_model, n: int = 3) -> dict[str, np.ndarray]:
    """An EFT-style JSON written by hand; keypoints via EFT's route: crop px (x_n+1)*112 -> original image."""
    f = _fits(n)
    kmap = keypoint_map_for_body_model(body_model, "spin49")
    with torch.no_grad():
        pt = torch.as_tensor(f["pose"])
        out = body_model(pt[:, 1:], betas=torch.as_tensor(f["betas"]), global_orient=pt[:, 0])
        J = kmap(out.vertices, out.joints).numpy()  # (n, 49, 3)
    items = []
    for i in range(n):
        s, tx, ty = f["cam"][i]
        crop_px = (s * J[i, :, :2] + [tx, ty] + 1.0) * 112.0  # EFT convert_smpl_to_bbox
        side = 200.0 * f["scale"][i]
        orig = f["center"][i] + (crop_px - 112.0) * side / 224.0  # EFT convert_bbox_to_oriIm
        kp = np.c_[orig, kmap.available.numpy().astype(float)]
        items.append({"parm_pose": f["pose"][i].tolist(), "parm_shape": f["betas"][i].tolist(),
                      "parm_cam": f["cam"][i].tolist(), "bbox_scale": float(f["scale"][i]),
                      "bbox_center": f["center"][i].tolist(), "gt_keypoint_2d": kp.tolist(),
                      "joint_validity_openpose18": [1] * 18, "smpltype": "smpl", "annotId": 100 + i,
                      "imageName": f"COCO_train2014_{i:012d}.jpg"})
    path.write_text(json.dumps({"ver": 0.1, "data": items, "meta": {"dbname": "coco", "rawname": "x"}}))
    f["keypoints"] = np.stack([np.asarray(it["gt_keypoint_2d"]) for it in items])
    return f


def test_reader_reproduces_stored_keypoints_within_a_pixel(tmp_path: Path, light_body_model_f64) -> None:
    stored = _fabricated_json(tmp_path / "eft.json", light_body_model_f64)
    data = read_eft_json(tmp_path / "eft.json")
    assert data.annot_ids == [100, 101, 102] and data.image_names[1] == "COCO_train2014_000000000001.jpg"
    assert np.allclose(data.pose, stored["pose"]) and data.keypoints.shape == (3, 49, 3)
    kmap = keypoint_map_for_body_model(light_body_model_f64, "spin49")
    kp = eft_keypoints_px(light_body_model_f64, kmap, data.pose, data.betas, data.cam, data.center, data.scale)
    valid = data.keypoints[..., 2] > 0
    err = np.linalg.norm(kp - data.keypoints[..., :2], axis=-1)[valid]
    assert valid.sum() >= 3 * 40 and err.max() < 1.0


def test_reader_names_file_index_and_key(tmp_path: Path, light_body_model_f64) -> None:
    _fabricated_json(tmp_path / "eft.json", light_body_model_f64)
    top = json.loads((tmp_path / "eft.json").read_text())
    del top["data"][1]["parm_cam"]
    (tmp_path / "bad.json").write_text(json.dumps(top))
    with pytest.raises(EftFileError, match=r"bad.json: data\[1\] lacks key\(s\) \['parm_cam'\]"):
        read_eft_json(tmp_path / "bad.json")
    top["data"][1]["parm_cam"] = [1.0, 2.0]
    (tmp_path / "bad.json").write_text(json.dumps(top))
    with pytest.raises(EftFileError, match=r"data\[1\]\['parm_cam'\] must have shape \(3,\)"):
        read_eft_json(tmp_path / "bad.json")


@pytest.mark.parametrize("rot,flip", [(0.0, False), (25.0, False), (-40.0, True)])
def test_crop_moves_pixels_where_keypoints_go(rot: float, flip: bool) -> None:
    """A bright dot in the image lands (within a pixel) where the keypoint transform puts it."""
    img = np.zeros((300, 400, 3), dtype=np.uint8)
    x, y = 231, 140
    img[y - 1: y + 2, x - 1: x + 2] = 255  # 3x3 dot centred on pixel (x, y): continuous centre (x+.5, y+.5)
    M = crop_matrix((210.0, 160.0), 1.2, 224, rot, flip)
    crop = crop_image(Image.fromarray(img), M, 224).astype(float)[..., 0]
    yy, xx = np.mgrid[0:224, 0:224]
    w = crop / crop.sum()
    found = np.array([(w * (xx + 0.5)).sum(), (w * (yy + 0.5)).sum()])  # intensity centroid, continuous coords
    kp = keypoints_to_crop(np.array([[x + 0.5, y + 0.5, 1.0]]), M, 224)
    expected = (kp[0, :2] + 1.0) * 112.0
    assert np.linalg.norm(found - expected) < 1.0


def test_flip_pose_is_an_involution_and_mirrors_a_symmetric_pose() -> None:
    f = _fits(2)["pose"]
    assert np.allclose(flip_pose(flip_pose(f[0])), f[0])
    aa = np.zeros((24, 3))
    aa[16] = [0.1, 0.2, 0.3]  # left shoulder
    flipped = Rotation.from_matrix(flip_pose(Rotation.from_rotvec(aa).as_matrix())).as_rotvec()
    assert np.allclose(flipped[17], [0.1, -0.2, -0.3]) and np.allclose(np.delete(flipped, 17, 0), 0)  # SPIN flip_pose


def test_dataset_keypoints_are_the_weak_projection_of_the_parameters(tmp_path: Path, light_body_model_f64) -> None:
    f = _fabricated_json(tmp_path / "eft.json", light_body_model_f64, n=2)
    for i in range(2):
        Image.new("RGB", (640, 480), (90, 90, 90)).save(tmp_path / f"COCO_train2014_{i:012d}.jpg")
    ds = EftImageDataset(tmp_path / "eft.json", tmp_path)
    kmap = keypoint_map_for_body_model(light_body_model_f64, "spin49")
    for i in range(2):
        item = ds[i]
        assert item["img"].shape == (3, 224, 224) and item["body_pose"].shape == (23, 3, 3)
        J = _item_keypoints_3d(light_body_model_f64, kmap, item)
        s, tx, ty = f["cam"][i]
        xn = s * J[:, :2] + [tx, ty]
        valid = item["keypoints"][:, 2].numpy() > 0
        assert np.abs(xn - item["keypoints"][:, :2].numpy())[valid].max() < 1.0 / 112  # < 1 crop pixel


def test_augmented_sample_stays_consistent(tmp_path: Path, light_body_model_f64) -> None:
    """With rotation and flip, keypoints of the augmented pose (mirrored model) match the augmented 2D keypoints."""
    f = _fabricated_json(tmp_path / "eft.json", light_body_model_f64, n=1)
    Image.new("RGB", (640, 480)).save(tmp_path / "COCO_train2014_000000000000.jpg")
    aug = AugmentSettings(flip_prob=1.0, rot_prob=1.0, scale_factor=0.0, noise_factor=0.0)
    item = EftImageDataset(tmp_path / "eft.json", tmp_path, aug)[0]
    kmap = keypoint_map_for_body_model(light_body_model_f64, "spin49")
    J = _item_keypoints_3d(light_body_model_f64, kmap, item)
    # a rotation + mirror of the image moves the weak-perspective translation the same way: fit it (and s)
    kp = item["keypoints"].numpy()
    v = kp[:, 2] > 0
    A = np.c_[J[v, :2].reshape(-1), np.tile(np.eye(2), (v.sum(), 1))]
    sol, *_ = np.linalg.lstsq(A, kp[v, :2].reshape(-1), rcond=None)
    resid = (A @ sol - kp[v, :2].reshape(-1)).reshape(-1, 2)
    assert abs(sol[0] - f["cam"][0, 0]) < 0.02
    # the open model is only nearly left/right symmetric: a few crop pixels
    assert np.linalg.norm(resid, axis=1).max() * 112 < 4.0


def test_demo_images_round_trip(tmp_path: Path, light_body_model_f64) -> None:
    root = write_demo_images(tmp_path / "demo", "open-light", num_train=2, num_val=2, image_size=128, seed=1)
    assert (root / "images" / "train_0001.png").is_file() and (root / "demo_manifest.json").is_file()
    data = read_eft_json(root / "val.json")
    kmap = keypoint_map_for_body_model(light_body_model_f64, "spin49")
    kp = eft_keypoints_px(light_body_model_f64, kmap, data.pose, data.betas, data.cam, data.center, data.scale)
    valid = data.keypoints[..., 2] > 0
    assert valid.sum() > 40 and np.abs(kp - data.keypoints[..., :2])[valid].max() < 1e-6
    # the P2-format file: S = stand-in regressor on the GT mesh, root-centred, in the reader's layout
    p2 = read_h36m_p2(root / "h36m_p2_synthetic.npz")
    reg = load_h36m_regressor(root / "J_regressor_standin.npy", light_body_model_f64.num_vertices)
    assert np.allclose(reg, standin_h36m_regressor(light_body_model_f64))
    with torch.no_grad():
        pt = torch.as_tensor(data.pose)
        out = light_body_model_f64(pt[:, 1:], betas=torch.as_tensor(data.betas), global_orient=pt[:, 0])
    j17 = np.einsum("jv,bvc->bjc", reg, out.vertices.numpy())
    assert np.allclose(p2.S[:, list(J24_TO_J14), :3], (j17 - j17[:, :1])[:, list(H36M_TO_J14)], atol=1e-9)
    assert list(p2.imgname) == ["images/val_0000.png", "images/val_0001.png"]
    # the body is drawn where its keypoints are: the pixel at the pelvis differs from the image corner
    img = np.asarray(Image.open(root / "images" / "val_0000.png")).astype(int)
    px, py = np.round(data.keypoints[0, 8, :2]).astype(int)  # OP MidHip
    assert np.abs(img[py, px] - img[2, 2]).sum() > 30
