"""The probe set as an MLflow dataset input of the run (context ``attribution-probe``).

The manifest's ``probe`` section is the record; the dataset input makes the probe set
visible in the MLflow UI's run page and searchable like any training or eval dataset.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from attrib_mlops.tracking.errors import is_unreachable

__all__ = ["log_probe_input", "PROBE_CONTEXT"]

logger = logging.getLogger("attrib_mlops.tracking.writer")

PROBE_CONTEXT = "attribution-probe"
_COLUMNS = ("id", "prompt", "target", "ground_truth")


def log_probe_input(client: Any, run_id: str, section: dict[str, Any], manifest_path: str) -> None:
    """Log the probe ``section`` (the manifest's) as a dataset input of ``run_id``.

    A failure other than an unreachable server is only a warning: the manifest already holds the probe set.

    Raises:
        Exception: the server is unreachable (the caller keeps the probe set spooled).
    """
    from mlflow.entities import Dataset, DatasetInput, InputTag

    schema = {"mlflow_colspec": [{"type": "string", "name": n, "required": True} for n in _COLUMNS]}
    ds = Dataset(
        name="attrib-probe",
        digest=section["fingerprint"][:16],
        source_type="attrib_mlops",
        source=json.dumps({"uri": f"runs:/{run_id}/{manifest_path}"}),
        schema=json.dumps(schema),
        profile=json.dumps({"num_rows": section["n"]}),
    )
    try:
        client.log_inputs(run_id, [DatasetInput(ds, tags=[InputTag("mlflow.data.context", PROBE_CONTEXT)])])
    except Exception as e:  # noqa: BLE001 - the manifest is the record; the input is a convenience
        if is_unreachable(e):
            raise
        logger.warning("could not log the probe set as an MLflow dataset input: %s", e)
