"""Model loaders on real model files: TorchScript, state dicts, factories, pickles, ONNX."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mia_audit.attacks.queries import IDENTITY, enumerate_views
from mia_audit.demo import export_onnx
from mia_audit.errors import InputError
from mia_audit.models.architectures import build_architecture
from mia_audit.models.engine import EngineKey
from mia_audit.models.inference import LogitsRequest, Preprocessor, cached_predict
from mia_audit.models.loading import load_target
from mia_audit.models.settings import ModelSpec
from mia_audit.store.cache import logits_store

BATCH = np.random.default_rng(0).normal(size=(4, 3, 32, 32)).astype(np.float32)


def spec(path: Path, **fields: object) -> ModelSpec:
    return ModelSpec.model_validate({"path": path, **fields})


@pytest.fixture(scope="module")
def resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_architecture("resnet18", 10).eval()


def eager_logits(module: torch.nn.Module) -> np.ndarray:
    with torch.inference_mode():
        logits: torch.Tensor = module(torch.from_numpy(BATCH))
        return logits.numpy()


def test_state_dict_with_architecture(tmp_path: Path, resnet: torch.nn.Module) -> None:
    torch.save(resnet.state_dict(), tmp_path / "m.pt")
    loaded = load_target(spec(tmp_path / "m.pt", architecture="resnet18", num_classes=10), "cpu")
    assert loaded.format == "state_dict"
    np.testing.assert_allclose(loaded.classifier(BATCH), eager_logits(resnet), atol=1e-5)


def test_state_dict_without_architecture_is_refused(
    tmp_path: Path, resnet: torch.nn.Module
) -> None:
    torch.save(resnet.state_dict(), tmp_path / "m.pt")
    with pytest.raises(InputError, match=r"model\.architecture"):
        load_target(spec(tmp_path / "m.pt"), "cpu")


def test_torchscript(tmp_path: Path, resnet: torch.nn.Module) -> None:
    traced = torch.jit.trace(resnet, torch.from_numpy(BATCH))  # type: ignore[no-untyped-call]
    torch.jit.save(traced, str(tmp_path / "m.pt"))
    loaded = load_target(spec(tmp_path / "m.pt"), "cpu")
    assert loaded.format == "torchscript"
    np.testing.assert_allclose(loaded.classifier(BATCH), eager_logits(resnet), atol=1e-5)


def test_cifar_stem_and_other_torchvision_models(tmp_path: Path) -> None:
    cifar = build_architecture("resnet18", 10, cifar_stem=True)
    stem = cifar.conv1
    assert isinstance(stem, torch.nn.Conv2d)
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert isinstance(cifar.maxpool, torch.nn.Identity)
    mobile = build_architecture("mobilenet_v3_small", 7)
    torch.save(mobile.state_dict(), tmp_path / "mobile.pt")
    loaded = load_target(spec(tmp_path / "mobile.pt", architecture="mobilenet_v3_small"), "cpu")
    assert loaded.classifier(BATCH).shape == (4, 7)
    with pytest.raises(InputError, match="did you mean 'resnet18'"):
        build_architecture("resnet81", 10)


FACTORY = """
import torch

def tiny(num_classes):
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(4, num_classes),
    )
"""


def test_user_factory_is_recorded(tmp_path: Path) -> None:
    (tmp_path / "my_models_factory.py").write_text(FACTORY)
    module = build_architecture("my_models_factory:tiny", 5, search_path=tmp_path)
    torch.save(module.state_dict(), tmp_path / "tiny.pt")
    loaded = load_target(
        spec(tmp_path / "tiny.pt", architecture="my_models_factory:tiny", num_classes=5),
        "cpu",
        search_path=tmp_path,
    )
    assert loaded.factory == "my_models_factory:tiny"
    assert loaded.classifier(BATCH).shape == (4, 5)


def test_pickled_module_needs_allow_pickle(tmp_path: Path, resnet: torch.nn.Module) -> None:
    torch.save(resnet, tmp_path / "whole.pt")
    with pytest.raises(InputError, match=r"model\.allow_pickle"):
        load_target(spec(tmp_path / "whole.pt"), "cpu")
    loaded = load_target(spec(tmp_path / "whole.pt", allow_pickle=True), "cpu")
    np.testing.assert_allclose(loaded.classifier(BATCH), eager_logits(resnet), atol=1e-5)


def test_onnx_matches_torch(tmp_path: Path, resnet: torch.nn.Module) -> None:
    export_onnx(resnet, tmp_path / "m.onnx", 32)
    loaded = load_target(spec(tmp_path / "m.onnx"), "cpu")
    assert loaded.format == "onnx" and loaded.classifier.device == "cpu"
    np.testing.assert_allclose(loaded.classifier(BATCH), eager_logits(resnet), atol=1e-4)


class CountingClassifier:
    """The real classifier, counting the images it is asked to classify."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.images = 0
        self.engine = "torch"
        self.device = "cpu"
        self.fixed_batch_size = None

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.images += len(batch)
        return self.inner(batch)  # type: ignore[operator,no-any-return]


def test_logits_cache_hits_on_second_run(tmp_path: Path, resnet: torch.nn.Module) -> None:
    torch.save(resnet.state_dict(), tmp_path / "m.pt")
    loaded = load_target(spec(tmp_path / "m.pt", architecture="resnet18"), "cpu")
    images = np.random.default_rng(1).integers(0, 256, (6, 3, 32, 32), dtype=np.uint8)
    views = enumerate_views(True, 0)
    request = LogitsRequest(
        "m", "d", Preprocessor((0.5,) * 3, (0.25,) * 3), EngineKey("torch", "cpu")
    )
    counting = CountingClassifier(loaded.classifier)
    cache = logits_store(tmp_path / "cache")
    first = cached_predict(cache, request, counting, images, views, 4)  # type: ignore[arg-type]
    assert counting.images >= 12
    counted = counting.images
    second = cached_predict(cache, request, counting, images, views, 4, check_rows=2)  # type: ignore[arg-type]
    assert counting.images == counted + 2 * len(views)  # only the spot check's 2 rows per view
    assert cache.refused == [] and cache.hits == len(views)
    np.testing.assert_array_equal(first, second)
    assert first.shape == (2, 6, 10) and views[0] == IDENTITY
