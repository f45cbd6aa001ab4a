"""Options of index building and queries, validated with pydantic.

Unknown keys and wrong types are rejected with a message that names the key
(:class:`~attrib_mlops.errors.SpecError`), so a typo never silently falls back
to a default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from attrib_mlops.options import parse_model_options

__all__ = ["IndexOptions", "QueryOptions", "parse_index_options", "parse_query_options"]


class IndexOptions(BaseModel):
    """How a training-data index is built (see ``docs/training-data.md``).

    Attributes:
        params: parameter names or glob patterns (``fnmatch``) to take gradients
            of; None = the default subset: the last ``last_blocks`` transformer
            blocks plus the output head, or every LoRA adapter weight when the
            model has PEFT adapters.
        last_blocks: how many of the last blocks the default subset takes.
        include_head: whether the default subset takes the output head. With
            tied input/output embeddings the head's gradient is that of its use
            as the output projection (``lm_head.weight``); the input-embedding
            use is frozen like the blocks below the subset.
        projection_dim: dimension of the seeded random projection (TracIn, grad-cos).
        projection: ``sjlt`` (sparse sign projection, never a dense matrix),
            ``identity`` (no projection, exact) or ``auto`` (identity when the
            subset has at most ``projection_dim`` parameters).
        projection_seed: seed of the projection (stored in the manifest).
        per_layer: store unprojected per-layer gradients for DataInf:
            ``auto`` (when N x P x 2 bytes <= ``max_per_layer_bytes``),
            ``always`` or ``never``.
        max_per_layer_bytes: size budget of the unprojected gradients in ``auto``.
        batch_size: training examples per gradient batch.
        max_grad_bytes: memory bound on one batch of per-example gradients (float32);
            batches are split below ``batch_size`` to respect it.
        per_example: ``vmap`` (torch.func, batched), ``loop`` (one autograd call
            per example) or ``auto`` (vmap, falling back to the loop when the
            model cannot run under vmap).
        loss_reduction: per-example training loss: ``mean`` (over the loss tokens,
            as a causal-LM head computes it) or ``sum``.
        max_length: longest tokenised example (longer ones are cut on the right);
            None = the model's context.
        add_special_tokens: passed to the tokenizer for prompts and texts.
        text_field / prompt_field / target_field / id_field: record fields; None =
            detect (``text``; ``prompt`` with ``target``/``completion``/``response``/``output``).
        shard_rows: rows per safetensors shard of the index.
        device: ``cpu``, ``cuda``, ``cuda:1``... for a model loaded from the first
            checkpoint (None = as loaded); a ``model`` passed in computes where it is.
        dtype: dtype for models loaded from checkpoints (None = as saved).
        trust_remote_code: passed to ``from_pretrained`` (off by default).
        show_progress: tqdm progress bars.
        model: a loaded template model (for example a PEFT model) instead of
            loading the first checkpoint; it is never modified.
        out_dir: folder of the index (None = a new temporary folder). An existing
            index there is extended with new checkpoints when it matches.
        checkpoint_names: display names of the checkpoints (default: folder names).
    """

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    params: list[str] | None = None
    last_blocks: int = Field(1, ge=0)
    include_head: bool = True
    projection_dim: int = Field(1024, ge=1)
    projection: Literal["auto", "sjlt", "identity"] = "auto"
    projection_seed: int = 0
    per_layer: Literal["auto", "always", "never"] = "auto"
    max_per_layer_bytes: int = Field(2 * 1024**3, ge=0)
    batch_size: int = Field(16, ge=1)
    max_grad_bytes: int = Field(512 * 1024**2, ge=1)
    per_example: Literal["auto", "vmap", "loop"] = "auto"
    loss_reduction: Literal["mean", "sum"] = "mean"
    max_length: int | None = Field(None, ge=2)
    add_special_tokens: bool = True
    text_field: str | None = None
    prompt_field: str | None = None
    target_field: str | None = None
    id_field: str = "id"
    shard_rows: int = Field(65536, ge=1)
    device: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    trust_remote_code: bool = False
    show_progress: bool = True
    model: Any = None
    out_dir: str | None = None
    checkpoint_names: list[str] | None = None


class QueryOptions(BaseModel):
    """How a query runs against an index.

    Attributes:
        checkpoints: where the checkpoint weights are now, one per indexed
            checkpoint (None = the locations recorded in the manifest).
        max_new_tokens: length of the model's generation when no target is given.
        chunk_rows: index rows per chunk of the matrix products (bounds memory).
        compute: ``auto`` (float16 matrix-vector products of float16 rows on the
            CPU, float32 accumulation; float32 elsewhere) or ``float32``.
        damping: DataInf damping factor: lambda_l = damping x mean ||g_l||^2 / d_l.
        per_example: how the query gradient is taken (as in :class:`IndexOptions`).
        device: device for a model loaded from a reference (None = as loaded); a
            model passed in computes where it is, and so do the index's chunks.
        show_progress: tqdm progress bars.
        trust_remote_code: passed to ``from_pretrained`` when a reference is loaded.
    """

    model_config = ConfigDict(extra="forbid")

    checkpoints: list[str] | None = None
    max_new_tokens: int = Field(32, ge=1)
    chunk_rows: int = Field(65536, ge=1)
    compute: Literal["auto", "float32"] = "auto"
    damping: float = Field(0.1, gt=0)
    per_example: Literal["auto", "vmap", "loop"] = "auto"
    device: str | None = None
    show_progress: bool = False
    trust_remote_code: bool = False


def _parse(cls: type[BaseModel], where: str, options: Any, kwargs: dict[str, Any]) -> Any:
    return parse_model_options(cls, where, options, kwargs)


def parse_index_options(options: dict[str, Any] | IndexOptions | None = None, **kwargs: Any) -> IndexOptions:
    """Validate index options; raises :class:`SpecError` naming a bad key.

    >>> parse_index_options(projection_dim=256).projection_dim
    256
    """
    return _parse(IndexOptions, "training-index options", options, kwargs)


def parse_query_options(options: dict[str, Any] | QueryOptions | None = None, **kwargs: Any) -> QueryOptions:
    """Validate query options; raises :class:`SpecError` naming a bad key."""
    return _parse(QueryOptions, "training-data query options", options, kwargs)
