"""A pure-PyTorch oracle of U-GAT-IT, written from ../shared/SPEC.md, used by the parity tests."""
