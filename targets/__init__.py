"""Target presets and x86 kernels."""
