"""Fuzzing the two front doors with hypothesis: policy documents and .npz data files.

Whatever a policy document holds (random values at any key, a key removed or misspelt, random
documents), `parse_policy` returns a Policy or raises PolicyError with a one-line message,
never anything else. Whatever arrays an .npz holds (any dtype, 0 to 5 dimensions, NaN and
infinities, odd labels, ids and membership), or whatever bytes a damaged one holds, loading it
and building an audit set from it raise only InputError (one line), or succeed.
"""

from __future__ import annotations

import copy
import datetime
import io
import string
import time
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from mia_audit.data.audit import SamplingOptions, build_audit_set
from mia_audit.data.formats import load_image_set
from mia_audit.data.images import ImageSet, make_image_set
from mia_audit.errors import InputError, PolicyError
from mia_audit.policy.loading import load_policy, parse_policy
from mia_audit.policy.messages import MAX_PROBLEMS
from mia_audit.policy.schema import Policy

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
BASE_DIR = Path("/policy-folder")

#: A valid policy that sets every section, so that mutations reach every key.
VALID: dict[str, Any] = {
    "version": 1,
    "name": "fuzz",
    "model": {
        "path": "target.pt",
        "format": "auto",
        "architecture": "resnet18",
        "num_classes": 10,
        "cifar_stem": False,
        "allow_pickle": False,
    },
    "data": {
        "members": "members.npz",
        "non_members": "non_members.npz",
        "population": "population.npz",
        "allow_pickle": False,
        "max_per_side": 100,
        "balance": True,
        "class_names": ["a", "b"],
    },
    "preprocessing": {
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "input_size": [32, 32],
        "channel_order": "rgb",
    },
    "attacks": [
        "loss",
        {"name": "logit_margin", "id": "margin", "queries": 2},
        "class_threshold",
        {"name": "learned", "model": "logistic_regression", "folds": 3},
        {"name": "lira", "reference_models": 4, "mode": "online", "queries": 18},
        {"name": "rmia", "reference_models": 2, "offline_a": 0.3, "gamma": 2},
        {"name": "shadow", "shadow_models": 2},
    ],
    "reference_training": {
        "architecture": "resnet18",
        "epochs": 2,
        "batch_size": 64,
        "optimizer": "adamw",
        "lr": 0.001,
        "augment": ["flip", "crop"],
        "train_size": 100,
    },
    "gate": {
        "attacks": ["loss", "margin", "lira"],
        "max_auc": {"max": 0.6, "statistic": "upper"},
        "max_tpr_at_fpr": [{"fpr": 0.05, "max": 0.1}, {"fpr": 0.1, "max": 0.2}],
        "max_advantage": 0.3,
        "max_epsilon_lower_bound": {"max": 2.0, "attacks": ["loss"]},
        "max_class_auc": {"max": 0.7, "min_samples": 5},
        "max_auc_increase": 0.02,
        "max_tpr_at_fpr_increase": [{"fpr": 0.05, "max": 0.02}],
        "baseline": "previous/result.json",
        "suppressions": [
            {
                "condition": "auc",
                "attack": "loss",
                "reason": "accepted",
                "expires": datetime.date(2030, 1, 1),
            }
        ],
    },
    "statistics": {
        "confidence_level": 0.95,
        "n_resamples": 200,
        "delta": 1e-5,
        "min_false_positives": 5,
    },
    "outputs": {"dir": "report", "formats": ["json", "html", "markdown", "junit"]},
    "runtime": {
        "device": "cpu",
        "seed": 0,
        "batch_size": 64,
        "cache_dir": ".mia-cache",
        "precision": "auto",
    },
}

Location = tuple[str | int, ...]


def _value_at(document: Any, location: Location) -> Any:
    for part in location:
        document = document[part]
    return document


def _locations(value: Any, prefix: Location = ()) -> list[Location]:
    """Every key and list position in a document, depth first."""
    found: list[Location] = []
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_locations(child, (*prefix, key)))
    return found


LOCATIONS = _locations(VALID)
#: The document and every mapping in it (where an unknown key can be added).
MAPPINGS: list[Location] = [()] + [
    loc for loc in LOCATIONS if isinstance(_value_at(VALID, loc), dict)
]
KNOWN_KEYS = sorted({str(loc[-1]) for loc in LOCATIONS if isinstance(loc[-1], str)})

