"""References (REF) to the two sides of a check: an MLflow run step or a local results folder.

Grammar::

    REF        := MLFLOW_REF | FOLDER_REF
    MLFLOW_REF := "runs:/" RUN_ID [ "@" STEP ] [ "#" MODEL ]
    STEP       := integer >= 0 | "latest"
    FOLDER_REF := PATH [ "@" MODEL ]

Example:
    >>> parse_ref("runs:/0a1b2c@latest").latest
    True
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import AttribError

__all__ = ["CannotCompare", "Ref", "parse_ref"]


class CannotCompare(AttribError):
    """The two sides cannot be compared; the message says exactly why (exit code 2)."""


@dataclass(frozen=True)
class Ref:
    """A parsed REF (see the module docstring for the grammar).

    Attributes:
        kind: ``"mlflow"`` or ``"folder"``.
        text: the REF as given.
        run_id: MLflow run id (``kind == "mlflow"``).
        step: the step asked for; None when not given or ``latest``.
        latest: True when ``@latest`` was written explicitly.
        model: the model asked for (``#model`` / ``@model``), or None.
        path: the results folder (``kind == "folder"``).
    """

    kind: Literal["mlflow", "folder"]
    text: str
    run_id: str | None = None
    step: int | None = None
    latest: bool = False
    model: str | None = None
    path: str | None = None

    def __str__(self) -> str:
        return self.text


def parse_ref(ref: str | Ref) -> Ref:
    """Parse a REF: ``runs:/<run_id>[@<step>|@latest][#<model>]`` or ``<folder>[@<model>]``.

    Raises:
        CannotCompare: malformed reference, or a folder that does not exist.

    Example:
        >>> parse_ref("runs:/0a1b2c@40#ft")
        Ref(kind='mlflow', text='runs:/0a1b2c@40#ft', run_id='0a1b2c', step=40, latest=False, model='ft', path=None)
    """
    if isinstance(ref, Ref):
        return ref
    if not isinstance(ref, (str, os.PathLike)):
        raise CannotCompare(f"a reference must be a string such as 'runs:/<run_id>@<step>', got {type(ref).__name__}")
    text = os.fspath(ref).strip()
    if not text:
        raise CannotCompare("empty reference; expected 'runs:/<run_id>[@<step>|@latest][#<model>]' or a results folder")
    if text.startswith("runs:/"):
        body = text[len("runs:/"):]
        model = None
        if "#" in body:
            body, model = body.rsplit("#", 1)
            if not model:
                raise CannotCompare(f"reference '{text}': empty model name after '#'")
        step, latest = None, False
        if "@" in body:
            body, s = body.rsplit("@", 1)
            if s == "latest":
                latest = True
            elif s.isdigit():
                step = int(s)
            else:
                raise CannotCompare(f"reference '{text}': step '{s}' is neither a non-negative integer nor 'latest'")
        run_id = body.strip("/")
        if not run_id or "/" in run_id:
            raise CannotCompare(f"reference '{text}': expected 'runs:/<run_id>[@<step>|@latest][#<model>]'")
        return Ref("mlflow", text, run_id=run_id, step=step, latest=latest, model=model)
    if "://" in text.split("@")[0] or text.startswith("models:/"):
        raise CannotCompare(f"reference '{text}': only 'runs:/<run_id>...' MLflow references and local results "
                            "folders are supported")
    if Path(text).exists():
        return Ref("folder", text, path=text)
    if "@" in text:
        path, model = text.rsplit("@", 1)
        if Path(path).exists() and model:
            return Ref("folder", text, path=path, model=model)
    raise CannotCompare(f"reference '{text}': no such results folder (and not a 'runs:/<run_id>' reference); "
                        f"working directory: {Path.cwd()}")
