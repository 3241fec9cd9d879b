"""ug.Generator and ug.Discriminator are real torch.nn.Modules whose registered parameters and
buffers are the very tensors the Rust networks compute with."""

import ast
import inspect
import os

import pytest
import torch
import ugatit_rs as ug
from conftest import generator_pair


class WithHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.generator = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
        self.head = torch.nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x):
        return self.head(self.generator(x)[0])


def test_a_containing_module_trains_the_rust_network_end_to_end():
    torch.manual_seed(0)
    model = WithHead()
    names = [n for n, _ in model.named_parameters()]
    assert "generator.DownBlock.1.weight" in names and "head.weight" in names
    assert len(names) == len(list(model.generator.parameters())) + 2
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    for _ in range(2):
        opt.zero_grad()
        model(x).pow(2).mean().backward()
        opt.step()
    changed = [n for n, p in model.named_parameters() if not torch.equal(before[n], p)]
    assert "generator.UpBlock2.11.weight" in changed and "head.weight" in changed
    # The Rust forward computes with what the optimizer updated: same tensors, not copies.
    native = dict((n, t) for n, t, _ in model.generator._native.named_tensors())
    for name, p in model.generator.named_parameters():
        assert native[name] is p and isinstance(p, torch.nn.Parameter)


def test_state_dict_nests_the_official_keys_in_order():
    ref, ours = generator_pair(light=True, img_size=96, n_blocks=2)
    model = torch.nn.ModuleDict({"g": ours})
    assert list(model.state_dict()) == ["g." + k for k in ref.state_dict()]
    d = ug.Discriminator(ndf=4, n_layers=5)
    seq = torch.nn.Sequential(d)
    assert [k.removeprefix("0.") for k in seq.state_dict()] == [n for n, _, _ in d._native.named_tensors()]
    assert {k for k, _ in d.named_buffers()} == {n for n, _, p in d._native.named_tensors() if not p}
    # Loading through the parent copies into the live tensors.
    sd = {k: torch.randn_like(v) for k, v in model.state_dict().items()}
    model.load_state_dict(sd)
    assert torch.equal(ours.state_dict()["FC.0.weight"], sd["g.FC.0.weight"])


def test_to_train_and_eval_from_a_parent_reach_the_rust_network():
    model = WithHead()
    model.eval()
    assert model.generator.training is False and model.generator._native.training is False
    model.train()
    assert model.generator._native.training is True
    model.to("cpu")
    model.to(torch.float32)
    assert model.generator.device == torch.device("cpu")
    with pytest.raises(TypeError, match="float32"):
        model.double()
    if torch.cuda.is_available():
        model.cuda()
        assert model.generator._native.device.startswith("cuda")
        assert next(model.generator.parameters()).is_cuda


def test_devices_as_torch_spells_them():
    """device=None is torch's default device, as for torch.nn layers, and torch.device("cpu", 0)
    ("cpu:0") is the CPU: both were "unknown device"."""
    from ugatit_rs.cyclegan import ResnetGenerator

    assert ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True, device=None).device == torch.device("cpu")
    assert ResnetGenerator(ngf=4, n_blocks=1, device=None).device == torch.device("cpu")
    d = ug.Discriminator(ndf=4, n_layers=5, device=torch.device("cpu", 0))
    assert d.device == torch.device("cpu") and d.to("cpu:0").device == torch.device("cpu")
    assert ug.TrainConfig(device="cpu:0").device == "cpu:0"
    with pytest.raises(ValueError, match="cpu:1"):
        ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True, device="cpu:1")


def test_hooks_and_sequential_work():
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    seen = []
    g.register_forward_hook(lambda module, args, out: seen.append(out[0].shape))
    seq = torch.nn.Sequential(g)
    seq(torch.zeros(1, 3, 96, 96))
    assert seen == [torch.Size([1, 3, 96, 96])]


def test_torch_jit_script_says_to_trace_instead():
    # Before: "ValueError: Unknown type annotation: '_native.Network'", from TorchScript's compiler.
    from ugatit_rs.cyclegan import ResnetGenerator

    g = ug.Generator(ngf=4, n_blocks=1, img_size=32, light=True)
    parent = torch.nn.Sequential(g, torch.nn.Identity())
    networks = (g, parent, ResnetGenerator(ngf=4, n_blocks=1), ug.Discriminator(ndf=4, n_layers=5))
    for network, named, hint in zip(
        networks, ("Generator", "Generator", "ResnetGenerator", "Discriminator"), (1, 1, 1, 0)
    ):
        with pytest.raises(TypeError, match=f"cannot compile a ugatit_rs {named}: its forward is Rust") as caught:
            torch.jit.script(network)
        assert ("ugatit_rs.export.torchscript" in str(caught.value)) == bool(hint)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.equal(torch.jit.trace(g, x)(x)[0], g(x)[0])  # what the message offers works


