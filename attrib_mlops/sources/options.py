"""Options of a context-source attribution call, validated with pydantic.

Unknown keys and wrong types are rejected with a message that names the key
(the same wording as :mod:`attrib_mlops.options`), so a typo never silently
falls back to a default.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..options import AttributeOptions, parse_model_options

__all__ = ["SourceOptions", "parse_source_options"]


class SourceOptions(BaseModel):
    """Everything that changes a source attribution or how it is computed.

    Attributes:
        n_ablations: random keep/drop masks the surrogate is fitted on (ContextCite's default 64).
        keep_prob: probability that a source is kept in a random mask.
        seed: seed of the mask generator (masks depend only on the seed and the number of sources).
        ablation: ``remove`` drops a source's text and re-tokenises the prompt (ContextCite);
            ``mask`` zeroes its tokens in the attention mask with positions unchanged (AT2).
        estimator: ``lasso`` (sparse linear surrogate on standardised masks, ContextCite) or
            ``leave_one_out`` (exact: one forward per source with only that source dropped).
        lasso_alpha: L1 strength of the Lasso, on the per-token scale (ContextCite's 0.01).
        n_holdout: held-out random masks for the LDS quality score (0 = no LDS).
        topk: the ``k`` of the top-k log-probability drop check.
        n_random: random ``k``-subsets averaged for the top-k comparison.
        evaluate: compute the held-out quality (LDS and top-k drop); off saves forwards.
        target_span: ``(start, end)`` target-token range the scores are for (None = the whole
            target); other spans are a refit away (:meth:`SourceAttribution.for_target_tokens`).
        max_new_tokens: continuation length when ``targets`` is None (greedy).
        max_tokens_per_forward: memory bound: at most this many tokens (rows x length) per forward.
        padding: side on which variable-length ablated prompts are padded (``remove`` mode);
            ``left`` lets the model compute logits for the target positions only.
        chat_template: a Jinja chat template for tokenizers that have none (conversations only).
        add_generation_prompt: append the template's assistant header (None = when the
            conversation does not end with an assistant message).
        device / dtype / trust_remote_code: model loading, as in :class:`~attrib_mlops.options.AttributeOptions`.
        show_progress: a progress bar over samples.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_ablations: int = Field(64, ge=2)
    keep_prob: float = Field(0.5, gt=0.0, lt=1.0)
    seed: int = 0
    ablation: Literal["remove", "mask"] = "remove"
    estimator: Literal["lasso", "leave_one_out"] = "lasso"
    lasso_alpha: float = Field(0.01, ge=0.0)
    n_holdout: int = Field(32, ge=0)
    topk: tuple[int, ...] = (1, 3, 5)
    n_random: int = Field(4, ge=1)
    evaluate: bool = True
    target_span: tuple[int, int] | None = None
    max_new_tokens: int = Field(16, ge=1)
    max_tokens_per_forward: int = Field(8192, ge=1)
    padding: Literal["left", "right"] = "left"
    chat_template: str | None = None
    add_generation_prompt: bool | None = None
    device: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    trust_remote_code: bool = False
    show_progress: bool = False

    @field_validator("topk")
    @classmethod
    def _positive_k(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 for k in v):
            raise ValueError("every k must be >= 1")
        return tuple(sorted(set(v)))

    @field_validator("target_span")
    @classmethod
    def _span(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 0 <= v[0] < v[1]:
            raise ValueError("must be (start, end) with 0 <= start < end (target token indices)")
        return v

    def load_options(self) -> AttributeOptions:
        """The model-loading subset, for :func:`attrib_mlops.engines.prep.load_model_and_tokenizer`."""
        return AttributeOptions(device=self.device, dtype=self.dtype, trust_remote_code=self.trust_remote_code)

    def key_dict(self) -> dict[str, Any]:
        """Options that change results (for provenance and cache keys)."""
        d = self.model_dump()
        for k in ("show_progress", "device", "max_tokens_per_forward", "padding"):
            d.pop(k, None)
        return d


def parse_source_options(options: dict[str, Any] | SourceOptions | None = None, **kwargs: Any) -> SourceOptions:
    """Validate options; raises :class:`~attrib_mlops.errors.SpecError` naming the bad key.

    >>> parse_source_options(n_ablations=32).n_ablations
    32
    """
    return parse_model_options(SourceOptions, "source attribution options", options, kwargs)
