"""Options of an attribution call, validated with pydantic.

Unknown options and wrong types are rejected with a message that names the
key, so a typo in a job spec never silently falls back to a default.
"""

from __future__ import annotations

from collections.abc import Callable

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import SpecError

__all__ = ["AttributeOptions", "parse_options", "format_validation_error"]


class AttributeOptions(BaseModel):
    """Everything that changes an attribution result or how it is computed.

    Attributes:
        batch_size: samples per forward pass in the native engine.
        max_new_tokens: continuation length when ``targets`` is None (greedy).
        dim_aggregation: how a per-cell vector becomes a scalar for gradient
            methods (``l2`` as Inseq does, ``sum`` or ``mean``).
        n_steps: integration steps for integrated gradients.
        ig_method: integration rule (``gausslegendre`` as Captum's default, or
            ``riemann_trapezoid``/``riemann_left``/``riemann_right``/``riemann_middle``).
        baseline: reference for integrated gradients and occlusion: ``unk``
            (the tokenizer's unknown-token embedding, Inseq's default; EOS stays
            EOS) or ``zeros``.
        layers: attention layers to average (None = all; negative indices ok).
        heads: attention heads to average (None = all).
        truncate: if prompt+target exceed the context, drop the oldest prompt
            tokens instead of raising.
        device: ``cpu``, ``cuda``, ``cuda:1``... (None = where the model is).
        dtype: compute dtype if the model is loaded from a reference
            (``float32``, ``bfloat16``, ``float16``); loaded models keep theirs.
        vjp: how the native engine takes per-target gradients: ``loop`` (one
            backward per target position over the whole batch), ``vmap``
            (batched vector-Jacobian products in one call; best on GPUs) or
            ``auto`` (vmap on CUDA, loop on CPU).
        max_tokens_per_forward: memory bound of the native engine: at most this many
            tokens (sequences x length) go through one forward pass.
        trust_remote_code: passed to ``from_pretrained`` (off by default).
        show_progress: progress bars.
        method_kwargs: extra keyword arguments for the Inseq method.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(8, ge=1)
    max_new_tokens: int = Field(16, ge=1)
    dim_aggregation: Literal["l2", "sum", "mean"] = "l2"
    n_steps: int = Field(50, ge=1)
    ig_method: Literal["gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle"] = (
        "gausslegendre"
    )
    baseline: Literal["unk", "zeros"] = "unk"
    layers: list[int] | None = None
    heads: list[int] | None = None
    truncate: bool = False
    device: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    vjp: Literal["auto", "loop", "vmap"] = "auto"
    max_tokens_per_forward: int = Field(4096, ge=1)
    trust_remote_code: bool = False
    show_progress: bool = False
    method_kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("layers", "heads")
    @classmethod
    def _non_empty(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and len(v) == 0:
            raise ValueError("must be None (all) or a non-empty list of indices")
        return v

    def key_dict(self) -> dict[str, Any]:
        """Options that change results (for cache keys and provenance)."""
        d = self.model_dump()
        for k in ("batch_size", "show_progress", "device", "vjp", "max_tokens_per_forward"):
            d.pop(k, None)
        return d


def format_validation_error(err: ValidationError, where: str) -> str:
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{loc}'")
        else:
            parts.append(f"'{loc}': {e['msg']} (got {e.get('input')!r})")
    return f"invalid {where}: " + "; ".join(parts)


def parse_model_options(cls: type[BaseModel], what: str, options: Any = None, kwargs: dict[str, Any] | None = None,
                        hint: Callable[[str], str] | None = None) -> Any:
    """Validate ``options`` (a dict, an instance of ``cls`` or None) updated by ``kwargs`` into ``cls``.

    The one options parser of every API (token, sources, AT2, training data): an unknown or bad
    key raises :class:`SpecError` naming it and listing the valid options (``hint(message)``
    may append advice).

    >>> parse_model_options(AttributeOptions, "attribution options", {"n_steps": 8}).n_steps
    8
    """
    kwargs = kwargs or {}
    if isinstance(options, cls):
        if not kwargs:
            return options
        options = options.model_dump()
    merged = dict(options or {})
    merged.update(kwargs)
    try:
        return cls(**merged)
    except ValidationError as err:
        msg = format_validation_error(err, what) + f". Valid options: {', '.join(cls.model_fields)}"
        raise SpecError(msg + (hint(msg) if hint else "")) from None


def parse_options(options: dict[str, Any] | AttributeOptions | None = None, **kwargs: Any) -> AttributeOptions:
    """Validate options; raises :class:`SpecError` naming the bad key."""
    return parse_model_options(AttributeOptions, "attribution options", options, kwargs)


def parse_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)``; a syntax error is a :class:`SpecError` naming ``where``, the line and column.

    >>> parse_yaml("a: 1", "policy file 'p.yaml'")
    {'a': 1}
    """
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(f"{where} is not valid YAML: {' '.join(str(problem).split())}{at}") from None
