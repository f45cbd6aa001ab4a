"""MLflow LoggedModels: one per saved checkpoint, and the ids attribution metrics are linked to.

``create_checkpoint_model`` registers a saved checkpoint folder as a LoggedModel named
``checkpoint-<step>`` of the run (the training callback does it on save);
:class:`ModelIds` checks once per id that a ``model_id`` given to the writer is a
LoggedModel of the tracking server, so metrics are linked to it (or logged without it,
with a warning, when it is not, or when the server or MLflow has no LoggedModels).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from attrib_mlops.tracking.errors import is_unreachable

__all__ = ["create_checkpoint_model", "ModelIds"]

logger = logging.getLogger("attrib_mlops.tracking.writer")


def create_checkpoint_model(client: Any, run_id: str, step: int, checkpoint: str) -> str | None:
    """A READY LoggedModel ``checkpoint-<step>`` of ``run_id`` for a checkpoint folder; None if unsupported.

    Example:
        >>> create_checkpoint_model(client, run_id, 200, "out/checkpoint-200")   # doctest: +SKIP
        'm-4f1c...'
    """
    try:
        run = client.get_run(run_id)
        lm = client.create_logged_model(
            experiment_id=run.info.experiment_id,
            name=f"checkpoint-{step}",
            source_run_id=run_id,
            tags={"attrib_mlops.checkpoint_path": str(checkpoint), "attrib_mlops.step": str(step)},
        )
        client.finalize_logged_model(lm.model_id, "READY")
        return lm.model_id
    except Exception as e:  # noqa: BLE001 - older servers have no LoggedModel API
        logging.getLogger("attrib_mlops.callbacks").debug("no LoggedModel for checkpoint %s: %s", checkpoint, e)
        return None


class ModelIds:
    """Which ``model_id``\\ s metrics may carry (checked once per id against the tracking server)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._checked: dict[str, str | None] = {}

    def check(self, model_id: str | None) -> str | None:
        """``model_id`` when it is a LoggedModel the server knows, else None.

        Raises:
            Exception: the server is unreachable (nothing is cached then).
        """
        if not model_id:
            return None
        if model_id not in self._checked:
            from mlflow.entities import Metric
            from mlflow.exceptions import MlflowException

            if "model_id" not in inspect.signature(Metric.__init__).parameters:
                self._checked[model_id] = None
            else:
                try:
                    self.client.get_logged_model(model_id)
                    self._checked[model_id] = model_id
                except MlflowException as e:
                    if is_unreachable(e):
                        raise
                    logger.warning("model_id %r is not a LoggedModel of this tracking server (%s); "
                                   "metrics are logged without it", model_id, str(e)[:200])
                    self._checked[model_id] = None
                except AttributeError:  # client without LoggedModel support
                    self._checked[model_id] = None
        return self._checked[model_id]
