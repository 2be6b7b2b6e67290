"""Data loaders: every supported format, read from real files written here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from PIL import Image

from mia_audit.data.audit import SamplingOptions, build_audit_set
from mia_audit.data.formats import load_image_set
from mia_audit.errors import InputError

RNG = np.random.default_rng(0)
IMAGES = RNG.integers(0, 256, size=(12, 8, 8, 3), dtype=np.uint8)
LABELS = np.arange(12) % 3


def load(path: Path, allow_pickle: bool = False):  # type: ignore[no-untyped-def]
    return load_image_set(path, allow_pickle=allow_pickle, field="data.members")


def test_npz_uint8_nhwc(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=IMAGES, y=LABELS)
    loaded = load(path)
    assert len(loaded) == 12
    np.testing.assert_array_equal(loaded.labels, LABELS)
    assert loaded.ids[0] == "members:0"


def test_npz_float_nchw_matches_uint8(tmp_path: Path) -> None:
    np.savez(tmp_path / "u.npz", x=IMAGES, y=LABELS)
    np.savez(tmp_path / "f.npz", x=IMAGES.transpose(0, 3, 1, 2) / 255.0, y=LABELS)
    from mia_audit.data.images import as_float01

    as_uint8 = as_float01(load(tmp_path / "u.npz").images)
    as_float = as_float01(load(tmp_path / "f.npz").images)
    np.testing.assert_allclose(as_uint8, as_float, atol=1e-6)


def test_torch_saved_dict_and_pair(tmp_path: Path) -> None:
    x = torch.from_numpy(IMAGES)
    y = torch.from_numpy(LABELS)
    torch.save({"x": x, "y": y}, tmp_path / "dict.pt")
    torch.save((x, y), tmp_path / "pair.pt")
    for name in ("dict.pt", "pair.pt"):
        np.testing.assert_array_equal(load(tmp_path / name).labels, LABELS)


def test_image_folder(tmp_path: Path) -> None:
    for index in range(6):
        folder = tmp_path / "imgs" / f"class_{index % 2}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(IMAGES[index]).save(folder / f"{index}.png")
    loaded = load(tmp_path / "imgs")
    assert loaded.class_names == ("class_0", "class_1")
    assert sorted(loaded.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert "class_0/0.png" in loaded.ids.tolist()










def test_object_npz_refused(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, x=np.array([object()] * 3, dtype=object), y=np.zeros(3))
    with pytest.raises(InputError, match="allow_pickle"):
        load(path)


def test_balanced_seeded_subsample(tmp_path: Path) -> None:
    np.savez(tmp_path / "m.npz", x=IMAGES, y=LABELS)
    np.savez(tmp_path / "n.npz", x=IMAGES[:5], y=LABELS[:5])
    members = load_image_set(tmp_path / "m.npz", allow_pickle=False, field="data.members")
    non_members = load_image_set(tmp_path / "n.npz", allow_pickle=False, field="data.non_members")
    options = SamplingOptions(seed=3, balance=True, max_per_side=None, population_needed=0)
    first = build_audit_set(members, non_members, None, options)
    second = build_audit_set(members, non_members, None, options)
    assert first.n_members == first.n_non_members == 5
    np.testing.assert_array_equal(first.ids, second.ids)


@pytest.mark.parametrize(
    ("images", "labels", "expected"),
    [
        (np.zeros((2, 3, 0, 0), np.float32), [0, 1], "hold no pixels"),
        (np.full((2, 3, 4, 4), 1e300), [0, 1], "too large for float32"),
        (IMAGES[:2], np.array([0, 2**40]), "too large to be a class index"),
        (IMAGES[:2], np.array([0, 2**64 - 1], np.uint64), "too large to be a class index"),
        (IMAGES[:2], np.array([0.0, -3.0]), "label -3 is negative"),
    ],
)
def test_unusable_arrays_refused(
    tmp_path: Path, images: np.ndarray, labels: npt.ArrayLike, expected: str
) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=images, y=labels)
    with pytest.raises(InputError, match=expected):
        load(path)


def test_byte_string_ids_that_are_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=IMAGES[:2], y=LABELS[:2], ids=np.array([b"a", b"\xff"]))
    assert load(path).ids.tolist() == ["a", "\\xff"]


def test_npz_array_bytes_read_from_headers_match_the_arrays(tmp_path: Path) -> None:
    """The sizes the memory check uses, from headers only, equal the loaded arrays' sizes, for
    compressed and stored members; a member that is not .npy counts its stored size."""
    import zipfile

    from mia_audit.data.formats import npz_array_bytes

    arrays: dict[str, np.ndarray] = {
        "x": IMAGES.astype(np.float32),
        "y": LABELS,
        "ids": np.array(["a", "bb", "c"]),
    }
    for save in (np.savez, np.savez_compressed):
        path = tmp_path / f"{save.__name__}.npz"
        # allow_pickle (the default) is named so that mypy does not match the arrays against it
        save(path, allow_pickle=True, **arrays)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("class_names", b"raw bytes, not an array")
        sizes = npz_array_bytes(path, ["x", "y", "ids", "class_names"])
        with np.load(path) as loaded:
            assert sizes == {
                "x": loaded["x"].nbytes,
                "y": loaded["y"].nbytes,
                "ids": loaded["ids"].nbytes,
                "class_names": len(loaded["class_names"]),
            }


def test_available_memory_is_at_most_memavailable() -> None:
    from mia_audit.data.resources import available_memory, size_text

    available = available_memory()
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        line = next(x for x in meminfo.read_text().splitlines() if x.startswith("MemAvailable:"))
        assert available is not None
        assert 0 < available <= int(line.split()[1]) * 1024 * 1.05  # it moves while we read
    assert size_text(512) == "512 B" and size_text(3_072_000_000_000) == "3.1 TB"
