"""The cache is a speed-up, never a source of truth, through `mia-audit run` on the overfit
digits target.

The target's cached logits shuffled within each class (with a consistent integrity record, as
a tamperer would write it) would turn the honest FAIL into a PASS; the spot check refuses them
and the FAIL stands, with a note. Damaged entries (truncated, bit-flipped, without a record,
of the wrong shape) are misses with a note, and the run after is clean. In every case the
result is the honest one.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from mia_audit.attacks import signals
from mia_audit.attacks.queries import IDENTITY, View
from mia_audit.evaluation import metrics
from mia_audit.models.engine import EngineKey
from mia_audit.models.inference import LogitsRequest
from mia_audit.pipeline.inputs import load_audit_data
from mia_audit.pipeline.target import preprocessor
from mia_audit.policy.loading import load_policy
from mia_audit.store.cache import ContentStore, entry_key, logits_store, record_path
from mia_audit.store.hashing import arrays_sha256, file_sha256
from tests.conftest import DigitsTarget, RunCli, notes_besides_outputs, without_keys

GATE_AUC = 0.6
POLICY = {
    "version": 1,
    "name": "cache-trust",
    "model": {"path": "target.pt", "architecture": "resnet18", "num_classes": 10},
    "data": {"members": "members.npz", "non_members": "non_members.npz"},
    "preprocessing": {"mean": [0.2, 0.2, 0.2], "std": [0.3, 0.3, 0.3]},
    "attacks": ["loss", {"name": "logit_margin", "queries": 2}],
    "statistics": {"n_resamples": 100},
    "gate": {"max_auc": GATE_AUC},
    "outputs": {"dir": "report", "formats": ["json"]},
    "runtime": {"device": "cpu", "seed": 0, "cache_dir": ".mia-cache"},
}
MIRROR = View(mirror=True)
#: Keys of result.json that legitimately differ between runs (and the notes this test reads).
VARYING = frozenset({"seconds", "timings", "evaluated_on", "notes"})


@dataclass(frozen=True)
class Audited:
    """The target audited once with an empty cache; the cache it left is kept aside."""

    folder: Path
    policy: Path
    exit_code: int
    result: dict[str, Any]

    def restore_cache(self) -> None:
        shutil.rmtree(self.folder / ".mia-cache", ignore_errors=True)
        shutil.copytree(self.folder / "honest-cache", self.folder / ".mia-cache")

    def cache(self) -> ContentStore[np.ndarray]:
        return logits_store(self.folder / ".mia-cache")

    def key(self, view: View) -> str:
        """The cache key of the target's logits on the audit set for one view."""
        loaded = load_policy(self.policy)
        audit_set = load_audit_data(loaded.policy).audit_set
        request = LogitsRequest(
            model_sha256=file_sha256(self.folder / "target.pt"),
            data_sha256=arrays_sha256(audit_set.images),
            preprocess=preprocessor(loaded.policy),
            engine=EngineKey("torch", "cpu"),
        )
        return entry_key("logits", request.key_parts(view))

    def labels_and_membership(self) -> tuple[np.ndarray, np.ndarray]:
        audit_set = load_audit_data(load_policy(self.policy).policy).audit_set
        return audit_set.labels, audit_set.is_member


@pytest.fixture(scope="module")
def audited(
    digits_target: DigitsTarget, tmp_path_factory: pytest.TempPathFactory, run_cli: RunCli
) -> Audited:
    folder = digits_target.copy_to(tmp_path_factory.mktemp("cache-trust") / "t")
    policy = folder / "policy-cache.yaml"
    policy.write_text(yaml.safe_dump(POLICY, sort_keys=False), encoding="utf-8")
    completed = run_cli("run", policy)
    assert "Traceback" not in completed.stderr and "cache:" not in completed.stderr
    shutil.copytree(folder / ".mia-cache", folder / "honest-cache")
    result = json.loads((folder / "report" / "result.json").read_text())
    return Audited(folder, policy, completed.returncode, result)


def run(audited: Audited, run_cli: RunCli) -> tuple[int, str, dict[str, Any]]:
    completed = run_cli("run", audited.policy)
    assert "Traceback" not in completed.stderr, completed.stderr
    result = json.loads((audited.folder / "report" / "result.json").read_text())
    return completed.returncode, completed.stderr, result


def without_varying(value: Any) -> Any:
    return without_keys(value, VARYING)


