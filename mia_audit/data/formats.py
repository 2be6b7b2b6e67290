"""Dataset file formats: .npz, torch.save'd tensors, image folders, the seeds' pickles.

One loader per format behind `load_image_set`, which picks by file type. Nothing is unpickled
unless the policy says `allow_pickle: true`: numpy with allow_pickle=False, torch with
weights_only=True.
"""

from __future__ import annotations

import math
import pickle
import types
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np

from mia_audit.data.images import ImageSet, make_image_set
from mia_audit.errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
TORCH_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin"}
_IMAGE_KEYS = ("x", "images", "imgs")
_LABEL_KEYS = ("y", "labels", "targets")

Loader = Callable[[Path, bool, str], ImageSet]


def load_image_set(path: Path, *, allow_pickle: bool, field: str) -> ImageSet:
    """Load the dataset file or folder named by a policy field (used in error messages)."""
    source = f"{field}: {path}"
    if not path.exists():
        raise InputError(f"{source}: file not found; check the path (relative to the policy)")
    loader = _loader_for(path, source)
    try:
        return loader(path, allow_pickle, source).with_id_prefix(field.rsplit(".", 1)[-1])
    except InputError:
        raise
    except MemoryError:
        raise InputError(f"{source}: too large to load into memory") from None


def _loader_for(path: Path, source: str) -> Loader:
    if path.is_dir():
        return _load_folder
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz
    if suffix in TORCH_SUFFIXES:
        return _load_torch
    raise InputError(
        f"{source}: unsupported data file type {suffix or '(none)'!r}; use .npz, a "
        "torch.save'd .pt file, or a folder with one subfolder of images per class"
    )


# --- .npz -------------------------------------------------------------------------------------


def _load_npz(path: Path, allow_pickle: bool, source: str) -> ImageSet:
    # np.load guesses the format from the content: anything that is not a zip archive would be
    # read as a bare .npy array or, failing that, refused as a pickle -- both misleading here.
    if not zipfile.is_zipfile(path):
        raise InputError(
            f"{source}: not a readable .npz file (not a zip archive: truncated, or not written "
            "by numpy.savez); save the arrays x and y with numpy.savez"
        )
    try:
        with np.load(path, allow_pickle=allow_pickle) as archive:
            # Only the arrays this tool reads are loaded: other members cost nothing.
            keys = [key for key in archive.files if key in _NPZ_KEYS]
            _check_fits_in_memory(npz_array_bytes(path, keys), source)
            arrays = {key: archive[key] for key in keys}
            present = list(archive.files)
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise _pickle_refused(source, "data.allow_pickle") from None
        raise InputError(f"{source}: not a readable .npz file ({_first_line(error)})") from None
    except _DAMAGED_ZIP as error:
        raise InputError(f"{source}: not a readable .npz file ({_first_line(error)})") from None
    return _from_mapping(arrays, source, present)


#: The .npz members `_from_mapping` reads.
_NPZ_KEYS = frozenset({*_IMAGE_KEYS, *_LABEL_KEYS, "class_names", "ids", "membership"})


def npz_array_bytes(path: Path, keys: list[str]) -> dict[str, int]:
    """Bytes each named array of an .npz will take in memory, from the .npy headers alone
    (nothing is decompressed beyond them). A member whose header cannot be read is left out:
    loading it fails with its own error."""
    sizes: dict[str, int] = {}
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        for key in keys:
            member = f"{key}.npy" if f"{key}.npy" in names else key
            with archive.open(member) as handle:
                header = _npy_header(handle)
            if header is not None:
                shape, dtype = header
                sizes[key] = math.prod(shape) * dtype.itemsize
            elif not member.endswith(".npy"):  # numpy returns a non-.npy member's raw bytes
                sizes[key] = archive.getinfo(member).file_size
    return sizes


def _npy_header(handle: IO[bytes]) -> tuple[tuple[int, ...], np.dtype[Any]] | None:
    """(shape, dtype) from the start of an .npy stream, or None if it is not one."""
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(handle)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(handle)
        else:  # 3.0 (UTF-8 field names) has no public reader
            shape, _, dtype = npy._read_array_header(handle, version)  # type: ignore[attr-defined]
    except (ValueError, OSError, EOFError, *_DAMAGED_ZIP):
        return None
    return tuple(int(n) for n in shape), np.dtype(dtype)


