"""``python -m hbfp_dse``: the ``hbfp-dse`` command, where its script is not on the PATH."""

from .cli.app import main

main()
