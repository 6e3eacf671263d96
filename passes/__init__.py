"""Relax passes of aiq_tvm."""
