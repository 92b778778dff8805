"""One module per ``pinsignal`` sub-command: ``configure(parser)`` and ``run(args) -> int``."""
