"""aiq_tvm: Arithmetic-Intensity-Aware Quantization for TVM Relax."""
