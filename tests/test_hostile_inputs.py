"""Every public entry point, driven with wrong types, shapes, dtypes, devices, None, NaN/Inf,
empty inputs and huge sizes: each raises a specific exception, none crashes the process."""

import numpy as np
import pytest
import torch
import ugatit_rs as ug
from ugatit_rs import demo, viz
from ugatit_rs.data import DomainLoader, load_image, prepare
from ugatit_rs.translate import Translator


@pytest.fixture(scope="module")
def g():
    return ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)


@pytest.fixture(scope="module")
def d():
    return ug.Discriminator(ndf=4, n_layers=5)


@pytest.fixture(scope="module")
def trainer():
    return ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu"))


HUGE = 10**12


def _diverged_trainer():
    tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=2, n_res=1, device="cpu"))
    with torch.no_grad():
        next(tr.dis_la.parameters()).fill_(float("inf"))
    return tr


x96 = torch.zeros(1, 3, 96, 96)

CASES = [
    # constructors
    ("Generator(ngf=-1)", lambda f: ug.Generator(ngf=-1), ValueError),
    ("Generator(ngf=str)", lambda f: ug.Generator(ngf="8"), TypeError),
    ("Generator(ngf=None)", lambda f: ug.Generator(ngf=None), TypeError),
    ("Generator(ngf=huge)", lambda f: ug.Generator(ngf=HUGE), ValueError),
    ("Generator(img_size=huge)", lambda f: ug.Generator(ngf=4, img_size=10**6), ValueError),
    ("Generator(device=[])", lambda f: ug.Generator(ngf=4, device=[]), ValueError),  # None: the default
    ("Generator(device=int-like str)", lambda f: ug.Generator(ngf=4, device="cuda:x"), ValueError),
    ("Discriminator(n_layers=100)", lambda f: ug.Discriminator(n_layers=100), ValueError),
    ("Discriminator(ndf=0)", lambda f: ug.Discriminator(ndf=0), ValueError),
    # forward
    ("g(None)", lambda f: f["g"](None), TypeError),
    ("g([])", lambda f: f["g"]([]), TypeError),
    ("g(ndarray)", lambda f: f["g"](np.zeros((1, 3, 96, 96), np.float32)), TypeError),
    ("g(empty batch)", lambda f: f["g"](torch.zeros(0, 3, 96, 96)), ValueError),
    ("g(int64)", lambda f: f["g"](torch.zeros(1, 3, 96, 96, dtype=torch.int64)), TypeError),
    ("g(complex)", lambda f: f["g"](torch.zeros(1, 3, 96, 96, dtype=torch.complex64)), TypeError),
    ("g(5-D)", lambda f: f["g"](torch.zeros(1, 1, 3, 96, 96)), ValueError),
    ("g(scalar)", lambda f: f["g"](torch.tensor(1.0)), ValueError),
    ("g(meta device)", lambda f: f["g"](torch.zeros(1, 3, 96, 96, device="meta")), ValueError),
    ("g(huge image)", lambda f: f["g"](torch.zeros(1).expand(1, 3, 10**6, 10**6)), MemoryError),
    ("d(too small)", lambda f: f["d"](torch.zeros(1, 3, 8, 8)), ValueError),
    ("d(wrong channels)", lambda f: f["d"](torch.zeros(1, 4, 96, 96)), ValueError),
    # state dicts and devices
    ("load_state_dict(None)", lambda f: f["g"].load_state_dict(None), TypeError),
    ("load_state_dict({})", lambda f: f["g"].load_state_dict({}), ug.StateDictError),
    ("load_state_dict({k: 1})", lambda f: f["g"].load_state_dict({"conv1x1.bias": 1}), TypeError),
    ("load_state_dict({1: t})", lambda f: f["g"].load_state_dict({1: torch.zeros(1)}, strict=False), TypeError),
    (
        "load_state_dict(NaN)",
        lambda f: f["g"].load_state_dict({"conv1x1.bias": torch.zeros(3)}, strict=False),
        ug.StateDictError,
    ),
    ("to(None)", lambda f: f["g"].to(None), ValueError),
    ("to('tpu')", lambda f: f["g"].to("tpu"), ValueError),
    # config and trainer
    ("TrainConfig(iteration=None)", lambda f: ug.TrainConfig(iteration=None), TypeError),
    ("TrainConfig(lr='1')", lambda f: ug.TrainConfig(lr="1"), TypeError),
    ("TrainConfig(seed=-1)", lambda f: ug.TrainConfig(seed=-1), ValueError),
    ("Trainer(None)", lambda f: ug.Trainer(None), TypeError),
    ("Trainer(ch=huge)", lambda f: ug.Trainer(ug.TrainConfig(device="cpu", ch=HUGE)), ValueError),
    ("Trainer(inf lr)", lambda f: ug.Trainer(ug.TrainConfig(device="cpu", lr=float("inf"))), ValueError),
    ("step(None, x)", lambda f: f["trainer"].step(None, x96), TypeError),
    ("step(x, [])", lambda f: f["trainer"].step(x96, []), TypeError),
    # Refused before the step (it used to run and write NaN into every weight).
    ("step(NaN batch)", lambda f: f["trainer"].step(torch.full((1, 3, 96, 96), float("nan")), x96), ValueError),
    ("step(Inf batch)", lambda f: f["trainer"].step(x96, torch.full((1, 3, 96, 96), float("inf"))), ValueError),
    ("step(0..255 batch)", lambda f: f["trainer"].step(x96 + 255, x96), ValueError),
    ("step(wrong size)", lambda f: f["trainer"].step(torch.zeros(1, 3, 100, 100), x96), ValueError),
    ("load_checkpoint(None)", lambda f: f["trainer"].load_checkpoint(None), TypeError),
    ("load_checkpoint('')", lambda f: f["trainer"].load_checkpoint(""), FileNotFoundError),
    ("load_checkpoint(folder)", lambda f: f["trainer"].load_checkpoint(f["tmp"]), OSError),
    (
        "save_checkpoint(diverged)",
        lambda f: _diverged_trainer().save_checkpoint(f["tmp"] + "/x.safetensors"),
        FloatingPointError,
    ),
    (
        "save_checkpoint(into a file)",
        lambda f: ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=2, n_res=1, device="cpu")).save_checkpoint(
            f["file"] + "/x.safetensors"
        ),
        OSError,
    ),
    # data
    ("DomainLoader(None)", lambda f: DomainLoader(None, 96), TypeError),
    ("DomainLoader('')", lambda f: DomainLoader("", 96), FileNotFoundError),
    ("DomainLoader(size=0)", lambda f: DomainLoader(f["tmp"], 0), ValueError),
    ("DomainLoader(size=huge)", lambda f: DomainLoader(f["tmp"], HUGE), ValueError),
    ("DomainLoader(batch=huge)", lambda f: DomainLoader(f["tmp"], 96, batch_size=10**9), ValueError),
    # The ValueError cases here raised a bare OverflowError ("can't convert negative int to unsigned").
    ("DomainLoader(seed=-1)", lambda f: DomainLoader(f["tmp"], 96, seed=-1), ValueError),
    ("DomainLoader(domain=-1)", lambda f: DomainLoader(f["tmp"], 96, domain=-1), ValueError),
    ("DomainLoader(seed=float)", lambda f: DomainLoader(f["tmp"], 96, seed=1.5), TypeError),
    ("demo.demo_image(seed=-1)", lambda f: demo.demo_image("A", seed=-1), ValueError),
    ("demo.demo_image(index=2**64)", lambda f: demo.demo_image("A", index=2**64), ValueError),
    ("load_image(None)", lambda f: load_image(None, 96), TypeError),
    ("load_image(size=0)", lambda f: load_image(f["file"], 0), ValueError),
    ("load_image(not an image)", lambda f: load_image(f["file"], 96), OSError),
    ("prepare(None)", lambda f: prepare(None, f["tmp"]), TypeError),
    ("prepare(size=0)", lambda f: prepare(f["tmp"], f["tmp"] + "/out", size=0, progress=False), ValueError),
    # translate, demo, viz
    ("Translator(None)", lambda f: Translator.from_checkpoint(None), TypeError),
    ("Translator(direction)", lambda f: Translator.from_checkpoint("x.safetensors", direction="A2C"), ValueError),
    # Before: accepted, and every image then failed ("multiples of 4"; the full model's dense layers).
    (
        "Translator(light, 97)",
        lambda f: Translator(ug.Generator(ngf=2, n_blocks=1, img_size=96, light=True), 97),
        ValueError,
    ),
    ("Translator(full, 128)", lambda f: Translator(ug.Generator(ngf=2, n_blocks=1, img_size=96), 128), ValueError),
    (
        "Translator(missing file)",
        lambda f: Translator.from_checkpoint(f["tmp"] + "/none.safetensors"),
        FileNotFoundError,
    ),
    ("demo.scores(2-D)", lambda f: demo.scores(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8)), ValueError),
    ("demo.demo_image('C')", lambda f: demo.demo_image("C"), ValueError),
    ("viz.heatmap_image(empty)", lambda f: viz.heatmap_image(torch.zeros(0), 32), ValueError),
    ("viz.heatmap_image(None)", lambda f: viz.heatmap_image(None, 32), ValueError),
    # Before: torch's "Input and output sizes should be greater than 0", or a 4 TB allocation.
    ("viz.heatmap_image(size=0)", lambda f: viz.heatmap_image(torch.zeros(1, 1, 4, 4), 0), ValueError),
    ("viz.heatmap_image(size=huge)", lambda f: viz.heatmap_image(torch.zeros(1, 1, 4, 4), 10**6), ValueError),
    # Before: "permute(sparse_coo): number of dimensions ..."; a float image was taken as 0..255.
    ("viz.from_image(gray)", lambda f: viz.from_image(np.zeros((8, 8), np.uint8)), ValueError),
    ("viz.from_image(float)", lambda f: viz.from_image(np.zeros((8, 8, 3))), ValueError),
    (
        "viz.overlay(alpha=5)",
        lambda f: viz.overlay(np.zeros((8, 8, 3), np.uint8), torch.zeros(1, 1, 4, 4), 5),
        ValueError,
    ),
    ("viz.loss_curves(no such key)", lambda f: viz.loss_curves([{"step": 1, "d_loss": 1.0}], keys=("zz",)), ValueError),
    (
        "viz.loss_curves(smooth=0)",
        lambda f: viz.loss_curves([{"step": 1, "d_loss": 1.0, "g_loss": 1.0}], smooth=0),
        ValueError,
    ),
    # Before: the process aborted ("memory allocation of 30000000000 bytes failed").
    ("demo.demo_image(size=huge)", lambda f: demo.demo_image("A", 100_000), ValueError),
    ("demo.demo_image(size=0)", lambda f: demo.demo_image("A", 0), ValueError),
    # Before: a bare OverflowError ("out of range integral type conversion attempted").
    ("demo.demo_image(size=-1)", lambda f: demo.demo_image("A", -1), ValueError),
    ("demo.write_dataset(n_test=-1)", lambda f: demo.write_dataset(f["tmp"] + "/d", n_test=-1), ValueError),
    ("demo.write_dataset(size=huge)", lambda f: demo.write_dataset(f["tmp"] + "/d", size=100_000), ValueError),
    ("demo.write_dataset(n_train=0)", lambda f: demo.write_dataset(f["tmp"] + "/d", n_train=0), ValueError),
]


