"""The official U-GAT-IT training iteration (UGATIT-pytorch ``UGATIT.train``), line for line, on
the oracle networks: no detach in the D step, generator forwards recomputed in the G step,
``torch.optim.Adam`` with its default implementation, RhoClipper, LR decay before the update."""

import itertools

import torch
import torch.nn as nn

from .networks import Discriminator, ResnetGenerator

NETWORK_NAMES = ["genA2B", "genB2A", "disGA", "disGB", "disLA", "disLB"]


class RhoClipper:
    def __init__(self, lo, hi):
        self.clip_min, self.clip_max = lo, hi

    def __call__(self, module):
        if hasattr(module, "rho"):
            w = module.rho.data
            module.rho.data = w.clamp(self.clip_min, self.clip_max)


class OfficialLoop:
    def __init__(
        self,
        light,
        img_size,
        ch,
        n_res,
        iteration,
        lr=1e-4,
        weight_decay=1e-4,
        adv_weight=1,
        cycle_weight=10,
        identity_weight=10,
        cam_weight=1000,
        decay_flag=True,
        device="cpu",
    ):
        self.iteration, self.lr, self.decay_flag = iteration, lr, decay_flag
        self.adv_weight, self.cycle_weight = adv_weight, cycle_weight
        self.identity_weight, self.cam_weight = identity_weight, cam_weight
        self.genA2B = ResnetGenerator(3, 3, ch, n_res, img_size, light).to(device)
        self.genB2A = ResnetGenerator(3, 3, ch, n_res, img_size, light).to(device)
        self.disGA = Discriminator(3, ch, 7).to(device)
        self.disGB = Discriminator(3, ch, 7).to(device)
        self.disLA = Discriminator(3, ch, 5).to(device)
        self.disLB = Discriminator(3, ch, 5).to(device)
        self.L1_loss = nn.L1Loss()
        self.MSE_loss = nn.MSELoss()
        self.BCE_loss = nn.BCEWithLogitsLoss()
        self.G_optim = torch.optim.Adam(
            itertools.chain(self.genA2B.parameters(), self.genB2A.parameters()),
            lr=lr,
            betas=(0.5, 0.999),
            weight_decay=weight_decay,
        )
        self.D_optim = torch.optim.Adam(
            itertools.chain(
                self.disGA.parameters(), self.disGB.parameters(), self.disLA.parameters(), self.disLB.parameters()
            ),
            lr=lr,
            betas=(0.5, 0.999),
            weight_decay=weight_decay,
        )
        self.Rho_clipper = RhoClipper(0, 1)
        self.step_count = 0

    def networks(self):
        return {name: getattr(self, name) for name in NETWORK_NAMES}

    def load_from(self, networks):
        """Copies the weights (and SN vectors) of {name: module-like with state_dict()}."""
        for name, net in self.networks().items():
            net.load_state_dict(networks[name].state_dict())

    def step(self, real_A, real_B):
        step = self.step_count + 1
        (
            self.genA2B.train(),
            self.genB2A.train(),
            self.disGA.train(),
            self.disGB.train(),
            self.disLA.train(),
            self.disLB.train(),
        )
        if self.decay_flag and step > (self.iteration // 2):
            self.G_optim.param_groups[0]["lr"] -= self.lr / (self.iteration // 2)
            self.D_optim.param_groups[0]["lr"] -= self.lr / (self.iteration // 2)

        # Update D
        self.D_optim.zero_grad()
        fake_A2B, _, _ = self.genA2B(real_A)
        fake_B2A, _, _ = self.genB2A(real_B)
        real_GA_logit, real_GA_cam_logit, _ = self.disGA(real_A)
        real_LA_logit, real_LA_cam_logit, _ = self.disLA(real_A)
        real_GB_logit, real_GB_cam_logit, _ = self.disGB(real_B)
        real_LB_logit, real_LB_cam_logit, _ = self.disLB(real_B)
        fake_GA_logit, fake_GA_cam_logit, _ = self.disGA(fake_B2A)
        fake_LA_logit, fake_LA_cam_logit, _ = self.disLA(fake_B2A)
        fake_GB_logit, fake_GB_cam_logit, _ = self.disGB(fake_A2B)
        fake_LB_logit, fake_LB_cam_logit, _ = self.disLB(fake_A2B)

        mse, ones, zeros = self.MSE_loss, torch.ones_like, torch.zeros_like
        D_ad_loss_GA = mse(real_GA_logit, ones(real_GA_logit)) + mse(fake_GA_logit, zeros(fake_GA_logit))
        D_ad_cam_loss_GA = mse(real_GA_cam_logit, ones(real_GA_cam_logit)) + mse(
            fake_GA_cam_logit, zeros(fake_GA_cam_logit)
        )
        D_ad_loss_LA = mse(real_LA_logit, ones(real_LA_logit)) + mse(fake_LA_logit, zeros(fake_LA_logit))
        D_ad_cam_loss_LA = mse(real_LA_cam_logit, ones(real_LA_cam_logit)) + mse(
            fake_LA_cam_logit, zeros(fake_LA_cam_logit)
        )
        D_ad_loss_GB = mse(real_GB_logit, ones(real_GB_logit)) + mse(fake_GB_logit, zeros(fake_GB_logit))
        D_ad_cam_loss_GB = mse(real_GB_cam_logit, ones(real_GB_cam_logit)) + mse(
            fake_GB_cam_logit, zeros(fake_GB_cam_logit)
        )
        D_ad_loss_LB = mse(real_LB_logit, ones(real_LB_logit)) + mse(fake_LB_logit, zeros(fake_LB_logit))
        D_ad_cam_loss_LB = mse(real_LB_cam_logit, ones(real_LB_cam_logit)) + mse(
            fake_LB_cam_logit, zeros(fake_LB_cam_logit)
        )

        D_loss_A = self.adv_weight * (D_ad_loss_GA + D_ad_cam_loss_GA + D_ad_loss_LA + D_ad_cam_loss_LA)
        D_loss_B = self.adv_weight * (D_ad_loss_GB + D_ad_cam_loss_GB + D_ad_loss_LB + D_ad_cam_loss_LB)
        Discriminator_loss = D_loss_A + D_loss_B
        Discriminator_loss.backward()
        self.D_optim.step()

        # Update G
        self.G_optim.zero_grad()
        fake_A2B, fake_A2B_cam_logit, _ = self.genA2B(real_A)
        fake_B2A, fake_B2A_cam_logit, _ = self.genB2A(real_B)
        fake_A2B2A, _, _ = self.genB2A(fake_A2B)
        fake_B2A2B, _, _ = self.genA2B(fake_B2A)
        fake_A2A, fake_A2A_cam_logit, _ = self.genB2A(real_A)
        fake_B2B, fake_B2B_cam_logit, _ = self.genA2B(real_B)
        fake_GA_logit, fake_GA_cam_logit, _ = self.disGA(fake_B2A)
        fake_LA_logit, fake_LA_cam_logit, _ = self.disLA(fake_B2A)
        fake_GB_logit, fake_GB_cam_logit, _ = self.disGB(fake_A2B)
        fake_LB_logit, fake_LB_cam_logit, _ = self.disLB(fake_A2B)

        G_ad_loss_GA = mse(fake_GA_logit, ones(fake_GA_logit))
        G_ad_cam_loss_GA = mse(fake_GA_cam_logit, ones(fake_GA_cam_logit))
        G_ad_loss_LA = mse(fake_LA_logit, ones(fake_LA_logit))
        G_ad_cam_loss_LA = mse(fake_LA_cam_logit, ones(fake_LA_cam_logit))
        G_ad_loss_GB = mse(fake_GB_logit, ones(fake_GB_logit))
        G_ad_cam_loss_GB = mse(fake_GB_cam_logit, ones(fake_GB_cam_logit))
        G_ad_loss_LB = mse(fake_LB_logit, ones(fake_LB_logit))
        G_ad_cam_loss_LB = mse(fake_LB_cam_logit, ones(fake_LB_cam_logit))

        G_recon_loss_A = self.L1_loss(fake_A2B2A, real_A)
        G_recon_loss_B = self.L1_loss(fake_B2A2B, real_B)
        G_identity_loss_A = self.L1_loss(fake_A2A, real_A)
        G_identity_loss_B = self.L1_loss(fake_B2B, real_B)
        bce = self.BCE_loss
        G_cam_loss_A = bce(fake_B2A_cam_logit, ones(fake_B2A_cam_logit)) + bce(
            fake_A2A_cam_logit, zeros(fake_A2A_cam_logit)
        )
        G_cam_loss_B = bce(fake_A2B_cam_logit, ones(fake_A2B_cam_logit)) + bce(
            fake_B2B_cam_logit, zeros(fake_B2B_cam_logit)
        )

        G_loss_A = (
            self.adv_weight * (G_ad_loss_GA + G_ad_cam_loss_GA + G_ad_loss_LA + G_ad_cam_loss_LA)
            + self.cycle_weight * G_recon_loss_A
            + self.identity_weight * G_identity_loss_A
            + self.cam_weight * G_cam_loss_A
        )
        G_loss_B = (
            self.adv_weight * (G_ad_loss_GB + G_ad_cam_loss_GB + G_ad_loss_LB + G_ad_cam_loss_LB)
            + self.cycle_weight * G_recon_loss_B
            + self.identity_weight * G_identity_loss_B
            + self.cam_weight * G_cam_loss_B
        )
        Generator_loss = G_loss_A + G_loss_B
        Generator_loss.backward()
        self.G_optim.step()

        self.genA2B.apply(self.Rho_clipper)
        self.genB2A.apply(self.Rho_clipper)
        self.step_count = step

        values = {"d_loss": Discriminator_loss, "g_loss": Generator_loss}
        local = locals()
        for name in list(local):
            if name.startswith(("D_ad", "G_ad", "G_recon", "G_identity", "G_cam")) and not name.endswith("_logit"):
                values[name] = local[name]
        out = {k: v.item() for k, v in values.items()}
        out["lr"] = self.G_optim.param_groups[0]["lr"]
        return out
