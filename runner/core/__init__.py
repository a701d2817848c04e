"""Foundations every other package may use: errors, paths, file locks, inventories, dates.

Imports nothing from the rest of `runner`.
"""