#: Text with a line break inside (which a one-line message must not pass through).
BROKEN_TEXT = st.builds(
    lambda head, brk, tail: head + brk + tail,
    st.sampled_from(["", "path", "max", "x"]),
    st.sampled_from(["\n", "\r\n", "\x0b", "\x85", "\u2028"]),
    st.text(max_size=3),
)
ODD_TEXT = st.text(max_size=8) | BROKEN_TEXT
# What YAML can produce: scalars of every kind, including text with line breaks and control
# characters, dates and bytes (!!binary); keys need not be strings.
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | ODD_TEXT
    | st.sampled_from(["auto", "upper", "point", "offline", "online", "loss", "lira", "", " "])
    | st.dates()
    | st.datetimes()
    | st.binary(max_size=8)
)
KEYS = st.sampled_from(KNOWN_KEYS) | ODD_TEXT | st.integers(-3, 3) | st.none() | st.dates()
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)


@st.composite
def typo(draw: st.DrawFn, word: str) -> str:
    """`word` with one character inserted, deleted, replaced, or two swapped."""
    position = draw(st.integers(0, max(len(word) - 1, 0)))
    letter = draw(st.sampled_from(string.ascii_letters + "_- .\n"))
    kind = draw(st.sampled_from(["insert", "delete", "replace", "swap", "case"]))
    if kind == "insert" or not word:
        return word[:position] + letter + word[position:]
    if kind == "delete":
        return word[:position] + word[position + 1 :]
    if kind == "replace":
        return word[:position] + letter + word[position + 1 :]
    if kind == "swap" and len(word) > 1:
        position = min(position, len(word) - 2)
        return word[:position] + word[position + 1] + word[position] + word[position + 2 :]
    return word.upper()


@st.composite
def mutated_documents(draw: st.DrawFn) -> Any:
    """The valid document with one to three keys replaced, removed, misspelt or added."""
    document = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.integers(0, 3)) == 0:  # an unknown key, at the top or in any section
            _insert(document, draw(st.sampled_from(MAPPINGS)), draw(KEYS), draw(VALUES))
            continue
        location = draw(st.sampled_from(LOCATIONS))
        parent = _parent(document, location)
        key = location[-1]
        if parent is None or not _holds(parent, key):
            continue  # an earlier mutation removed or replaced this part
        action = draw(st.sampled_from(["replace", "remove", "typo"]))
        if action == "replace":
            parent[key] = draw(VALUES)
        elif action == "remove":
            del parent[key]
        elif isinstance(parent, dict):
            parent[draw(typo(str(key)))] = parent.pop(key)
        elif isinstance(parent[key], str):
            parent[key] = draw(typo(parent[key]))
    return document


def _insert(document: Any, location: Location, key: Any, value: Any) -> None:
    node = _parent(document, (*location, "")) if location else document
    if isinstance(node, dict):
        node[key] = value


def _parent(document: Any, location: Location) -> Any:
    node = document
    for part in location[:-1]:
        if not _holds(node, part):
            return None
        node = node[part]
    return node if isinstance(node, dict | list) else None


def _holds(node: Any, key: str | int) -> bool:
    if isinstance(node, dict):
        return key in node
    return isinstance(node, list) and isinstance(key, int) and key < len(node)


#: Documents built from the known sections, each section valid or random.
SECTIONED = st.fixed_dictionaries(
    {},
    optional={key: st.just(value) | VALUES for key, value in VALID.items()},
)
DOCUMENTS = mutated_documents() | SECTIONED | VALUES


def _one_line(message: str) -> None:
    """One line per problem (a policy's problems are listed at once, up to a cap), none empty."""
    lines = message.splitlines()
    assert lines and all(line.strip() for line in lines), repr(message)
    assert len(lines) <= MAX_PROBLEMS + 1, repr(message)
    assert "Traceback" not in message, repr(message)


@FUZZ
@given(document=DOCUMENTS)
def test_policy_documents_parse_or_raise_policy_error(document: Any) -> None:
    try:
        policy = parse_policy(document, base_dir=BASE_DIR)
    except PolicyError as error:
        _one_line(str(error))
    else:
        assert isinstance(policy, Policy)


YAML_PIECES = st.sampled_from(
    [":", "- ", "[", "]", "{", "}", "? ", "&a ", "*a", "!!binary ", "!!python/object ", "\t",
     "\n  ", '"', "'", "#", "%YAML 1.1\n", "---\n", "<<: *a\n", "\ufeff", "\x00"]
)  # fmt: skip
VALID_YAML = yaml.safe_dump(VALID, sort_keys=False)


@st.composite
def policy_texts(draw: st.DrawFn) -> str:
    """YAML text: the valid policy with YAML syntax spliced in, a dumped random document, or
    any text at all."""
    kind = draw(st.sampled_from(["spliced", "dumped", "text"]))
    if kind == "text":
        return draw(st.text(max_size=60))
    if kind == "dumped":
        return yaml.safe_dump(draw(DOCUMENTS), sort_keys=False)
    text = VALID_YAML
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(text)))
        text = text[:position] + draw(YAML_PIECES) + text[position:]
    return text


