"""Phase diagrams and n_e figures with n_s = 0 (real data only, where n_e = n_r): the
column is drawn, labelled 0, and its n_e / n_r interval contains 1."""

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from analysis.effective_size import MonotoneCurve
from analysis.estimates import effective_size_row
from analysis.figures.intervals import plot_intervals
from analysis.figures.labels import log_axis_positions
from analysis.figures.phase import plot_phase_diagram
from analysis.reference import gaussian_reference_curve, log_spaced_sizes
from analysis.report import Report, write_effective_size_figures
from mad_core.convergence import estimate_asymptote
from mad_core.loop import SelfConsumingLoop
from mad_core.spec import resolve_spec


def test_zero_sits_one_grid_step_left_of_the_smallest_size():
    np.testing.assert_allclose(log_axis_positions(np.array([0, 20, 80, 320])),
                               [5, 20, 80, 320])
    np.testing.assert_allclose(log_axis_positions(np.array([0, 100])), [10, 100])
    np.testing.assert_allclose(log_axis_positions(np.array([10, 100])), [10, 100])


def ratio_table() -> pd.DataFrame:
    """A 2 x 3 grid over (n_r, n_s) with n_s = 0, for lambda in {0.7, 1}."""
    rows = []
    for lam in (0.7, 1.0):
        for n_real in (100, 1000):
            for n_syn in (0, 100, 1000):
                ratio = 1.0 if n_syn == 0 else (1.4 if lam == 1.0 else 0.6)
                rows.append({"lam": lam, "n_real": n_real, "n_syn": n_syn, "converged": True,
                             "ratio": ratio, "ratio_low": 0.9 * ratio,
                             "ratio_high": 1.1 * ratio, "ratio_bound": ""})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("x, y, panel", [("n_real", "n_syn", "lam"), ("n_syn", "lam", "n_real")])
def test_phase_diagram_draws_a_zero_column(x, y, panel):
    figure = plot_phase_diagram(ratio_table(), x, y, panel, "title", "f(n): closed form, d = 1")
    axis = figure.axes[0]
    labels = [t.get_text() for t in (axis.get_yticklabels() if y == "n_syn"
                                     else axis.get_xticklabels())]
    assert labels == ["0", "100", "1000"]
    assert "f(n): closed form, d = 1" in figure.get_supxlabel()
    plt.close(figure)


def test_effective_size_figure_draws_n_s_zero():
    figure = plot_intervals(ratio_table(), "n_syn", ["n_real"], value="ratio", low="ratio_low",
                            high="ratio_high", bound="ratio_bound", ylabel="n_e / n_r",
                            title="title", panel_key="lam", footnote="f(n): closed form")
    axis = figure.axes[0]
    assert [t.get_text() for t in axis.get_xticklabels()] == ["0", "100", "1000"]
    assert axis.get_xticks()[0] == pytest.approx(10.0)
    assert "f(n): closed form" in figure.get_suptitle()
    plt.close(figure)


def fresh_data_table(grid: dict, dim: int, chains: int, generations: int) -> pd.DataFrame:
    """The effective-size table `mad analyze` builds, for fresh data loops run here with
    mad_core (seed 0, n_init = n_r) and the default Gaussian reference curve."""
    largest = max(grid["n_real"]) + max(grid["n_syn"])
    curve = gaussian_reference_curve({"data.source": "gaussian", "data.dim": dim}, "w2_sq",
                                     log_spaced_sizes(2, 10 * largest))
    monotone = MonotoneCurve(curve.n, curve.value, curve.standard_error)
    rows = []
    for lam, n_real, n_syn in itertools.product(grid["lam"], grid["n_real"], grid["n_syn"]):
        spec = resolve_spec({"model": "gaussian", "loop": "fresh_data", "n_init": n_real,
                             "n_real": n_real, "n_syn": n_syn, "lam": lam, "chains": chains,
                             "generations": generations, "data": {"dim": dim}})
        series = [record["w2_sq_mean"] for record in SelfConsumingLoop(spec)]
        asymptote = pd.Series(vars(estimate_asymptote(np.array(series), generations)))
        rows.append({"lam": lam, "n_real": n_real, "n_syn": n_syn,
                     "converged": asymptote["converged"], "reference": curve.source,
                     **effective_size_row(asymptote, monotone, n_real)})
    return pd.DataFrame(rows)


def test_n_s_zero_gives_n_e_equal_to_n_r_and_its_figures_draw(tmp_path):
    """Fresh data loops with n_s in {0, 20}: at n_s = 0 every generation fits n_r fresh
    real samples, so the limit is f(n_r) and the 95 % interval of n_e / n_r contains 1
    (at another seed it would miss one time in 20; the earlier curve's shared draw shifted
    f by ~10 % at d = 1 and missed wherever the limit's interval was narrower than that).
    The phase diagrams and the n_e figure of `mad analyze` draw the n_s = 0 column."""
    table = fresh_data_table({"lam": [0.8, 1.0], "n_real": [20, 40], "n_syn": [0, 20]},
                             dim=2, chains=20, generations=60)
    control = table[table["n_syn"] == 0]
    assert control["converged"].all()
    assert ((control["ratio_low"] <= 1) & (1 <= control["ratio_high"])).all(), control
    report = Report(tmp_path)
    write_effective_size_figures(table, ["lam", "n_real", "n_syn"], "w2_sq", "", report)
    names = {path.name for path in report.written}
    assert names == {"phase_nr_ns.png", "phase_lam_ns.png", "effective_size.png"}
    for path in report.written:
        assert path.stat().st_size > 1000


def test_a_narrow_log_axis_labels_more_than_one_decade_mark():
    """n_e / n_r often spans 0.8-2.2: the axis must say more than "1" and "2"."""
    import matplotlib.pyplot as plt

    from analysis.figures.labels import log_scale_plain_ticks

    figure, axis = plt.subplots()
    axis.plot([1, 2, 3], [0.8, 1.4, 2.2])
    log_scale_plain_ticks(axis)
    figure.canvas.draw()
    low, high = axis.get_ylim()
    shown = [t.get_text() for t in axis.get_yticklabels()
             if t.get_text() and low <= t.get_position()[1] <= high]
    plt.close(figure)
    assert {"1", "1.5", "2"} <= set(shown) and len(shown) >= 4, shown


def test_the_unit_line_follows_cell_edges_between_cells_on_either_side_of_one():
    import matplotlib.pyplot as plt
    import numpy as np

    from analysis.figures.phase import draw_unit_boundary

    x_edges, y_edges = np.array([0.0, 1, 2, 3]), np.array([0.0, 1, 2])
    log_ratio = np.array([[0.5, 0.4, 0.3],
                          [0.2, -0.3, np.nan]])  # one cell below 1, one not converged
    keep = np.ones(3, bool), np.ones(2, bool)
    figure, axis = plt.subplots()
    assert draw_unit_boundary(axis, x_edges, y_edges, log_ratio, *keep)
    segments = sorted((tuple(line.get_xdata()), tuple(line.get_ydata()))
                      for line in axis.get_lines())
    plt.close(figure)
    # Left of the cell (x = 1) and below it (y = 1); nothing next to the nan cell.
    assert segments == [((1.0, 1.0), (1.0, 2.0)), ((1.0, 2.0), (1.0, 1.0))]
    figure, axis = plt.subplots()
    assert not draw_unit_boundary(axis, x_edges, y_edges, np.abs(log_ratio), *keep)
    plt.close(figure)
