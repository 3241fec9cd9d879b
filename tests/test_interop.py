"""The networks behave like PyTorch modules: live shared tensors, autograd, torch.optim."""

import torch
import ugatit_rs as ug
from conftest import generator_pair, max_abs


def test_parameters_are_live_leaves_sharing_storage():
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    params = dict(g.named_parameters())
    assert all(p.requires_grad and p.is_leaf for p in params.values())
    sd = g.state_dict()
    for name, p in params.items():
        assert sd[name].data_ptr() == p.data_ptr(), name
        assert not sd[name].requires_grad
    # The same Python objects come back each time (torch.optim relies on identity).
    first = list(g.parameters())
    assert all(a is b for a, b in zip(first, g.parameters()))


def test_load_state_dict_copies_in_place():
    ref, ours = generator_pair(True, 96, 1)
    ptrs = {k: v.data_ptr() for k, v in ours.state_dict().items()}
    ref2, _ = generator_pair(True, 96, 1, seed=5)
    result = ours.load_state_dict(ref2.state_dict())
    assert result.missing_keys == [] and result.unexpected_keys == []
    for k, v in ours.state_dict().items():
        assert v.data_ptr() == ptrs[k], k
        assert torch.equal(v, ref2.state_dict()[k]), k


def test_in_place_change_in_python_is_seen_by_rust():
    ref, ours = generator_pair(True, 96, 1)
    x = torch.rand(2, 3, 96, 96) * 2 - 1
    before = ours(x)[0]
    with torch.no_grad():
        dict(ours.named_parameters())["UpBlock2.11.weight"].mul_(0.5)
        ref.UpBlock2[11].weight.mul_(0.5)
    after = ours(x)[0]
    assert max_abs(after, before) > 1e-3
    assert max_abs(after, ref(x)[0]) <= 1e-6


def test_torch_optim_trains_the_rust_network_like_the_oracle():
    """torch.optim.Adam on g.parameters() trains the Rust network, step for step like the oracle."""
    ref, ours = generator_pair(True, 96, 1, ngf=4)
    torch.manual_seed(0)
    # A smooth target the tiny generator can learn to reproduce.
    x = torch.nn.functional.interpolate(torch.rand(2, 3, 6, 6) * 2 - 1, size=96, mode="bilinear")
    optims = [torch.optim.Adam(m.parameters(), lr=3e-3) for m in (ref, ours)]
    losses = {"ref": [], "ours": []}
    for _ in range(12):
        for key, model, opt in zip(losses, (ref, ours), optims):
            opt.zero_grad()
            out, _, _ = model(x)
            loss = torch.nn.functional.l1_loss(out, x)
            loss.backward()
            opt.step()
            losses[key].append(loss.item())
    assert losses["ours"][-1] < 0.7 * losses["ours"][0], losses["ours"]
    assert max(abs(a - b) for a, b in zip(losses["ours"], losses["ref"])) < 1e-5
    # Norms are computed with fused kernels (equal to float rounding), which Adam's first steps
    # amplify for near-zero gradients: after 12 steps the weights agree to a tenth of the step size.
    ref_sd = ref.state_dict()
    assert max(max_abs(v, ref_sd[k]) for k, v in ours.state_dict().items()) < 0.1 * 3e-3


def test_no_grad_and_modes():
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    x = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        out, cam, hm = g(x)
    assert out.grad_fn is None and not out.requires_grad
    assert g(x)[0].grad_fn is not None
    assert g.training
    assert g.eval() is g and not g.training
    assert g.train() is g and g.training
    d = ug.Discriminator(ndf=4, n_layers=5)
    assert d.eval().training is False


def test_to_device_and_repr():
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    assert g.to("cpu") is g
    assert g.device == torch.device("cpu")
    assert g.to(torch.device("cpu")).device.type == "cpu"
    text = repr(g)
    assert "ngf=4" in text and "light=True" in text and f"{g.num_parameters():,}" in text
    assert g.num_parameters() == sum(p.numel() for p in g.parameters())
    d = ug.Discriminator(ndf=4, n_layers=5)
    assert "n_layers=5" in repr(d)
    assert {n for n, _ in d.named_buffers()} == {k for k in d.state_dict() if k.endswith(("weight_u", "weight_v"))}


def test_zero_grad_and_requires_grad():
    g = ug.Generator(ngf=4, n_blocks=1, img_size=96, light=True)
    g(torch.rand(1, 3, 96, 96))[0].sum().backward()
    assert all(p.grad is not None for p in g.parameters())
    g.zero_grad()
    assert all(p.grad is None for p in g.parameters())
    g.requires_grad_(False)
    assert g(torch.rand(1, 3, 96, 96))[0].grad_fn is None
    g.requires_grad_(True)
