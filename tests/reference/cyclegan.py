"""A pure-PyTorch CycleGAN, written from the structure of junyanz/pytorch-CycleGAN-and-pix2pix
(``models/networks.py``, ``models/cycle_gan_model.py``, ``util/image_pool.py``; their defaults:
instance norm without affine or running statistics, no dropout, LSGAN, λ = 10, identity 0.5,
Adam(β1 = 0.5), pool of 50). The oracle the Rust CycleGAN is compared against.

The pool takes its random draws from an object with ``uniform()`` and ``randint(a, b)`` (theirs
uses Python's ``random``): tests pass :class:`SplitMix`, which replays the Rust pool's stream.
"""

import torch
import torch.nn as nn

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _mix(z: int) -> int:
    z = (z + GOLDEN) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


class SplitMix:
    """The generator of ``src/data/rng.rs``, in Python."""

    def __init__(self, *parts: int):
        state = 0x5EED
        for p in parts:
            state = _mix(state ^ _mix(p))
        self.state = state

    def next_u64(self) -> int:
        self.state = (self.state + GOLDEN) & MASK
        return _mix(self.state)

    def uniform(self, a: float = 0.0, b: float = 1.0) -> float:
        return a + (b - a) * ((self.next_u64() >> 11) / float(1 << 53))

    def randint(self, a: int, b: int) -> int:
        return a + self.next_u64() % (b - a + 1)


def norm(channels):
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, padding=0, bias=True),
            norm(dim),
            nn.ReLU(True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, padding=0, bias=True),
            norm(dim),
        )

    def forward(self, x):
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    def __init__(self, input_nc=3, output_nc=3, ngf=64, n_blocks=9):
        super().__init__()
        layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7, padding=0, bias=True), norm(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                norm(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [ResnetBlock(ngf * 4) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            layers += [
                nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=True),
                norm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7, padding=0), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    def __init__(self, input_nc=3, ndf=64, n_layers=3):
        super().__init__()
        seq = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2**n, 8)
            seq += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=True),
                norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        prev, mult = mult, min(2**n_layers, 8)
        seq += [
            nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=True),
            norm(ndf * mult),
            nn.LeakyReLU(0.2, True),
        ]
        seq += [nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def init_weights(net, gain=0.02):
    """Their ``init_weights(net, 'normal', 0.02)``: conv weights N(0, gain), biases 0, in module order."""

    def init(m):
        name = type(m).__name__
        if hasattr(m, "weight") and ("Conv" in name or "Linear" in name):
            nn.init.normal_(m.weight.data, 0.0, gain)
            if getattr(m, "bias", None) is not None:
                nn.init.constant_(m.bias.data, 0.0)

    net.apply(init)
    return net


class ImagePool:
    def __init__(self, pool_size, rng):
        self.pool_size, self.rng, self.images = pool_size, rng, []

    def query(self, images):
        if self.pool_size == 0:
            return images
        out = []
        for image in images:
            image = torch.unsqueeze(image.data, 0)
            if len(self.images) < self.pool_size:
                self.images.append(image)
                out.append(image)
            elif self.rng.uniform(0, 1) > 0.5:
                k = self.rng.randint(0, self.pool_size - 1)
                out.append(self.images[k].clone())
                self.images[k] = image
            else:
                out.append(image)
        return torch.cat(out, 0)


def mse_to(x, target):
    return nn.functional.mse_loss(x, torch.tensor(target).expand_as(x))


class CycleGAN:
    """``CycleGANModel`` reduced to what one iteration needs."""

    def __init__(self, g_a, g_b, d_a, d_b, lr=2e-4, lambda_cycle=10.0, lambda_idt=0.5, pools=None):
        self.g_a, self.g_b, self.d_a, self.d_b = g_a, g_b, d_a, d_b
        self.lambda_cycle, self.lambda_idt = lambda_cycle, lambda_idt
        self.opt_g = torch.optim.Adam(list(g_a.parameters()) + list(g_b.parameters()), lr=lr, betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(list(d_a.parameters()) + list(d_b.parameters()), lr=lr, betas=(0.5, 0.999))
        self.fake_b_pool, self.fake_a_pool = pools

    def set_lr(self, lr):
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    def step(self, real_a, real_b):
        lam, idt = self.lambda_cycle, self.lambda_idt
        fake_b = self.g_a(real_a)
        rec_a = self.g_b(fake_b)
        fake_a = self.g_b(real_b)
        rec_b = self.g_a(fake_a)
        for d in (self.d_a, self.d_b):
            d.requires_grad_(False)
        self.opt_g.zero_grad()
        loss_idt_a = nn.functional.l1_loss(self.g_a(real_b), real_b) * lam * idt
        loss_idt_b = nn.functional.l1_loss(self.g_b(real_a), real_a) * lam * idt
        loss_g_a = mse_to(self.d_a(fake_b), 1.0)
        loss_g_b = mse_to(self.d_b(fake_a), 1.0)
        loss_cycle_a = nn.functional.l1_loss(rec_a, real_a) * lam
        loss_cycle_b = nn.functional.l1_loss(rec_b, real_b) * lam
        loss_g = loss_g_a + loss_g_b + loss_cycle_a + loss_cycle_b + loss_idt_a + loss_idt_b
        loss_g.backward()
        self.opt_g.step()
        for d in (self.d_a, self.d_b):
            d.requires_grad_(True)
        self.opt_d.zero_grad()
        pooled_b = self.fake_b_pool.query(fake_b)
        loss_d_a = (mse_to(self.d_a(real_b), 1.0) + mse_to(self.d_a(pooled_b.detach()), 0.0)) * 0.5
        loss_d_a.backward()
        pooled_a = self.fake_a_pool.query(fake_a)
        loss_d_b = (mse_to(self.d_b(real_a), 1.0) + mse_to(self.d_b(pooled_a.detach()), 0.0)) * 0.5
        loss_d_b.backward()
        self.opt_d.step()
        return {
            "D_A": loss_d_a.item(), "G_A": loss_g_a.item(), "cycle_A": loss_cycle_a.item(), "idt_A": loss_idt_a.item(),
            "D_B": loss_d_b.item(), "G_B": loss_g_b.item(), "cycle_B": loss_cycle_b.item(), "idt_B": loss_idt_b.item(),
        }  # fmt: skip


def lambda_lr(base_lr, step, iteration):
    """Their ``lambda`` policy with one iteration per epoch, stepped at each epoch's end."""
    n = iteration // 2
    return base_lr * (1.0 - max(0, step - n) / float(iteration - n + 1))
