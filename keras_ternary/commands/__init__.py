"""The subcommands of ``python -m keras_ternary``, one module each.

Every module exposes ``add_arguments(parser)``, ``run(args) -> int`` and ``NEEDS_TENSORFLOW``
(the convention of :mod:`keras_ternary.cliutil`); :mod:`keras_ternary.cli` assembles them
into one parser. Importing a module here imports no TensorFlow: ``run`` imports what it
needs. Options shared by several subcommands are in :mod:`keras_ternary.commands.options`.
"""
