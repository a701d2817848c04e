"""Foundations every other package may use: errors, paths, file locks, inventories, dates,
and who runs techops.

Imports nothing from the rest of `runner`.
"""
