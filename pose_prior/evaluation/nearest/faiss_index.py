"""FAISS flat L2 indexes on GPU when faiss has GPUs, CPU otherwise; built lazily, never pickled."""

from __future__ import annotations

import numpy as np
import torch


def import_faiss():
    """The faiss module, imported lazily (the package imports without it), or an error naming the extra."""
    try:
        import faiss
    except ImportError as err:
        raise ImportError("faiss is not installed: `make install EXTRAS=dev,cpu` installs faiss-cpu, "
                          "`make install EXTRAS=dev,gpu` faiss-gpu (see `make check-gpu`)") from err
    return faiss


def faiss_has_gpu() -> bool:
    """True when the installed faiss was built with GPU support and sees a GPU."""
    faiss = import_faiss()
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


_GPU_RESOURCES: dict = {}  # one StandardGpuResources per device and process, reused across indexes


def _gpu_resources(device: int):
    if device not in _GPU_RESOURCES:
        _GPU_RESOURCES[device] = import_faiss().StandardGpuResources()
    return _GPU_RESOURCES[device]


def current_gpu() -> int:
    """The GPU this process works on: torch's current CUDA device (each DDP rank sets its own), else 0."""
    return torch.cuda.current_device() if torch.cuda.is_available() else 0


class FlatL2Shortlist:
    """Exact L2 k-nearest-neighbour shortlist over float32 vectors (IndexFlatL2 / GpuIndexFlatL2).

    On GPU the index lives on `device`, by default the process's current CUDA device, so that the
    ranks of a multi-GPU run each search on their own GPU."""

    def __init__(self, vectors: torch.Tensor, use_gpu: bool | None = None, device: int | None = None) -> None:
        faiss = import_faiss()
        dim = vectors.shape[1]
        self.on_gpu = faiss_has_gpu() if use_gpu is None else use_gpu
        if self.on_gpu:
            device = current_gpu() if device is None else device
            config = faiss.GpuIndexFlatConfig()
            config.device = device
            self.index = faiss.GpuIndexFlatL2(_gpu_resources(device), dim, config)
        else:
            self.index = faiss.IndexFlatL2(dim)
        self.index.add(_as_numpy(vectors))

    def __len__(self) -> int:
        return self.index.ntotal

    def search(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        """Indices (Q, k) of the k nearest vectors by L2 (-1 where fewer than k exist)."""
        k = min(k, len(self))
        _, idx = self.index.search(_as_numpy(queries), k)
        return torch.from_numpy(idx)

    def __getstate__(self):
        raise TypeError("FAISS indexes are not picklable: build them lazily where they are used")


def _as_numpy(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
