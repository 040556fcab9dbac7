"""(being written)"""
from nascore import hookimpl


@hookimpl
def nascore_blocks():
    return []
