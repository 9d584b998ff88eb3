"""From a sweep's MLflow records to MAD's numbers and figures (docs/analysis.md).

    from analysis.load import load_sweep          # MLflow -> tidy table (cached)
    from analysis.report import analyze           # every table and figure that applies
    from mad_core.convergence import estimate_asymptote   # shared with the loop's stop rule
    from analysis.effective_size import MonotoneCurve
    from analysis.reference import gaussian_reference_curve, baseline_reference_curve
    from analysis.gaussian_theory import expected_trace_and_mean_error

`mad analyze` (analysis/cli.py) runs load_sweep then analyze. Nothing here re-runs a
trial; the only simulation is the Gaussian reference curve f(n).
"""