def _check_fits_in_memory(sizes: dict[str, int], source: str) -> None:
    """Refuse arrays that would not fit in the memory left, before loading them: otherwise a
    small compressed file can decompress into more memory than the machine has, and the
    kernel kills the process with no message."""
    from mia_audit.data.resources import available_memory, size_text

    needed = sum(sizes.values())
    available = available_memory()
    if available is None or needed <= available:
        return
    largest = max(sizes, key=lambda key: sizes[key])
    raise InputError(
        f"{source}: its arrays need {size_text(needed)} of memory ({largest!r}: "
        f"{size_text(sizes[largest])}), more than the {size_text(available)} available; "
        "split the data into smaller files, or run on a machine with more memory"
    )


#: What a damaged zip archive raises while a member is read: a bad header or CRC, corrupt
#: deflate data, a compression method or encryption flag flipped to one zipfile cannot read.
_DAMAGED_ZIP = (
    OSError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    NotImplementedError,
    RuntimeError,
)


def _pickle_refused(source: str, key: str) -> InputError:
    return InputError(
        f"{source}: holds pickled Python objects, which can run code when loaded; "
        f"set {key}: true only if you trust this file"
    )


def _from_mapping(
    arrays: dict[str, Any], source: str, present: list[str] | None = None
) -> ImageSet:
    """An image set from named arrays; `present`: every name the file holds (for the message
    when images or labels are missing), default the names of `arrays`."""
    images = _first(arrays, _IMAGE_KEYS)
    labels = _first(arrays, _LABEL_KEYS)
    if images is None or labels is None:
        found = sorted(present if present is not None else arrays)
        raise InputError(
            f"{source}: needs arrays 'x' (images) and 'y' (labels); found "
            f"{', '.join(found) or 'none'}"
        )
    names = arrays.get("class_names")
    class_names = (
        tuple(str(n) for n in np.asarray(names).reshape(-1)) if names is not None else None
    )
    return make_image_set(
        _numpy(images),
        _numpy(labels),
        source=source,
        ids=_numpy(arrays["ids"]) if "ids" in arrays else None,
        membership=_numpy(arrays["membership"]) if "membership" in arrays else None,
        class_names=class_names,
    )


def _first(arrays: dict[str, Any], keys: tuple[str, ...]) -> Any:
    return next((arrays[key] for key in keys if key in arrays), None)


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        return np.asarray(value.detach().cpu().numpy())
    if isinstance(value, list | tuple) and value and not isinstance(value[0], str | int | float):
        return np.stack([_image_array(item) for item in value])
    return np.asarray(value)


def _image_array(item: Any) -> np.ndarray:
    """One image from a PIL image, tensor or array."""
    if hasattr(item, "detach"):
        return np.asarray(item.detach().cpu().numpy())
    return np.asarray(item)


# --- torch.save'd files -----------------------------------------------------------------------


def _load_torch(path: Path, allow_pickle: bool, source: str) -> ImageSet:
    import torch

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not allow_pickle:
            raise _pickle_refused(source, "data.allow_pickle") from None
        content = _load_seed_pickle(path, source)
    except (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile) as error:
        raise InputError(f"{source}: not a readable torch file ({_first_line(error)})") from None
    return _from_torch_content(content, source)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _from_torch_content(content: Any, source: str) -> ImageSet:
    if isinstance(content, dict):
        return _from_mapping(content, source)
    if isinstance(content, list | tuple) and len(content) == 2:
        return _from_mapping({"x": content[0], "y": content[1]}, source)
    if hasattr(content, "imgs") and hasattr(content, "labels"):
        return _from_dataset_object(content, source)
    raise InputError(
        f"{source}: holds a {type(content).__name__}; expected a dict with 'x' and 'y' "
        "tensors, an (x, y) pair, or a dataset object with imgs/labels"
    )


