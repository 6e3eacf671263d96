"""Kernel times attributed to layers, including when kernel and layer counts differ."""

from aiq_tvm.profiling import attribute_kernel_times


def test_quantize_kernels_count_with_the_next_layer_and_glue_is_other():
    calls = [("conv1_quantize", 1.0), ("conv1_int8", 10.0), ("transpose", 2.0),
             ("fc_w4", 5.0), ("max_pool", 3.0)]
    t = attribute_kernel_times(calls, ["conv1", "fc"])
    assert t.per_layer == {"conv1": 11.0, "fc": 5.0}
    assert t.other_us == 5.0
    assert t.unmatched_layers == [] and t.unmatched_kernels == [] and t.notes() == []


def test_more_layers_than_kernels_names_the_untimed_layers():
    t = attribute_kernel_times([("a_int8", 4.0), ("glue", 1.0)], ["a", "b", "c"])
    assert t.per_layer == {"a": 4.0}
    assert t.unmatched_layers == ["b", "c"]
    assert "2 layer(s) had no layer kernel call to time: ['b', 'c']" in t.notes()[0]


def test_more_kernels_than_layers_counts_the_surplus_as_other():
    calls = [("a_fp32", 4.0), ("x_quantize", 0.5), ("b_int4", 2.0)]
    t = attribute_kernel_times(calls, ["a"])
    assert t.per_layer == {"a": 4.0}
    assert t.other_us == 2.5
    assert t.unmatched_kernels == ["b_int4"]
    assert "beyond the model's 1 layers" in t.notes()[0]


def test_tap_kernels_of_a_split_layer_count_with_its_kernel():
    """A float layer split into its taps runs one 1x1 kernel per outer tap, then its own."""
    calls = [("aspp_fp32_tap00", 1.0), ("strided_slice", 0.5), ("aspp_fp32_tap21", 2.0),
             ("fused_pad_add", 0.25), ("aspp_fp32", 10.0), ("head_fp32", 3.0)]
    t = attribute_kernel_times(calls, ["aspp", "head"])
    assert t.per_layer == {"aspp": 13.0, "head": 3.0}
    assert t.other_us == 0.75 and t.unmatched_kernels == []
