"""Hook specifications: every way a plugin can extend nascore.

Like pytest's hookspec module, each hook is a function whose body is only its docstring. A plugin is any module or
object with functions of these names marked by :data:`nascore.hookimpl`; it may accept fewer arguments than the
spec (hooks grow by adding arguments only). Plugins are found through the ``nascore`` entry-point group; the
built-in blocks travel that same road.

Collected hooks return a list from every plugin. Each entry is checked, and a plugin that raises or returns garbage
is reported by name while the others still load.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("nascore")
hookimpl = pluggy.HookimplMarker("nascore")


# -- architecture ---------------------------------------------------------------------------------------------------


@hookspec
def nascore_blocks():
    """Return the blocks this plugin provides, as a sequence of :class:`nascore.BlockSpec`.

    Collected: every plugin's list is gathered. Names must be unique across plugins; a clash is an error naming
    both plugins unless the user picks a winner (``NASCORE_PREFER=block=plugin`` or ``load_registry(prefer=...)``).
    """


@hookspec
def nascore_genotypes():
    """Return the genotype kinds this plugin provides, as a sequence of :class:`nascore.nas.genotypes.GenotypeSpec`.

    A kind is what ``{genotype: KIND}`` in a search space samples: the ops its cell accepts, the decisions one
    genotype is made of, how they compose into the cell's ``genotype`` string, and the cell's parser, formatter and
    canonical form. The plugin that provides a cell block provides its kind. Collected, unique names, like blocks.
    """


# -- search ---------------------------------------------------------------------------------------------------------


@hookspec
def nascore_strategies():
    """Return the search strategies this plugin provides, as a sequence of :class:`nascore.nas.strategies.StrategySpec`.

    Collected, unique names, like blocks.
    """


@hookspec
def nascore_datasets():
    """Return the data sets this plugin provides, as a sequence of :class:`nascore.training.data.DatasetSpec`.

    Collected, unique names, like blocks.
    """


@hookspec
def nascore_evaluators():
    """Return the trial evaluators this plugin provides, as a sequence of :class:`nascore.nas.evaluators.EvaluatorSpec`.

    An evaluator turns a built model and a data set into per-epoch metrics (``val_acc`` at least); the built-in
    ``train`` evaluator trains from scratch. Collected, unique names, like blocks.
    """


@hookspec
def nascore_exporters():
    """Return the export formats this plugin provides, as a sequence of :class:`nascore.exporting.spec.ExporterSpec`.

    Collected, unique names, like blocks.
    """
