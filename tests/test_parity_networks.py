"""Forward and backward parity of the Rust networks against the pure-PyTorch oracle
(tests/reference/networks.py), after loading the same state dict."""

import pytest
import torch
from conftest import discriminator_pair, generator_pair, max_abs, rel_err

# (light, img_size, n_blocks, batch)
GENERATOR_CASES = [
    (True, 96, 1, 2),
    (True, 128, 4, 3),
    (False, 96, 1, 2),
    (False, 128, 4, 2),
]
FORWARD_TOL = 1e-5  # outputs are O(1): tanh images and CAM logits
GRAD_TOL = 1e-4  # relative, per parameter


def _inputs(batch, size, device, seed=123):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device)


def _loss(out, cam, heatmap, seed=7):
    """A scalar touching every output with fixed random weights (so no gradient is trivial)."""
    gen = torch.Generator().manual_seed(seed)
    weights = [torch.randn(t.shape, generator=gen).to(t.device) for t in (out, cam, heatmap)]
    return (out * weights[0]).sum() + (cam * weights[1]).sum() + (heatmap * weights[2]).sum() * 1e-2


@pytest.mark.parametrize("light,img_size,n_blocks,batch", GENERATOR_CASES)
def test_generator_forward_and_backward(light, img_size, n_blocks, batch, device):
    ref, ours = generator_pair(light, img_size, n_blocks, device=device)
    x_ref = _inputs(batch, img_size, device).requires_grad_(True)
    x_ours = x_ref.detach().clone().requires_grad_(True)

    out_r, cam_r, hm_r = ref(x_ref)
    out_o, cam_o, hm_o = ours(x_ours)
    assert out_o.shape == (batch, 3, img_size, img_size)
    assert cam_o.shape == (batch, 2)
    assert hm_o.shape == (batch, 1, img_size // 4, img_size // 4)
    assert max_abs(out_o, out_r) <= FORWARD_TOL
    assert max_abs(cam_o, cam_r) <= FORWARD_TOL * max(1.0, cam_r.abs().max().item())
    assert rel_err(hm_o, hm_r) <= FORWARD_TOL

    _loss(out_r, cam_r, hm_r).backward()
    _loss(out_o, cam_o, hm_o).backward()
    ref_params = dict(ref.named_parameters())
    ours_params = dict(ours.named_parameters())
    assert ours_params.keys() == ref_params.keys()
    worst = {name: rel_err(ours_params[name].grad, p.grad) for name, p in ref_params.items()}
    bad = {k: v for k, v in worst.items() if v > GRAD_TOL}
    assert not bad, f"gradients differ: {bad}"
    assert rel_err(x_ours.grad, x_ref.grad) <= GRAD_TOL


@pytest.mark.parametrize("n_layers", [5, 7])
@pytest.mark.parametrize("img_size", [96, 128])
def test_discriminator_train_mode_calls_and_buffers(n_layers, img_size, device):
    ref, ours = discriminator_pair(n_layers, device=device)
    ref.train()
    ours.train()
    # Several consecutive train-mode calls: each advances every power iteration once.
    for call in range(3):
        x = _inputs(2, img_size, device, seed=call)
        for a, b in zip(ours(x), ref(x)):
            assert a.shape == b.shape
            assert rel_err(a, b) <= FORWARD_TOL, f"call {call}"
        ref_buffers = dict(ref.named_buffers())
        for name, buf in ours.named_buffers():
            assert max_abs(buf, ref_buffers[name]) <= 1e-6, f"{name} after call {call}"


@pytest.mark.parametrize("n_layers", [5, 7])
def test_discriminator_eval_mode_uses_stored_vectors(n_layers, device):
    ref, ours = discriminator_pair(n_layers, device=device)
    x = _inputs(2, 96, device)
    ref(x), ours(x)  # one train-mode step so u, v are not the initial ones
    ref.eval()
    ours.eval()
    before = {k: v.clone() for k, v in ours.named_buffers()}
    for _ in range(2):
        for a, b in zip(ours(x), ref(x)):
            assert rel_err(a, b) <= FORWARD_TOL
    for name, buf in ours.named_buffers():
        assert torch.equal(buf, before[name]), f"{name} changed in eval mode"


@pytest.mark.parametrize("n_layers,img_size", [(5, 96), (7, 128)])
def test_discriminator_backward(n_layers, img_size, device):
    ref, ours = discriminator_pair(n_layers, device=device)
    x_ref = _inputs(2, img_size, device).requires_grad_(True)
    x_ours = x_ref.detach().clone().requires_grad_(True)
    _loss(*ref(x_ref)).backward()
    _loss(*ours(x_ours)).backward()
    ref_params = dict(ref.named_parameters())
    bad = {}
    for name, p in ours.named_parameters():
        err = rel_err(p.grad, ref_params[name].grad)
        if err > GRAD_TOL:
            bad[name] = err
    assert not bad, f"gradients differ: {bad}"
    assert rel_err(x_ours.grad, x_ref.grad) <= GRAD_TOL


def test_state_dict_keys_and_shapes_match_official_order():
    for light in (True, False):
        ref, ours = generator_pair(light, 96, 2)
        ref_sd, ours_sd = ref.state_dict(), ours.state_dict()
        assert list(ours_sd) == list(ref_sd)
        assert all(ours_sd[k].shape == v.shape for k, v in ref_sd.items())
    for n_layers in (5, 7):
        ref, ours = discriminator_pair(n_layers)
        assert list(ours.state_dict()) == list(ref.state_dict())
        assert all(ours.state_dict()[k].shape == v.shape for k, v in ref.state_dict().items())


def test_official_full_size_parameter_counts():
    """docs/architecture.md §1, §3: the paper configuration's parameter counts."""
    import ugatit_rs as ug

    assert ug.Generator(light=True).num_parameters() == 10_589_888
    assert ug.Discriminator(n_layers=7).num_parameters() == 53_130_176
    assert ug.Discriminator(n_layers=5).num_parameters() == 3_290_560