class SeedTaskDataset:
    """Stand-in for the `TaskDataset` class the seeds' scripts defined in `__main__`.

    Their pickles name `__main__.TaskDataset` / `__main__.MembershipDataset`; mapping those names
    here lets such files load without the user defining the classes. Attributes (ids, imgs,
    labels, membership, transform) are restored by pickle as usual.
    """

    ids: Any
    imgs: Any
    labels: Any
    membership: Any = None


class SeedMembershipDataset(SeedTaskDataset):
    pass


_SEED_CLASSES = {"TaskDataset": SeedTaskDataset, "MembershipDataset": SeedMembershipDataset}


class _SeedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "__main__" and name in _SEED_CLASSES:
            return _SEED_CLASSES[name]
        return super().find_class(module, name)


_seed_pickle_module = types.ModuleType("mia_audit_seed_pickle")
_seed_pickle_module.Unpickler = _SeedUnpickler  # type: ignore[attr-defined]
_seed_pickle_module.load = pickle.load  # type: ignore[attr-defined]
_seed_pickle_module.__dict__["UnpicklingError"] = pickle.UnpicklingError


def _load_seed_pickle(path: Path, source: str) -> Any:
    """Full unpickling, only ever reached with allow_pickle: true."""
    import torch

    try:
        return torch.load(
            path, map_location="cpu", weights_only=False, pickle_module=_seed_pickle_module
        )
    except (pickle.UnpicklingError, AttributeError, ModuleNotFoundError, ImportError) as error:
        raise InputError(f"{source}: cannot unpickle ({_first_line(error)})") from None


def _from_dataset_object(dataset: Any, source: str) -> ImageSet:
    if len(dataset.imgs) == 0:
        raise InputError(f"{source}: holds no samples; give at least one image")
    images = np.stack([_image_array(image) for image in dataset.imgs])
    membership = getattr(dataset, "membership", None)
    if membership is not None and any(m is None for m in membership):
        membership = None
    return make_image_set(
        images,
        _numpy(list(dataset.labels)) if dataset.labels is not None else np.array([]),
        source=source,
        ids=_dataset_ids(dataset, len(images)),
        membership=None if membership is None else _numpy(list(membership)),
    )


def _dataset_ids(dataset: Any, n: int) -> np.ndarray:
    ids = getattr(dataset, "ids", None)
    return np.arange(n) if ids is None or len(ids) == 0 else np.asarray(list(ids))


# --- image folders ----------------------------------------------------------------------------


def _load_folder(path: Path, allow_pickle: bool, source: str) -> ImageSet:
    class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise InputError(f"{source}: an image folder needs one subfolder of images per class")
    images, labels, ids = [], [], []
    for label, class_dir in enumerate(class_dirs):
        for file in sorted(p for p in class_dir.iterdir() if not p.name.startswith(".")):
            images.append(_read_image(file, source))
            labels.append(label)
            ids.append(file.relative_to(path).as_posix())
    if not images:
        raise InputError(f"{source}: the class subfolders hold no images")
    _same_size(images, ids, source)
    names = tuple(d.name for d in class_dirs)
    return make_image_set(
        np.stack(images), np.array(labels), source=source, ids=np.array(ids), class_names=names
    )


def _read_image(file: Path, source: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not file.is_file() or file.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError(
            f"{source}: {file.name} in {file.parent.name}/ is not an image file; "
            "remove it or move it out of the folder"
        )
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and refuses above twice that: both are
            # decompression bombs here (a few KiB of PNG that decode to gigabytes).
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                mode = "L" if image.mode in ("L", "1", "I;16", "I") else "RGB"
                return np.asarray(image.convert(mode))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise InputError(
            f"{source}: image {file} is too large to decode ({_first_line(error)}); "
            "resize it or remove it from the folder"
        ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"{source}: cannot read image {file} ({error})") from None


def _same_size(images: list[np.ndarray], ids: list[str], source: str) -> None:
    first = images[0].shape
    for image, name in zip(images, ids, strict=True):
        if image.shape != first:
            raise InputError(
                f"{source}: image {name} has shape {image.shape}, others {first}; "
                "all images must have the same size and channels"
            )
