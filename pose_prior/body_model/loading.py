"""load_body_model: SMPL / SMPL-H from a licensed .pkl, a .npz, or the embedded open models, via smplx."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import smplx
import torch
from smplx.utils import Struct
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from pose_prior.body_model.model import NUM_JOINTS, BodyModel

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
OPEN_MODELS = {"open": "open", "open-light": "open_light"}  # name -> asset file stem
REQUIRED_KEYS = ("v_template", "f", "J_regressor", "weights", "kintree_table", "shapedirs")
HAND_KEYS = ("hands_componentsl", "hands_componentsr", "hands_meanl", "hands_meanr")
WHERE_TO_GET = (
    "SMPL is a licensed download from https://smpl.is.tue.mpg.de (e.g. "
    "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl or SMPL_NEUTRAL.pkl); SMPL-H from "
    "https://mano.is.tue.mpg.de (or AMASS's smplh/<gender>/model.npz). "
    'Or use the embedded open model: load_body_model("open") / "open-light".'
)
SMPL_VERTEX_COUNT = 6890


def open_model_paths(name: str, model_type: str) -> tuple[Path, Path]:
    """(npz, vertex-id json) of an embedded open model."""
    stem = f"{OPEN_MODELS[name]}_{model_type}"
    return ASSETS_DIR / f"{stem}.npz", ASSETS_DIR / f"{stem}_vertex_ids.json"


def _candidate_files(directory: Path, model_type: str, gender: str) -> list[Path]:
    g = gender.lower()
    short = {"neutral": "neutral", "male": "m", "female": "f"}.get(g, g)
    up = "SMPLH" if model_type == "smplh" else "SMPL"
    names = [f"{up}_{g.upper()}.pkl", f"{up}_{g.upper()}.npz", f"{up}_{g}.pkl", f"{up}_{g}.npz",
             f"{model_type}/{up}_{g.upper()}.pkl", f"{model_type}/{up}_{g.upper()}.npz",
             f"{g}/model.npz", f"{model_type}/{g}/model.npz"]
    if model_type == "smpl":
        names += [f"basicModel_{short}_lbs_10_207_0_v1.0.0.pkl", f"basicmodel_{short}_lbs_10_207_0_v1.0.0.pkl",
                  f"basicModel_{short}_lbs_10_207_0_v1.1.0.pkl", f"basicmodel_{short}_lbs_10_207_0_v1.1.0.pkl"]
    return [directory / n for n in names]


def resolve_model_file(path: str | os.PathLike, model_type: str, gender: str) -> Path:
    """A model file from a file path or a directory holding the usual SMPL/SMPL-H file names."""
    p = Path(path).expanduser()
    if p.is_dir():
        for candidate in _candidate_files(p, model_type, gender):
            if candidate.is_file():
                return candidate
        raise FileNotFoundError(
            f"No {model_type} ({gender}) model file in directory {p} (looked for "
            f"{', '.join(c.name for c in _candidate_files(p, model_type, gender)[:4])}, ...). {WHERE_TO_GET}"
        )
    if not p.is_file():
        raise FileNotFoundError(f"Body model file {p} does not exist. {WHERE_TO_GET}")
    return p


def _to_plain(value: Any, path: Path, key: str) -> np.ndarray:
    if scipy.sparse.issparse(value):
        return np.asarray(value.toarray())
    arr = np.asarray(value)
    if arr.dtype == object:
        raise ValueError(f"{path}: key {key!r} is an object array, expected numbers")
    return arr


def read_model_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The arrays of an SMPL / SMPL-H model file (.pkl, chumpy allowed, or .npz) as plain numpy."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            wanted = [k for k in (*REQUIRED_KEYS, "posedirs", *HAND_KEYS) if k in keys]
            raw = {k: data[k] for k in wanted}
    elif path.suffix == ".pkl":
        from pose_prior.safe_pickle import restricted_load_dict

        loaded = restricted_load_dict(path, "model arrays")
        raw = {k: v for k, v in loaded.items() if k in (*REQUIRED_KEYS, "posedirs", *HAND_KEYS)}
    else:
        raise ValueError(f"{path}: unknown body model format {path.suffix!r}, expected .pkl or .npz")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing}; an SMPL/SMPL-H model needs {list(REQUIRED_KEYS)}")
    return {k: _to_plain(v, path, k) for k, v in raw.items()}


def _vertex_ids_for(path: Path, num_vertices: int) -> dict[str, int]:
    """Landmark vertex ids: a json beside the file, SMPL's own ids on SMPL's mesh, else none."""
    for candidate in (path.with_name(path.stem + "_vertex_ids.json"), path.with_suffix(".vertex_ids.json")):
        if candidate.is_file():
            return {k: int(v) for k, v in json.loads(candidate.read_text()).items()}
    if num_vertices == SMPL_VERTEX_COUNT:
        return {k: int(v) for k, v in SMPLX_VERTEX_IDS["smplh"].items()}
    return {}


def _smplx_vertex_ids(vertex_ids: dict[str, int]) -> dict[str, int]:
    """A full key set for smplx's VertexJointSelector (whose vertex joints we never use)."""
    return {k: int(vertex_ids.get(k, 0)) for k in SMPLX_VERTEX_IDS["smplh"]}


