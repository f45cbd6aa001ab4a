"""``python -m attrib_mlops.cli``: the command line."""

from attrib_mlops.cli import app

app()
