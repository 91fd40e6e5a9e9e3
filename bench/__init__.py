"""Benchmarks of the appliance against the peers users would otherwise run (issue 9).

``python -m bench`` (or ``make bench``) prints one table of ratios; see docs/performance.md.
"""
