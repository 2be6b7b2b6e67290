"""Archive-like inputs cannot write outside their folder, because nothing is ever extracted.

.npz files, torch.save files and TorchScript archives are zip files; mia-audit reads them in
memory (numpy.load, torch.load, torch.jit.load), so a member named `../evil.png` or
`/abs/evil.npy` never becomes a path: numpy shows it as an array name (ignored here), torch
refuses the archive. Image folders are only read; a file name cannot hold `/`, so their
traversal is a symlink pointing out of the folder, which is followed for reading only.

Each case runs with the working directory inside the test's folder and the absolute member
names pointing into it too, so any file written, wherever a name would lead, shows up in a
snapshot of that folder.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mia_audit.data.formats import load_image_set
from mia_audit.errors import InputError
from mia_audit.models.loading import load_target
from mia_audit.models.settings import ModelSpec

IMAGES = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
LABELS = np.array([0, 1, 0, 1])

Snapshot = dict[str, tuple[int, int]]


def snapshot(root: Path) -> Snapshot:
    """Every path under `root` (symlinks not followed), with its size and modification time."""
    return {
        str(path.relative_to(root)): (path.lstat().st_size, path.lstat().st_mtime_ns)
        for path in root.rglob("*")
    }


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "work").mkdir()
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


def traversal_names(root: Path, name: str) -> list[str]:
    return [f"../{name}", f"../../{name}", f"{root}/{name}", f"/{root.name}-{name}"]


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def test_npz_members_with_traversal_names_are_read_in_memory(root: Path) -> None:
    path = root / "data" / "members.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", npy_bytes(IMAGES))
        archive.writestr("y.npy", npy_bytes(LABELS))
        for name in traversal_names(root, "evil.npy") + traversal_names(root, "evil.png"):
            archive.writestr(name, npy_bytes(np.ones(3)))
    before = snapshot(root)
    loaded = load_image_set(path, allow_pickle=False, field="data.members")
    np.testing.assert_array_equal(loaded.labels, LABELS)
    assert snapshot(root) == before
    assert not Path(f"/{root.name}-evil.npy").exists()


def test_npz_whose_arrays_only_have_traversal_names_is_refused(root: Path) -> None:
    path = root / "data" / "members.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../x.npy", npy_bytes(IMAGES))
        archive.writestr(f"{root}/y.npy", npy_bytes(LABELS))
    before = snapshot(root)
    with pytest.raises(InputError, match="needs arrays 'x'"):
        load_image_set(path, allow_pickle=False, field="data.members")
    assert snapshot(root) == before


def with_traversal_members(path: Path, root: Path) -> None:
    with zipfile.ZipFile(path, "a") as archive:
        for name in traversal_names(root, "evil.png"):
            archive.writestr(name, b"not extracted")


def test_torch_data_file_with_traversal_names_is_refused(root: Path) -> None:
    path = root / "data" / "members.pt"
    torch.save({"x": torch.from_numpy(IMAGES), "y": torch.from_numpy(LABELS)}, path)
    with_traversal_members(path, root)
    before = snapshot(root)
    with pytest.raises(InputError, match="not a readable torch file"):
        load_image_set(path, allow_pickle=False, field="data.members")
    assert snapshot(root) == before


def test_state_dict_archive_with_traversal_names_is_refused(root: Path) -> None:
    path = root / "data" / "model.pt"
    torch.save(tiny_module().state_dict(), path)
    with_traversal_members(path, root)
    before = snapshot(root)
    spec = ModelSpec(path=path, architecture="resnet18", num_classes=2)
    with pytest.raises(InputError, match=r"model\.path: .*not a readable model file"):
        load_target(spec, "cpu")
    assert snapshot(root) == before


def test_torchscript_archive_with_traversal_names_is_read_in_memory(root: Path) -> None:
    """torch.jit.load ignores members it does not need; it extracts none of them."""
    path = root / "data" / "model.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated in torch 2.9+
        torch.jit.save(torch.jit.script(tiny_module()), str(path))
    with_traversal_members(path, root)
    before = snapshot(root)
    loaded = load_target(ModelSpec(path=path), "cpu")
    assert loaded.format == "torchscript"
    assert snapshot(root) == before


def tiny_module() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(192, 2))


def test_image_folder_with_links_out_of_it_is_only_read(root: Path) -> None:
    outside = root / "outside"
    (outside / "more").mkdir(parents=True)
    for index in range(2):
        Image.fromarray(IMAGES[index]).save(outside / "more" / f"{index}.png")
    Image.fromarray(IMAGES[2]).save(outside / "secret.png")
    folder = root / "data" / "images"
    (folder / "a").mkdir(parents=True)
    Image.fromarray(IMAGES[3]).save(folder / "a" / "0.png")
    (folder / "a" / "escape.png").symlink_to("../../../outside/secret.png")
    (folder / "b").symlink_to(outside / "more", target_is_directory=True)
    before = snapshot(root)
    loaded = load_image_set(folder, allow_pickle=False, field="data.members")
    assert sorted(loaded.ids.tolist()) == ["a/0.png", "a/escape.png", "b/0.png", "b/1.png"]
    assert snapshot(root) == before