@pytest.mark.parametrize("name,call,expected", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_raises_a_specific_exception(name, call, expected, g, d, trainer, tmp_path):
    (tmp_path / "img.png").write_text("not an image")
    fixtures = {"g": g, "d": d, "trainer": trainer, "tmp": str(tmp_path), "file": str(tmp_path / "img.png")}
    with pytest.raises(expected) as info:
        call(fixtures)
    assert type(info.value).__name__ != "PanicException"
    assert str(info.value), "the message must say what is wrong"


def test_an_out_of_range_seed_or_index_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"^seed must be between 0 and 18446744073709551615, got -1$"):
        DomainLoader(str(tmp_path), 96, seed=-1)
    with pytest.raises(ValueError, match=r"^index must be between 0 and"):
        demo.demo_image("A", index=-3)
    with pytest.raises(TypeError, match=r"argument 'seed': expected an int, got float"):
        demo.demo_image("A", seed=0.5)


def test_a_bool_or_str_argument_is_refused_in_python_words(tmp_path):
    # Before: "argument 'light': 'str' object cannot be converted to 'PyBool'" (PyO3's type name).
    with pytest.raises(TypeError, match=r"^argument 'light': expected True or False, got 'no'$"):
        ug.Generator(ngf=4, n_blocks=1, img_size=96, light="no")
    with pytest.raises(TypeError, match=r"^argument 'train': expected True or False, got 1$"):
        DomainLoader(str(tmp_path), 96, train=1)
    with pytest.raises(TypeError, match=r"^argument 'channels_last': expected True or False, got None$"):
        with ug.compute(channels_last=None):
            pass
    assert ug.Generator(ngf=4, n_blocks=1, img_size=96, light=np.bool_(True)).config["light"] is True
    # Before: "argument 'variant': 'int' object cannot be converted to 'PyString'".
    with pytest.raises(TypeError, match=r"^argument 'variant': expected a str, got int$"):
        ug.Discriminator(ndf=4, n_layers=5, variant=1)
    with pytest.raises(TypeError, match=r"^argument 'domain': expected a str, got NoneType$"):
        demo.demo_image(None)
    with pytest.raises(TypeError, match=r"^argument 'resize': expected a str, got int$"):
        DomainLoader(str(tmp_path), 96, resize=3)
