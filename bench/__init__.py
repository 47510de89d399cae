"""tclr-zoo's benchmark suite: `python -m bench [--quick] [--json FILE] [--update-doc]`.

Every case times a fast path (A) against a baseline (B) in one process, alternating A and B after
a warm-up and taking medians, so both see the same machine state; figures are ratios or carry
their baseline beside them.
"""
