"""The ROS-free core: segmentation, mask sets, prompts, tracking, obstacles and their limits.

Plain Python, NumPy and torch, tested alone; nothing here imports ROS (import-linter contract).
"""
