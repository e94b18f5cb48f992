"""The example business lines that ``replication demo`` runs.

Empty in the source tree: a wheel's build maps the repository's ``contracts/``
and ``examples/`` (their one copy) in here (``[tool.setuptools.package-dir]`` in
pyproject.toml), and the demo imports them by their own names, as their
manifests say.
"""