def build_smplx_model(
    arrays: dict[str, np.ndarray], model_type: str, num_betas: int, dtype: torch.dtype,
    vertex_ids: dict[str, int] | None = None, keep_posedirs: bool = False,
) -> torch.nn.Module:
    """smplx.SMPLLayer / SMPLHLayer over plain arrays (the open model has no posedirs: none are made
    unless `keep_posedirs`, which builds full-size zeros so smplx's own forward runs)."""
    arrays = dict(arrays)
    num_vertices = arrays["v_template"].shape[0]
    num_joints = arrays["kintree_table"].shape[1]
    if "posedirs" not in arrays:
        rows = num_vertices if keep_posedirs else 0
        arrays["posedirs"] = np.zeros((rows, 3, 9 * (num_joints - 1)), dtype=np.float32)
    kwargs = dict(model_path="", data_struct=Struct(**arrays), num_betas=num_betas, dtype=dtype,
                  vertex_ids=_smplx_vertex_ids(vertex_ids or {}))
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for < 300 betas
        if model_type == "smpl":
            return smplx.SMPLLayer(**kwargs)
        for key in HAND_KEYS:  # smplx's SMPLH reads them even without hand PCA
            if key not in arrays:
                arrays[key] = np.eye(45, dtype=np.float32) if "components" in key else np.zeros(45, np.float32)
        kwargs["data_struct"] = Struct(**arrays)
        return smplx.SMPLHLayer(use_pca=False, flat_hand_mean=True, **kwargs)


def load_body_model(
    path_or_name: str | os.PathLike = "open",
    model_type: str = "smpl",
    gender: str = "neutral",
    num_betas: int = 10,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> BodyModel:
    """Load SMPL ("smpl") or SMPL-H ("smplh") from a .pkl/.npz file or directory, or the open models
    "open" (full resolution) / "open-light" (~1.2k vertices, for tests)."""
    if model_type not in NUM_JOINTS:
        raise ValueError(f"model_type must be 'smpl' or 'smplh', got {model_type!r}")
    if isinstance(path_or_name, str) and path_or_name in OPEN_MODELS:
        path, ids_path = open_model_paths(path_or_name, model_type)
        if not path.is_file():
            raise FileNotFoundError(f"Open body model asset {path} is missing (rebuild: tools/build_open_body_model.py)")
        name = f"{path_or_name}-{model_type}"
    else:
        path = resolve_model_file(path_or_name, model_type, gender)
        ids_path = None
        name = str(path)
    arrays = read_model_arrays(path)
    num_joints = arrays["kintree_table"].shape[1]
    if num_joints != NUM_JOINTS[model_type]:
        kind = {24: "an SMPL", 52: "an SMPL-H", 55: "an SMPL-X"}.get(num_joints, f"a {num_joints}-joint")
        raise ValueError(
            f"{path}: kintree_table has {num_joints} joints ({kind} file); model_type {model_type!r} "
            f"needs {NUM_JOINTS[model_type]}: pass model_type={'smplh' if num_joints == 52 else 'smpl'!r} "
            "or the matching file"
        )
    num_vertices = arrays["v_template"].shape[0]
    if ids_path is not None:
        vertex_ids = {k: int(v) for k, v in json.loads(ids_path.read_text()).items()}
    else:
        vertex_ids = _vertex_ids_for(path, num_vertices)
    layer = build_smplx_model(arrays, model_type, num_betas, dtype, vertex_ids)
    model = BodyModel(
        model_type=model_type,
        v_template=layer.v_template,
        shapedirs=layer.shapedirs,
        posedirs=layer.posedirs,
        J_regressor=layer.J_regressor,
        parents=layer.parents,
        lbs_weights=layer.lbs_weights,
        faces=layer.faces_tensor,
        vertex_ids=vertex_ids,
        name=name,
    )
    return model.to(device) if device is not None else model