def assert_same_audit(result: dict[str, Any], honest: dict[str, Any]) -> None:
    """Same attacks, figures, verdict and exit code as the honest run (bar timings, notes)."""
    # result.json's own sha256 covers the timings and notes too, so it differs with them.
    result, honest = (
        without_varying({k: v for k, v in document.items() if k != "sha256"})
        for document in (result, honest)
    )
    for key in honest:  # one key at a time, for a readable failure
        assert result[key] == honest[key], key
    assert result == honest


def cache_notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note: cache:")]


def test_the_honest_audit_fails_the_gate(audited: Audited) -> None:
    assert audited.exit_code == 1
    assert audited.result["attacks"][0]["auc"] > GATE_AUC
    assert notes_besides_outputs(audited.result) == []


def test_logits_shuffled_within_each_class_are_refused_and_the_fail_stands(
    audited: Audited, run_cli: RunCli
) -> None:
    audited.restore_cache()
    cache = audited.cache()
    key = audited.key(IDENTITY)
    honest_logits = cache.get(key)
    assert honest_logits is not None
    labels, is_member = audited.labels_and_membership()
    shuffled = honest_logits.copy()
    rng = np.random.default_rng(0)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        shuffled[rows] = honest_logits[rng.permutation(rows)]
    cache.put(key, shuffled)  # with a record that matches: checksums cannot tell
    loss_auc = metrics.auc(is_member, -signals.cross_entropy(shuffled, labels))
    assert loss_auc < GATE_AUC  # used as is, the tampered entry would turn FAIL into PASS

    code, stderr, result = run(audited, run_cli)
    assert code == audited.exit_code == 1
    (note,) = cache_notes(stderr)
    expected = (
        r"note: cache: the target's logits on the audit set \(view identity\) disagrees with "
        r"the model on (\d+) of 128 re-computed samples \(largest difference [\d.]+, allowed "
    )
    match = re.match(expected, note)
    assert match and int(match[1]) > 64, note  # rows a permutation left in place agree
    assert note.endswith(f"not used, recomputed ({cache.path(key)})")
    assert notes_besides_outputs(result) == [note.removeprefix("note: ")]
    assert_same_audit(result, audited.result)
    np.testing.assert_array_equal(cache.get(key), honest_logits)  # overwritten

    code, stderr, result = run(audited, run_cli)
    assert code == 1 and cache_notes(stderr) == [] and notes_besides_outputs(result) == []
    assert_same_audit(result, audited.result)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-50] ^= 0x01
    path.write_bytes(bytes(data))


def drop_record(path: Path) -> None:
    record_path(path).unlink()


Damage = Callable[[Path], None]
#: Two damages per run (one per cached view) and what their notes say.
DAMAGES: dict[str, tuple[tuple[Damage, str], tuple[Damage, str]]] = {
    "truncated and bit-flipped": (
        (truncate, "does not match its integrity record (sha256 differs: damaged or edited)"),
        (flip_a_bit, "does not match its integrity record (sha256 differs: damaged or edited)"),
    ),
    "no record and a wrong shape": (
        (drop_record, "has no integrity record"),
        (lambda path: None, "holds an array of shape (400,), not (400, classes) logits"),
    ),
}


@pytest.mark.parametrize("case", sorted(DAMAGES))
def test_damaged_logits_are_recomputed_and_the_next_run_is_clean(
    audited: Audited, run_cli: RunCli, case: str
) -> None:
    audited.restore_cache()
    cache = audited.cache()
    (identity_damage, identity_reason), (mirror_damage, mirror_reason) = DAMAGES[case]
    if "shape" in mirror_reason:  # a consistent record of an array that cannot be logits
        cache.put(audited.key(MIRROR), np.zeros(400, np.float32))
    identity_damage(cache.path(audited.key(IDENTITY)))
    mirror_damage(cache.path(audited.key(MIRROR)))

    code, stderr, result = run(audited, run_cli)
    assert code == audited.exit_code
    notes = cache_notes(stderr)
    assert len(notes) == 2, stderr
    assert identity_reason in notes[0] and "(view identity)" in notes[0]
    assert mirror_reason in notes[1] and "(view mirror=1,dy=0,dx=0)" in notes[1]
    assert all("not used, recomputed" in note for note in notes)
    assert notes_besides_outputs(result) == [note.removeprefix("note: ") for note in notes]
    assert_same_audit(result, audited.result)

    code, stderr, result = run(audited, run_cli)  # a damaged entry never fails a later run
    assert (
        code == audited.exit_code
        and cache_notes(stderr) == []
        and notes_besides_outputs(result) == []
    )
    assert_same_audit(result, audited.result)
