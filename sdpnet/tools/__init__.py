"""The command line (``python -m sdpnet``): one module per subcommand, sharing ``cli`` (the table of
subcommands, argument parsing, error -> one line and exit status, output folders), ``runs`` (a trained model
from a run folder or export), ``images`` (image files as the run validates them) and ``study`` (the Optuna side
of ``search``: samplers, pruners, storage, liveness of workers)."""
