"""nascore's built-in blocks, installed as ``nascore_plugins``.

Each module is a plain plugin registered through the ``nascore`` entry-point group, exactly like a third-party
package; none is special. :mod:`nascore_plugins.common` holds the parameter definitions they share.
"""
