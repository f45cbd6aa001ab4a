"""Options of AT2 training and inference, validated with pydantic (unknown keys rejected by name)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...options import AttributeOptions, parse_model_options

__all__ = ["MIN_MASKS", "MIN_EXAMPLES", "AT2TrainOptions", "AT2Options", "parse_train_options", "parse_at2_options"]

#: Fewest ablation masks per example: a Pearson correlation over fewer is mostly noise.
MIN_MASKS = 8
#: Fewest training examples (after the held-out split and dropping constant-outcome examples).
MIN_EXAMPLES = 4


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    target_span: tuple[int, int] | None = None
    max_new_tokens: int = Field(16, ge=1)
    chat_template: str | None = None
    add_generation_prompt: bool | None = None
    max_attention_elements: int = Field(2**27, ge=1)
    device: str | None = None
    dtype: Literal["float32", "bfloat16", "float16"] | None = None
    trust_remote_code: bool = False
    show_progress: bool = False

    @field_validator("target_span")
    @classmethod
    def _span(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and not 0 <= v[0] < v[1]:
            raise ValueError("must be (start, end) with 0 <= start < end (target token indices)")
        return v

    def load_options(self) -> AttributeOptions:
        return AttributeOptions(device=self.device, dtype=self.dtype, trust_remote_code=self.trust_remote_code)


class AT2TrainOptions(_Common):
    """Options of :func:`~attrib_mlops.sources.at2.train.train_source_estimator`.

    Attributes:
        n_ablations: random keep/drop masks per example (the training signal; AT2 uses 32).
        n_holdout: further random masks per example, used for training too and for the
            held-out LDS of the ablation surrogate and of the estimator.
        keep_prob: probability that a source is kept in a mask.
        ablation: ``mask`` (AT2's: attention mask, positions kept) or ``remove`` (text cut out).
        lasso_alpha: L1 strength of the ablation surrogate (reported next to AT2).
        seed: seeds the masks, the held-out split and the training batches (deterministic).
        holdout_fraction: share of examples held out for the estimator's quality (0 = none).
        n_steps: Adam steps.
        lr: Adam learning rate (cosine-annealed to 0, as AT2 does).
        batch_size: examples per step (all of them when fewer).
        max_grad_norm: gradient clipping.
        non_negative: clamp weights at 0 after every step (AT2's option; off by default).
        topk: the ``k`` of the held-out top-k log-probability drop (remove each scorer's top-k
            sources from the held-out prompts; ``()`` skips these forwards).
        target_span / max_new_tokens / chat_template / add_generation_prompt: as in
            :func:`attrib_mlops.attribute_sources`.
        max_tokens_per_forward: memory bound of the ablation forwards.
        max_attention_elements: memory bound of the feature forwards (rows x layers x heads x length^2).
        device / dtype / trust_remote_code: model loading.
        show_progress: progress bars (ablations, features, training steps).
    """

    n_ablations: int = Field(64, ge=MIN_MASKS)
    n_holdout: int = Field(32, ge=0)
    keep_prob: float = Field(0.5, gt=0.0, lt=1.0)
    ablation: Literal["mask", "remove"] = "mask"
    lasso_alpha: float = Field(0.01, ge=0.0)
    seed: int = 0
    holdout_fraction: float = Field(0.25, ge=0.0, lt=1.0)
    n_steps: int = Field(1000, ge=1)
    lr: float = Field(1e-2, gt=0.0)
    batch_size: int = Field(256, ge=1)
    max_grad_norm: float = Field(1.0, gt=0.0)
    non_negative: bool = False
    topk: tuple[int, ...] = (1, 3)
    max_tokens_per_forward: int = Field(8192, ge=1)

    @field_validator("topk")
    @classmethod
    def _positive_k(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(k < 1 for k in v):
            raise ValueError("every k must be >= 1")
        return tuple(sorted(set(v)))

    def ablation_options(self) -> dict[str, Any]:
        """Options for the ablation engine (:func:`attrib_mlops.attribute_sources`)."""
        return dict(
            n_ablations=self.n_ablations, n_holdout=self.n_holdout, keep_prob=self.keep_prob,
            ablation=self.ablation, lasso_alpha=self.lasso_alpha, seed=self.seed, topk=(), evaluate=True,
            target_span=self.target_span, max_new_tokens=self.max_new_tokens, chat_template=self.chat_template,
            add_generation_prompt=self.add_generation_prompt, max_tokens_per_forward=self.max_tokens_per_forward,
            show_progress=self.show_progress,
        )

    def key_dict(self) -> dict[str, Any]:
        d = self.model_dump()
        for k in ("show_progress", "device", "max_tokens_per_forward", "max_attention_elements"):
            d.pop(k, None)
        return d


class AT2Options(_Common):
    """Options of ``attribute_sources(..., method="at2" | "attention")``.

    Attributes:
        estimator: a :class:`~attrib_mlops.sources.at2.estimator.SourceEstimator`, or a folder /
            MLflow URI to load one from (required for ``at2``; ``attention`` uses uniform weights).
        target_span: target-token range the scores are for (None = the whole target); per-token
            scores are kept in ``info["token_scores"]`` so any span is a mean away.
        max_attention_elements: memory bound per forward (rows x layers x heads x length^2).
        others: as in :func:`attrib_mlops.attribute_sources`.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    estimator: Any = None

    def key_dict(self) -> dict[str, Any]:
        d = self.model_dump(exclude={"estimator"})
        for k in ("show_progress", "device", "max_attention_elements"):
            d.pop(k, None)
        return d


def _hint(msg: str) -> str:
    return f" (AT2 needs at least {MIN_MASKS} masks per example)" if "n_ablations" in msg and "greater than or equal" in msg else ""


def _parse(cls: type[BaseModel], what: str, options: dict[str, Any] | BaseModel | None, kwargs: dict[str, Any]):
    return parse_model_options(cls, what, options, kwargs, hint=_hint)


def parse_train_options(options: dict[str, Any] | AT2TrainOptions | None = None, **kwargs: Any) -> AT2TrainOptions:
    """Validate AT2 training options; :class:`~attrib_mlops.errors.SpecError` names a bad key.

    >>> parse_train_options(n_steps=10).n_steps
    10
    """
    return _parse(AT2TrainOptions, "AT2 training options", options, kwargs)


def parse_at2_options(options: dict[str, Any] | AT2Options | None = None, **kwargs: Any) -> AT2Options:
    """Validate AT2 inference options.

    >>> parse_at2_options(target_span=(0, 1)).target_span
    (0, 1)
    """
    return _parse(AT2Options, "AT2 options", options, kwargs)
