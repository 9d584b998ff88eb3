"""MAD's figures from a sweep's tables: metric vs generation, phase diagrams of n_e / n_r,
n_e / n_r vs n_s, and the asymptote vs n_init. Every function returns a matplotlib
Figure; the caller saves it. Figures are drawn off-screen (Agg backend)."""

import matplotlib

matplotlib.use("Agg")
