"""AMASS data sections and the data-preparation tasks (prepare-amass, demo-data)."""
# ruff: noqa: UP006, UP035 - omegaconf structured configs need typing.List / Dict / Optional

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional

# VPoser v1-era AMASS splits as the paper's authors used them.
DEFAULT_SPLITS: Dict[str, List[str]] = {
    "train": [
        "CMU", "MPI_Limits", "TotalCapture", "Eyes_Japan_Dataset", "KIT", "BMLrub", "BMLmovi",
        "BMLhandball", "EKUT", "TCD_handMocap", "ACCAD",
    ],
    "valid": ["HumanEva", "MPI_HDM05", "SFU", "MPI_mosh"],
    "test": ["Transitions_mocap", "SSM_synced"],
}

# Names that different AMASS releases give the same sub-dataset (canonical -> aliases).
DEFAULT_ALIASES: Dict[str, List[str]] = {
    "MPI_HDM05": ["HDM05", "MPIHDM05", "MPI_HDM05"],
    "MPI_Limits": ["PosePrior", "MPILimits", "MPI_Limits"],
    "MPI_mosh": ["MoSh", "MPImosh", "MPI_mosh"],
    "Transitions_mocap": ["Transitions", "Transitionsmocap", "Transitions_mocap"],
    "SSM_synced": ["SSM", "SSMsynced", "SSM_synced"],
    "BMLrub": ["BioMotionLab_NTroje", "BMLrub"],
    "BMLmovi": ["BMLmovi"],
    "BMLhandball": ["BMLhandball"],
    "Eyes_Japan_Dataset": ["Eyes_Japan_Dataset", "EyesJapanDataset"],
    "TCD_handMocap": ["TCD_handMocap", "TCDHands"],
    "DFaust_67": ["DFaust_67", "DFaust"],
}


@dataclass
class AmassDataConfig:
    """Where AMASS lives, how it is split and how frames are selected."""

    amass_dir: Optional[str] = None  # raw AMASS tree; null = the synthetic demo tree below
    demo_dir: str = "outputs/demo/amass"  # synthetic AMASS-format tree (made on demand)
    prepared_dir: str = "outputs/prepared/amass"
    splits: Dict[str, List[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_SPLITS.items()})
    aliases: Dict[str, List[str]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_ALIASES.items()})
    frame_selection: Literal["all", "vposer", "resample"] = "all"
    vposer_keep_fraction: float = 0.3
    vposer_trim_fraction: float = 0.1
    target_fps: Optional[float] = None  # for frame_selection=resample
    seed: int = 0
    batch_size: int = 1024
    num_workers: int = 0
    verify_checksums: bool = False  # re-hash every source file (sha256) to decide that a preparation is current


@dataclass
class DemoDataConfig:
    """Size of the synthetic AMASS-format tree."""

    sequences_per_subject: int = 2
    subjects_per_dataset: int = 2
    frames_per_sequence: int = 240
    framerate: float = 60.0
    seed: int = 0


@dataclass
class PrepareAmassConfig:
    task: str = "prepare-amass"
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)


@dataclass
class DemoDataTaskConfig:
    task: str = "demo-data"
    data: AmassDataConfig = field(default_factory=AmassDataConfig)
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)
