"""A pickled seed dataset (written by another interpreter, so its classes are not importable here)
is read only with allow_pickle."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mia_audit.data.audit import split_by_membership
from mia_audit.data.formats import load_image_set
from mia_audit.errors import InputError

SEED_SCRIPT = """
import torch
from PIL import Image
import numpy as np
from mia_audit.data.formats import load_image_set

class TaskDataset:
    def __init__(self):
        self.ids, self.imgs, self.labels = [], [], []

class MembershipDataset(TaskDataset):
    def __init__(self):
        super().__init__()
        self.membership = []

data = MembershipDataset()
rng = np.random.default_rng(1)
for i in range(10):
    data.ids.append(1000 + i)
    data.imgs.append(Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)))
    data.labels.append(i % 4)
    data.membership.append(i % 2)
torch.save(data, {path!r})
"""


@pytest.fixture
def seed_pickle(tmp_path: Path) -> Path:
    """A pickle made as the seeds made theirs: classes defined in the script's __main__."""
    path = tmp_path / "pub.pt"
    script = textwrap.dedent(SEED_SCRIPT.format(path=str(path)))
    subprocess.run([sys.executable, "-c", script], check=True)
    return path


def test_seed_pickle_needs_allow_pickle(seed_pickle: Path) -> None:
    with pytest.raises(InputError, match=r"data.members: .*pub.pt.*allow_pickle"):
        load_image_set(seed_pickle, allow_pickle=False, field="data.members")


def test_seed_pickle_loads_without_the_classes(seed_pickle: Path) -> None:
    loaded = load_image_set(seed_pickle, allow_pickle=True, field="data.members")
    assert len(loaded) == 10
    assert loaded.ids.tolist() == [str(i) for i in range(1000, 1010)]
    members, non_members = split_by_membership(loaded)
    assert len(members) == len(non_members) == 5


