"""User tools around a running node: play, record, web view, export, demo.

Installed with their own commands; the node never imports them (import-linter layers contract).
"""
