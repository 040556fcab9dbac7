"""Hostile input and faults (issue 6): fuzzed documents, broken plugins, failing trials, killed processes.

FAULTS.md at the repository root lists every fault tried here, what nascore does about it, and the test.
"""
