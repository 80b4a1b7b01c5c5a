"""Tools that drive the node from outside: demo, benchmarks, soak and load generators.

They are installed with the package and have their own commands, but the node's modules
never import them (import-linter contract in pyproject.toml).
"""
