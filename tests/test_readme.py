"""The README's ```python blocks run verbatim, each in a fresh folder that holds what a newcomer's clone
has after the make targets the README names (a GAN prior at outputs/runs/gan_s/prior.pt, tiny and
untrained here).

Markers, as a comment anywhere in a block: `# not run in tests` (needs licensed files), `# slow test`
(runs with the slow-marked tests only)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SKIP, SLOW = "# not run in tests", "# slow test"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of every ```python block."""
    return [(text[: m.start()].count("\n") + 2, m.group(1)) for m in re.finditer(r"```python\n(.*?)```", text, re.S)]


def _params() -> list:
    params = []
    for line, code in python_blocks((REPO / "README.md").read_text()):
        marks = [pytest.mark.skip(reason="marked: not run in tests")] if SKIP in code else []
        marks += [pytest.mark.slow] if SLOW in code else []
        params.append(pytest.param(code, id=f"README.md:{line}", marks=marks))
    return params


def _stage_inputs(folder: Path) -> None:
    from pose_prior.priors.gan.networks import PoseGenerator
    from pose_prior.priors.gan.prior import save_prior
    from pose_prior.priors.latent import make_latent

    save_prior(folder / "outputs/runs/gan_s/prior.pt", PoseGenerator(latent_dim=32), make_latent("S", 32))


def test_the_readme_has_python_blocks() -> None:
    assert len(python_blocks((REPO / "README.md").read_text())) >= 3


@pytest.mark.parametrize("code", _params())
def test_readme_block_runs(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stage_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
