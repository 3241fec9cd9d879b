"""A pure-PyTorch oracle of U-GAT-IT, written from the official code's structure (docs/architecture.md), used by the parity tests."""
