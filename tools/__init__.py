"""The command-line and measurement layer around the library.

The library (``common/`` and ``backends/``) is what a user imports to stylize an image in
one framework. ``tools/`` is what this project builds around it to compare the frameworks:
the argument types of ``compare.py`` and the benchmarks, the ``Job``/``Result`` records
that cross a process boundary, the isolated-worker runner and the workers it starts, the
progress bars, the report's tables and pictures, and the agreement, failure and estimate
measurements. Nothing in ``common/`` or ``backends/`` imports from here.
"""