@FUZZ
@given(text=policy_texts())
def test_policy_files_load_or_raise_policy_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_policy(path)
    except PolicyError as error:
        _one_line(str(error))


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True)
)
HOSTILE_YAML = {
    "list-as-key": "? [1, 2]\n: x\nversion: 1\n",
    "mapping-as-key": "? {a: 1}\n: x\n",
    "recursive-list": "version: 1\nname: &a [*a]\n",
    "recursive-mapping": "version: 1\nmodel: &a {path: *a}\n",
    "deep-nesting": "version: " + "[" * 3000 + "]" * 3000 + "\n",
    "billion-laughs": LAUGHS + "version: 1\nname: *i\n",
    "python-object": "version: !!python/object/apply:os.system ['true']\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_YAML))
def test_hostile_yaml_is_refused_quickly(tmp_path: Path, name: str) -> None:
    """Unhashable keys, self-referencing aliases, deep nesting and nested aliases (9^9 items
    if expanded) are one-line policy errors, within seconds of CPU."""
    path = tmp_path / "policy.yaml"
    path.write_text(HOSTILE_YAML[name], encoding="utf-8")
    # CPU time of this process, not wall time: a loaded machine stretches the wall clock (12 s
    # seen for deep nesting beside other test runs), never the work; expanded, the laughs would
    # take hours of CPU.
    start = time.process_time()
    with pytest.raises(PolicyError) as raised:
        load_policy(path)
    assert time.process_time() - start < 5.0
    _one_line(str(raised.value))


def test_the_valid_document_parses() -> None:
    """The fuzzer's starting point is itself valid (else every mutation is trivially refused)."""
    assert isinstance(parse_policy(copy.deepcopy(VALID), base_dir=BASE_DIR), Policy)


# --- .npz data --------------------------------------------------------------------------------

DTYPES = st.sampled_from(
    [
        "uint8", "int8", "int16", "int32", "int64", "uint16", "uint64",
        "float16", "float32", "float64", "complex64", "bool", "<U3", "S3", "datetime64[s]",
    ]
)  # fmt: skip


def _rarely(draw: st.DrawFn) -> bool:
    """True about one time in eight (hypothesis prefers small integers, so test for 7)."""
    return draw(st.integers(0, 7)) == 7


@st.composite
def arrays(draw: st.DrawFn, max_dims: int = 5) -> np.ndarray:
    """An array of any dtype and 0 to `max_dims` dimensions (sizes kept small), or an object
    array (which np.savez pickles)."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5))
    if _rarely(draw):
        return _object_array(shape)
    dtype = np.dtype(draw(DTYPES))
    return draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))


def _object_array(shape: tuple[int, ...]) -> np.ndarray:
    array = np.empty(shape, dtype=object)
    array.fill({"a": 1})
    return array


#: Hypothesis's float widths by item size, for the float dtypes drawn here (float16/32/64).
FLOAT_WIDTHS: dict[int, Literal[16, 32, 64]] = {2: 16, 4: 32, 8: 64}


def _elements(dtype: np.dtype[Any]) -> st.SearchStrategy[Any] | None:
    """Floats in 0..1 mostly, with NaN, infinities and huge values; integers mostly 0..255."""
    if dtype.kind == "f":
        width = FLOAT_WIDTHS[dtype.itemsize]
        return st.floats(0, 1, width=width) | st.floats(width=width)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return st.integers(0, min(255, int(info.max))) | st.integers(int(info.min), int(info.max))
    return None


IMAGE_DTYPES = st.sampled_from(
    ["uint8", "uint8", "float32", "float32", "float64", "float16", "int64", "int8", "uint16",
     "bool", "complex64"]
)  # fmt: skip


@st.composite
def image_like(draw: st.DrawFn) -> np.ndarray:
    """Mostly plausible images (N, H, W, C) or (N, C, H, W), some 5x5 RGB like the other
    side's; else anything."""
    if _rarely(draw):
        return draw(arrays())
    n = draw(st.integers(0, 6))
    channels = draw(st.sampled_from([3, 3, 3, 1, 4, 2, 5]))
    side = draw(st.sampled_from([5, 5, 5, 1, 4, 0]))
    dtype = np.dtype(draw(IMAGE_DTYPES))
    shape = (n, side, side, channels) if draw(st.booleans()) else (n, channels, side, side)
    return draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))


