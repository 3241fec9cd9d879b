//! Network configurations. Defaults are the official `main.py` ones; `validate` rejects values the
//! official code would crash on later (or silently get wrong), naming the field.

use crate::{Error, Result};

/// `ResnetGenerator(input_nc, output_nc, ngf, n_blocks, img_size, light)`.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratorConfig {
    pub input_nc: i64,
    pub output_nc: i64,
    pub ngf: i64,
    pub n_blocks: i64,
    pub img_size: i64,
    pub light: bool,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        Self { input_nc: 3, output_nc: 3, ngf: 64, n_blocks: 4, img_size: 256, light: false }
    }
}

impl GeneratorConfig {
    /// Channels of the bottleneck (after the two down-sampling convs): `ngf * 4`.
    pub fn bottleneck_channels(&self) -> i64 {
        self.ngf * 4
    }

    /// `in_features` of `FC.0`: the flattened attention feature map (full mode) or its
    /// channel means (light mode).
    pub fn mlp_in_features(&self) -> i64 {
        let mult = 4;
        if self.light {
            self.ngf * mult
        } else {
            // Evaluated left to right exactly as the official code does.
            self.img_size / mult * self.img_size / mult * self.ngf * mult
        }
    }

    pub fn validate(&self) -> Result<()> {
        positive("input_nc", self.input_nc)?;
        positive("output_nc", self.output_nc)?;
        positive("ngf", self.ngf)?;
        if self.n_blocks < 0 {
            return Err(Error::config(format!("n_blocks must be >= 0, got {}", self.n_blocks)));
        }
        if self.img_size % 4 != 0 || self.img_size < 8 {
            return Err(Error::config(format!(
                "img_size must be a multiple of 4 and at least 8 (two stride-2 convs then 3x3 \
                 reflection-padded convs), got {}",
                self.img_size
            )));
        }
        Ok(())
    }
}

/// `Discriminator(input_nc, ndf, n_layers)`: `n_layers=7` is the global one, 5 the local one.
#[derive(Debug, Clone, PartialEq)]
pub struct DiscriminatorConfig {
    pub input_nc: i64,
    pub ndf: i64,
    pub n_layers: i64,
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self { input_nc: 3, ndf: 64, n_layers: 7 }
    }
}

impl DiscriminatorConfig {
    /// Channels entering the CAM module: `ndf * 2^(n_layers-2)`.
    pub fn cam_channels(&self) -> i64 {
        self.ndf << (self.n_layers - 2)
    }

    pub fn validate(&self) -> Result<()> {
        positive("input_nc", self.input_nc)?;
        positive("ndf", self.ndf)?;
        if !(3..=12).contains(&self.n_layers) {
            return Err(Error::config(format!(
                "n_layers must be between 3 and 12 (7 = global, 5 = local), got {}",
                self.n_layers
            )));
        }
        Ok(())
    }

    /// The smallest square input this discriminator accepts: reflection padding by 1 needs
    /// every feature map to be at least 2 wide (the official global D needs 96).
    pub fn min_input_size(&self) -> i64 {
        (2..4096).find(|&s| self.accepts(s)).unwrap_or(4096)
    }

    /// Whether a spatial extent `size` survives every padded conv of this discriminator.
    pub fn accepts(&self, mut size: i64) -> bool {
        // n_layers-2 stride-2 convs, then two stride-1 k4 convs (model's last, then the logit conv).
        for _ in 0..self.n_layers - 2 {
            if size < 2 {
                return false;
            }
            size = (size + 2 - 4) / 2 + 1;
        }
        for _ in 0..2 {
            if size < 2 {
                return false;
            }
            size = size + 2 - 4 + 1;
        }
        size >= 1
    }
}

fn positive(field: &str, value: i64) -> Result<()> {
    if value <= 0 {
        return Err(Error::config(format!("{field} must be positive, got {value}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn official_sizes() {
        let g = GeneratorConfig::default();
        assert_eq!(g.mlp_in_features(), 1_048_576);
        let d = DiscriminatorConfig::default();
        assert_eq!(d.cam_channels(), 2048);
        assert_eq!(d.min_input_size(), 96);
        let local = DiscriminatorConfig { n_layers: 5, ..Default::default() };
        assert_eq!(local.cam_channels(), 512);
        assert!(local.accepts(64));
    }

    #[test]
    fn rejects_bad_values() {
        let g = GeneratorConfig { img_size: 130, ..Default::default() };
        assert!(g.validate().unwrap_err().to_string().contains("img_size"));
        let d = DiscriminatorConfig { n_layers: 2, ..Default::default() };
        assert!(d.validate().unwrap_err().to_string().contains("n_layers"));
    }
}
