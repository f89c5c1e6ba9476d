"""H3.6M Protocol-2 frames as image crops (for regression from images): SPIN's P2 npz + its image folder.

Only `imgname`, `center`, `scale`, `S` are needed (no 2D keypoints). Crops as SPIN's evaluation: square of
side 200*scale px at `center` -> 224, ImageNet normalisation, no augmentation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch
from PIL import Image
from torch.utils.data import Dataset

from datamodules.eft_coco import crop_image, crop_matrix, normalize_image
from datamodules.h36m.reader import read_p2_arrays
from pose_prior.hmr import IMG_RES


class H36MImageDataset(Dataset):
    """Frames of a P2 file: `img` (3, 224, 224), `S` (24, 4) float64 metres, `imgname`, `index`."""

    def __init__(self, p2_file: str | os.PathLike, image_dir: str | os.PathLike, max_frames: Optional[int] = None,
                 res: int = IMG_RES) -> None:
        path = Path(p2_file)
        arrays = read_p2_arrays(path)
        self.imgname, self.center, self.scale, self.S = arrays["imgname"], arrays["center"], arrays["scale"], arrays["S"]
        n = len(self.imgname)
        self.image_dir = Path(image_dir)
        self.res = int(res)
        self.length = n if max_frames is None else min(n, int(max_frames))
        self.path = path

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        img_path = self.image_dir / str(self.imgname[i])
        if not img_path.is_file():
            raise FileNotFoundError(f"{img_path}: image of {self.path} frame {i} not found (data.image_dir={self.image_dir})")
        crop = crop_image(Image.open(img_path), crop_matrix(self.center[i], self.scale[i], self.res), self.res)
        return {"img": normalize_image(crop), "S": torch.as_tensor(self.S[i], dtype=torch.float64),
                "imgname": str(self.imgname[i]), "index": i, "key": f"{self.path}:{i}"}