@st.composite
def label_like(draw: st.DrawFn, n: int) -> np.ndarray:
    """Mostly one small class index per image (any integer, bool or float dtype, (n,) or
    (n, 1)); else anything."""
    if _rarely(draw):
        return draw(arrays(max_dims=2))
    dtype = np.dtype(draw(st.sampled_from(["int64", "uint8", "bool", "float64", "int8"])))
    shape = draw(st.sampled_from([(n,), (n, 1)]))
    elements = st.integers(0, 3) if dtype.kind in "iu" else _elements(dtype)
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def data_files(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """The arrays of one .npz: images and labels under any of their names, one of them now
    and then missing, and now and then odd ids, membership and class names."""
    content: dict[str, np.ndarray] = {}
    images = draw(image_like())
    n = images.shape[0] if images.ndim else 0
    if not _rarely(draw):
        content[draw(st.sampled_from(["x", "images", "imgs"]))] = images
    if not _rarely(draw):
        content[draw(st.sampled_from(["y", "labels", "targets"]))] = draw(label_like(n))
    for key in ("ids", "membership", "class_names"):
        if _rarely(draw):
            content[key] = draw(side_field(n))
    return content


SIDE_DTYPES = st.sampled_from(["S4", "<U4", "int64", "bool", "float64", "complex64", "M8[s]"])


@st.composite
def side_field(draw: st.DrawFn, n: int) -> np.ndarray:
    """Ids, membership or class names: mostly one per image, of any dtype (bytes that are not
    UTF-8, dates, NaN, ...); else anything."""
    if _rarely(draw):
        return draw(arrays(max_dims=2))
    dtype = np.dtype(draw(SIDE_DTYPES))
    return draw(hnp.arrays(dtype, n, elements=_elements(dtype)))


def _save_npz(path: Path, content: dict[str, np.ndarray]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # allow_pickle (the default) is named so that mypy does not match the arrays against it
        np.savez(path, allow_pickle=True, **content)


def _other_side() -> ImageSet:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 5, 5, 3), dtype=np.uint8)
    return make_image_set(images, np.arange(6) % 2, source="data.non_members: other.npz")


OTHER = _other_side()


def _load_and_build(path: Path) -> None:
    """Load as members, then audit against a valid set on either side (with a population
    split off, as reference attacks ask); InputError is the only failure allowed."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy casts may warn; only exceptions matter
            loaded = load_image_set(path, allow_pickle=False, field="data.members")
            build_audit_set(loaded, OTHER, None, SamplingOptions(seed=0))
            build_audit_set(OTHER, loaded, None, SamplingOptions(seed=1, population_needed=2))
            build_audit_set(loaded, OTHER, loaded, SamplingOptions(seed=2, max_per_side=3))
    except InputError as error:
        _one_line(str(error))


@FUZZ
@given(content=data_files())
def test_npz_arrays_load_or_raise_input_error(tmp_path: Path, content: dict[str, Any]) -> None:
    path = tmp_path / "members.npz"
    _save_npz(path, content)
    _load_and_build(path)


@st.composite
def side_fields(draw: st.DrawFn) -> dict[str, np.ndarray]:
    """Valid images and labels with odd ids, membership and class names."""
    n = draw(st.integers(1, 5))
    content: dict[str, np.ndarray] = {"x": np.zeros((n, 5, 5, 3), np.uint8), "y": np.arange(n) % 2}
    for key in ("ids", "membership", "class_names"):
        if draw(st.booleans()):
            content[key] = draw(side_field(n))
    return content


@FUZZ
@given(content=side_fields())
def test_npz_side_fields_load_or_raise_input_error(tmp_path: Path, content: dict[str, Any]) -> None:
    path = tmp_path / "members.npz"
    _save_npz(path, content)
    _load_and_build(path)


def _valid_npz_bytes(compressed: bool) -> bytes:
    buffer = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    rng = np.random.default_rng(1)
    save(buffer, x=rng.integers(0, 256, (4, 4, 4, 3), dtype=np.uint8), y=np.arange(4) % 2)
    return buffer.getvalue()


VALID_NPZ = {False: _valid_npz_bytes(False), True: _valid_npz_bytes(True)}


@st.composite
def damaged_npz(draw: st.DrawFn) -> bytes:
    """A valid .npz (plain or compressed), truncated and/or with bytes overwritten."""
    data = bytearray(VALID_NPZ[draw(st.booleans())])
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data) - 1)) :]
    for _ in range(draw(st.integers(0, 6))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


@FUZZ
@given(data=damaged_npz())
def test_damaged_npz_files_load_or_raise_input_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "members.npz"
    path.write_bytes(data)
    _load_and_build(path)


@pytest.mark.parametrize("compressed", [False, True])
def test_undamaged_npz_loads(tmp_path: Path, compressed: bool) -> None:
    """The damage fuzzer's starting point loads (else every case is trivially refused)."""
    path = tmp_path / "members.npz"
    path.write_bytes(VALID_NPZ[compressed])
    assert len(load_image_set(path, allow_pickle=False, field="data.members")) == 4
