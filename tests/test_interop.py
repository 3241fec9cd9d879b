"""The networks behave like PyTorch modules: live shared tensors, autograd, torch.optim."""

import pytest
import torch
import ugatit_rs as ug
from conftest import discriminator_pair, generator_pair, max_abs


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


def test_gradient_checkpointing_recomputes_the_rust_forward():
    """torch.utils.checkpoint runs the Rust forward again in the backward pass; the gradients are
    the ones without it. Before: the non-reentrant form (PyTorch's recommended one) stops the
    recomputation by raising from a saved-tensor hook, which came out of the Rust forward as
    "RuntimeError: libtorch: Internal torch error: " and failed every backward."""
    g = ug.Generator(ngf=4, n_blocks=2, img_size=32, light=False)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    sum(o.sum() for o in g(x)).backward()
    direct = [p.grad.clone() for p in g.parameters()]
    for reentrant in (False, True):
        g.zero_grad()
        inputs = x.clone().requires_grad_(reentrant)  # the reentrant form needs an input with grad
        outputs = torch.utils.checkpoint.checkpoint(g, inputs, use_reentrant=reentrant)
        sum(o.sum() for o in outputs).backward()
        for p, expected in zip(g.parameters(), direct):
            assert torch.equal(p.grad, expected), reentrant


class _HookError(Exception):
    pass


def _raise(*args):
    raise _HookError("raised by the user's hook")


def test_an_exception_from_a_python_hook_run_inside_rust_comes_out_as_itself():
    """libtorch runs Python hooks inside the Rust code (saved-tensor hooks in a forward, tensor
    hooks in the training step's backward); what they raise reaches the caller unchanged, not as
    an anonymous RuntimeError."""
    g = ug.Generator(ngf=4, n_blocks=1, img_size=32, light=True)
    with pytest.raises(_HookError, match="user's hook"):
        with torch.autograd.graph.saved_tensors_hooks(_raise, lambda t: t):
            g(torch.rand(1, 3, 32, 32))
    assert g(torch.rand(1, 3, 32, 32))[0].shape == (1, 3, 32, 32)

    tr = ug.Trainer(ug.TrainConfig(dataset="unused", light=True, img_size=96, ch=4, n_res=1, device="cpu"))
    batch = torch.rand(1, 3, 96, 96) * 2 - 1
    handle = next(tr.gen_a2b.parameters()).register_hook(_raise)
    with pytest.raises(_HookError, match="user's hook"):
        tr.step(batch, batch)
    handle.remove()
    assert torch.isfinite(torch.tensor(tr.step(batch, batch)["g_loss"]))


def test_a_gradient_a_hook_keeps_still_reads_as_the_gradient_after_the_step():
    """Hooks that store gradients (to log their norms after the step, say) keep what autograd
    gave them. Before: the CPU update reused each spent gradient's memory for sqrt(v), so a stored
    gradient read as something else once the step returned. The update itself is unchanged."""
    config = ug.TrainConfig(dataset="unused", light=True, img_size=96, ch=4, n_res=1, device="cpu")
    hooked, plain = ug.Trainer(config), ug.Trainer(config)
    batches = [(torch.rand(1, 3, 96, 96) * 2 - 1, torch.rand(1, 3, 96, 96) * 2 - 1) for _ in range(2)]
    kept = {}

    def keep(name):
        return lambda grad: kept.setdefault(name, []).append((grad, grad.clone()))

    handles = [
        p.register_hook(keep(f"{net}.{name}"))
        for net, network in hooked.networks().items()
        for name, p in network.named_parameters()
    ]
    for a, b in batches:
        hooked.step(a, b)
        plain.step(a, b)
    assert len(kept) == sum(len(list(n.parameters())) for n in hooked.networks().values())
    for name, grads in kept.items():
        for stored, copy in grads:
            assert torch.equal(stored, copy), name
    for net, network in hooked.networks().items():
        for (name, x), y in zip(network.named_parameters(), plain.networks()[net].parameters()):
            assert torch.equal(x, y), f"{net}.{name}"
    for handle in handles:
        handle.remove()


def test_double_backward_through_the_discriminator_matches_the_oracle():
    """A gradient penalty (R1: the squared gradient of D's output with respect to its input)
    differentiates D's backward pass; its parameter gradients are the oracle's."""
    ref, ours = discriminator_pair(5, ndf=8)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    for d in (ref, ours):
        inputs = x.clone().requires_grad_(True)
        out, cam_logit, _ = d(inputs)
        (grad,) = torch.autograd.grad(out.sum() + cam_logit.sum(), inputs, create_graph=True)
        grad.pow(2).sum().backward()
    expected = dict(ref.named_parameters())
    for name, p in ours.named_parameters():
        scale = expected[name].grad.abs().max().item()
        assert max_abs(p.grad, expected[name].grad) <= 1e-5 * max(scale, 1e-3), name
