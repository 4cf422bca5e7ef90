"""trusttango's benchmarks, side by side with each anchor library in one run: run one as
``python -m benchmarks.NAME --help`` from the repository root. Shared helpers are in
:mod:`benchmarks.harness`; figures go to ``benchmarks/RESULTS.md``."""
