"""aiq_tvm.plots: lambdas that chose the same plan share one label on the Pareto panels."""

from aiq_tvm import plots


def test_lambdas_on_one_point_get_one_label():
    plt = plots._pyplot()
    fig, ax = plt.subplots()
    points = [{"lambda": 0.5, "ai": 17.2, "accuracy": 0.878},
              {"lambda": 0.9, "ai": 23.5, "accuracy": 0.863},
              {"lambda": 0.99, "ai": 23.5, "accuracy": 0.863}]
    plots._panel(ax, points, {}, "ai", [0, 1], "AI (FLOP/byte)")
    assert sorted(t.get_text() for t in ax.texts) == ["0.5", "0.9, 0.99"]
    plt.close(fig)
