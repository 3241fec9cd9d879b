"""Bad input gives a specific Python exception naming the problem, never a crash."""

import pytest
import torch
import ugatit_rs as ug
from conftest import generator_pair


@pytest.fixture(scope="module")
def light_g():
    return ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)


@pytest.fixture(scope="module")
def full_g():
    return ug.Generator(ngf=4, n_blocks=1, img_size=96, light=False)


def test_wrong_channel_count(light_g):
    with pytest.raises(ValueError, match="3 input channels, got 1"):
        light_g(torch.zeros(1, 1, 96, 96))


def test_wrong_rank(light_g):
    with pytest.raises(ValueError, match="4-D"):
        light_g(torch.zeros(3, 96, 96))


def test_full_mode_needs_its_img_size(full_g):
    with pytest.raises(ValueError, match="img_size=96"):
        full_g(torch.zeros(1, 3, 128, 128))


def test_light_mode_needs_multiples_of_four(light_g):
    with pytest.raises(ValueError, match="multiples of 4"):
        light_g(torch.zeros(1, 3, 98, 98))
    assert light_g(torch.zeros(1, 3, 128, 64))[0].shape == (1, 3, 128, 64)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.float64, torch.float16, torch.bool])
def test_non_float32_dtype(light_g, dtype):
    with pytest.raises(TypeError, match="float32"):
        light_g(torch.zeros(1, 3, 96, 96, dtype=dtype))


def test_not_a_tensor(light_g):
    import numpy as np

    with pytest.raises(TypeError, match="torch.Tensor"):
        light_g(np.zeros((1, 3, 96, 96), dtype=np.float32))
    with pytest.raises(TypeError):
        light_g(None)


def test_tensor_on_another_device(light_g):
    with pytest.raises(ValueError, match="meta"):
        light_g(torch.zeros(1, 3, 96, 96, device="meta"))


def test_empty_batch(light_g):
    with pytest.raises(ValueError, match="empty batch"):
        light_g(torch.zeros(0, 3, 96, 96))


def test_bad_configs():
    with pytest.raises(ValueError, match="img_size"):
        ug.Generator(ngf=4, n_blocks=1, img_size=130)
    with pytest.raises(ValueError, match="ngf"):
        ug.Generator(ngf=0)
    with pytest.raises(ValueError, match="n_layers"):
        ug.Discriminator(ndf=4, n_layers=2)
    with pytest.raises(ValueError, match="unknown device"):
        ug.Generator(ngf=4, n_blocks=1, img_size=96, device="tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_requested_without_cuda():
    with pytest.raises(ValueError, match="CUDA is not available"):
        ug.Generator(ngf=4, n_blocks=1, img_size=96, device="cuda")


def test_discriminator_too_deep_for_image():
    d = ug.Discriminator(ndf=4, n_layers=7)
    assert d.min_input_size() == 96
    with pytest.raises(ValueError, match="at least 96x96"):
        d(torch.zeros(1, 3, 64, 64))
    local = ug.Discriminator(ndf=4, n_layers=5)
    assert local(torch.zeros(1, 3, 64, 64))[0].shape == (1, 1, 6, 6)


def test_load_state_dict_reports_every_bad_key():
    ref, ours = generator_pair(True, 96, 1)
    before = {k: v.clone() for k, v in ours.state_dict().items()}
    sd = dict(ref.state_dict())
    del sd["gap_fc.weight"]
    sd["not.a.key"] = torch.zeros(1)
    sd["FC.0.weight"] = torch.zeros(5, 5)
    with pytest.raises(ug.StateDictError) as info:
        ours.load_state_dict(sd)
    message = str(info.value)
    assert "gap_fc.weight" in message and "missing" in message
    assert "not.a.key" in message and "unexpected" in message
    assert "FC.0.weight" in message and "[5, 5]" in message
    assert isinstance(info.value, ValueError)
    # Nothing was copied: the network is unchanged.
    for k, v in ours.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_load_state_dict_non_strict_and_bad_values():
    ref, ours = generator_pair(True, 96, 1)
    sd = dict(ref.state_dict())
    del sd["gap_fc.weight"]
    sd["extra"] = torch.zeros(1)
    result = ours.load_state_dict(sd, strict=False)
    assert result.missing_keys == ["gap_fc.weight"] and result.unexpected_keys == ["extra"]
    with pytest.raises(TypeError, match="'conv1x1.bias' is not a torch.Tensor"):
        ours.load_state_dict({"conv1x1.bias": [1.0, 2.0]}, strict=False)
    with pytest.raises(ug.StateDictError, match="conv1x1.bias: expected a floating-point"):
        ours.load_state_dict({"conv1x1.bias": torch.zeros(32, dtype=torch.int64)}, strict=False)
    with pytest.raises(TypeError, match="mapping"):
        ours.load_state_dict([("a", torch.zeros(1))])


def test_a_dataset_path_that_is_not_a_dataset_says_what_it_is(tmp_path):
    # Before: `--dataset ds/trainA` said "ds/trainA/trainA: folder not found", a file
    # "x.png/trainA: folder not found", and an empty one "trainA: folder not found".
    from ugatit_rs.data import check_dataset

    (tmp_path / "ds" / "trainA").mkdir(parents=True)
    (tmp_path / "x.png").write_bytes(b"")
    for dataset, message in (
        (
            tmp_path / "ds" / "trainA",
            r"trainA/trainA: folder not found .*; .*trainA is one of them: give the folder above it, .*/ds$",
        ),
        (tmp_path / "x.png", r"x.png: not a folder \(a dataset is a folder holding trainA, trainB, testA, testB\)"),
        (tmp_path / "missing", r"missing: no such folder"),
        ("", r"^no dataset given"),
        (tmp_path / "ds", r"ds/trainA: no images"),  # a real dataset folder: its missing part is named
    ):
        with pytest.raises(FileNotFoundError, match=message):
            check_dataset(dataset)
