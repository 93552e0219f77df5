"""Each layer/training example runs in its quick version and writes what it promises."""
import importlib.util
import pathlib

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def load(name):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cnn_digits_quick(tmp_path):
    assert load("cnn_digits").main(out=tmp_path, quick=True) > 0.5
    assert (tmp_path / "cnn_step.py").exists()


def test_resnet_block_quick(tmp_path):
    assert 0.0 <= load("resnet_block").main(out=tmp_path, quick=True) <= 1.0  # a few steps: running statistics barely warm
    assert (tmp_path / "resnet.dot").exists()


def test_unet_shapes_quick(tmp_path):
    assert 0.0 <= load("unet_shapes").main(out=tmp_path, quick=True) <= 1.0
    assert (tmp_path / "unet_shapes.png").exists()


def test_unet_shapes_iou_of_known_masks():
    module = load("unet_shapes")
    _, masks = module.shapes_dataset(4, size=16)
    assert module.iou(masks, masks) == 1.0
    assert module.iou(masks, 1 - masks) == 0.0


def test_vanishing_gradient_quick(tmp_path):
    norms, _ = load("vanishing_gradient").main(out=tmp_path, quick=True)
    sigmoid, relu = norms["sigmoid"], norms["relu"]
    assert sigmoid[0] / sigmoid[-1] < 1e-3  # vanishes towards the input
    assert relu[0] / relu[-1] > 0.1  # and does not with ReLU
    assert (tmp_path / "vanishing_gradient.png").exists()


def test_optimizers_quick(tmp_path):
    final = load("optimizers").main(out=tmp_path, quick=True)
    assert set(final) == {"SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam"}
    assert all(v < 2.0 for v in final.values())
    assert (tmp_path / "optimizers.png").exists()


def test_weight_sharing():
    r = load("weight_sharing").main(quick=True)
    assert r["dense_params"] > 1000 * r["conv_params"]
    assert r["peak_moved_by"] == (2, 3)
    assert r["equivariance_error"] < 1e-6 < r["map_change"]
    assert r["pooled_change"] < 1e-6


@pytest.mark.parametrize("name", ["cnn", "resnet", "unet"])
def test_model_builders(name):
    import graphgrad as gg

    g, loss, out = gg.models.MODELS[name]()
    assert loss.shape == () and out.graph is g
