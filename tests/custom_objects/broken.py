"""A module that fails while it is imported (the ``--import`` error case)."""

raise RuntimeError("this module refuses to be imported")