def test_trainer_networks_are_modules_over_the_trainer_tensors():
    tr = ug.Trainer(ug.TrainConfig(light=True, img_size=96, ch=4, n_res=1, device="cpu"))
    assert isinstance(tr.gen_a2b, torch.nn.Module)
    p = tr.gen_a2b.get_parameter("FC.0.weight")
    before = p.detach().clone()
    x = torch.rand(1, 3, 96, 96) * 2 - 1
    tr.step(x, x)
    assert not torch.equal(before, p)  # the trainer's Adam updated this very Parameter


# -- the type stubs match the extension --------------------------------------------------------------
STUB = os.path.join(os.path.dirname(ug.__file__), "_native.pyi")


def _stub_tree():
    with open(STUB) as f:
        return ast.parse(f.read())


def _stub_params(fn: ast.FunctionDef) -> list[str]:
    args = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    return [a for a in args if a != "self"]


def test_stub_lists_every_public_native_name_and_nothing_else():
    tree = _stub_tree()
    stubbed = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    stubbed |= {t.id for n in tree.body if isinstance(n, ast.AnnAssign) for t in [n.target]}
    runtime = {n for n in dir(ug._native) if not n.startswith("_")} | {"__version__"}
    assert stubbed - {"Triple"} - {"__version__"} == runtime - {"__version__"}


def test_stub_signatures_match_the_runtime():
    tree = _stub_tree()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            runtime = list(inspect.signature(getattr(ug._native, node.name)).parameters)
            assert _stub_params(node) == runtime, node.name
        if isinstance(node, ast.ClassDef):
            cls = getattr(ug._native, node.name)
            methods = {n.name: n for n in node.body if isinstance(n, ast.FunctionDef)}
            for name, fn in methods.items():
                assert hasattr(cls, name), f"{node.name}.{name} is in the stub but not in the extension"
                target = getattr(cls, name)
                if (
                    name == "__init__"
                    or isinstance(target, property)
                    or "property" in [getattr(d, "id", None) for d in fn.decorator_list]
                ):
                    continue
                try:
                    sig = inspect.signature(target)
                except (TypeError, ValueError):
                    continue
                assert _stub_params(fn) == [p for p in sig.parameters if p != "self"], f"{node.name}.{name}"
            public = {n for n in vars(cls) if not n.startswith("_")}
            fields = {n.target.id for n in node.body if isinstance(n, ast.AnnAssign)}
            inherited = {n for base in node.bases for n in (methods_of(tree, getattr(base, "id", "")) or set())}
            assert public <= set(methods) | fields | inherited, f"{node.name}: {public - set(methods) - fields}"


def methods_of(tree, class_name):
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            return {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
    return None


def test_stub_train_config_fields_match_the_struct():
    tree = _stub_tree()
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "TrainConfig")
    fields = [n.target.id for n in node.body if isinstance(n, ast.AnnAssign)]
    init = next(n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    defaults = [ast.literal_eval(d) for d in init.args.defaults]
    assert fields == list(ug.TrainConfig().to_dict()) == _stub_params(init)
    assert dict(zip(fields, defaults)) == ug.TrainConfig().to_dict()


def test_the_native_module_is_built_for_this_python_version():
    """The extension compiles torch's Python bindings, whose headers (pybind11) use CPython's
    version-specific API, so it cannot be a stable-ABI ("abi3") module. Before: the wheel was
    tagged abi3; one built on 3.11 installed on 3.13 and failed at import with "undefined symbol:
    _PyThreadState_UncheckedGet". A wheel tagged for one version is refused by pip elsewhere."""
    import importlib.machinery

    from ugatit_rs import _native

    assert _native.__file__.endswith(importlib.machinery.EXTENSION_SUFFIXES[0]), _native.__file__


@pytest.mark.parametrize("variant", ["pytorch", "tf"])
def test_a_generator_built_for_loading_skips_the_random_draws(variant):
    # Translator.from_checkpoint drew a full 256 px generator's 268M MLP weights (1.7 s) only to
    # overwrite them. init_weights=False starts at zero without touching torch's random stream,
    # and the next generator built the default way draws again.
    torch.manual_seed(3)
    state = torch.get_rng_state()
    empty = ug.Generator(ngf=4, n_blocks=4, img_size=96, light=True, variant=variant, init_weights=False)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(not p.detach().any() for p in empty.parameters())
    torch.manual_seed(3)
    drawn = ug.Generator(ngf=4, n_blocks=4, img_size=96, light=True, variant=variant)
    assert any(p.detach().any() for p in drawn.parameters()) and not torch.equal(torch.get_rng_state(), state)
    empty.load_state_dict(drawn.state_dict())
    x = torch.rand(1, 3, 96, 96) * 2 - 1
    assert torch.equal(empty.eval()(x)[0], drawn.eval()(x)[0])
    with pytest.raises(TypeError, match="init_weights"):  # "no" is not False
        ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True, init_weights="no")
