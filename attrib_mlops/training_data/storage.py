"""The on-disk training-data index: a folder of safetensors shards and a JSON manifest.

Layout (see ``docs/training-data.md``)::

    <index>/
      manifest.json              checkpoints, learning rates, subset, projection, fingerprints
      examples.jsonl             one {"id", "text", "prompt_chars"} per training example, in order
      ckpt-000/rows-00000.safetensors
          grads   [rows, dim] float16   projected gradient / scale (each row's max |value| is 1)
          scale   [rows] float32        the per-row scale
          norm    [rows] float32        L2 norm of the projected gradient
          sqnorm  [rows, L] float32     squared L2 norm of the unprojected gradient, per layer
      ckpt-000/layers-00000.safetensors   (per-layer gradients for DataInf, when stored)
          <param name>         [rows, numel] float16
          <param name>::scale  [rows] float32

No pickle anywhere. Shards are read in row chunks through safetensors' memory
map, so a query never holds more than one chunk of an index in memory.
A checkpoint's folder is written completely (under a temporary name, then
renamed) before the manifest lists it: a reader never sees half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import NoTrainingIndexError, TrainingIndexError
from .subset import ParamSpec

__all__ = ["FORMAT", "VERSION", "TrainingIndex", "IndexWriter", "CheckpointWriter", "write_json_atomic"]

FORMAT = "attrib-mlops-training-index"
VERSION = 1
MANIFEST = "manifest.json"
EXAMPLES = "examples.jsonl"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def _rowscale(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows divided by their max |value| (float16) and that scale (float32); zero rows stay zero."""
    scale = torch.linalg.vector_norm(x, ord=float("inf"), dim=1)
    inv = torch.where(scale > 0, 1.0 / scale, torch.zeros_like(scale))
    return (x * inv[:, None]).to(torch.float16).cpu(), scale.to(torch.float32).cpu()


class CheckpointWriter:
    """Appends per-example gradients of one checkpoint, shard by shard."""

    def __init__(self, folder: Path, specs: list[ParamSpec], shard_rows: int, per_layer: bool):
        self.folder, self.specs, self.shard_rows, self.per_layer = folder, specs, shard_rows, per_layer
        self.rows: list[dict[str, torch.Tensor]] = []
        self.layers: list[dict[str, torch.Tensor]] = []
        self.pending = 0
        self.shards: list[dict[str, Any]] = []
        self.layer_shards: list[dict[str, Any]] = []
        folder.mkdir(parents=True)

    def add(self, projected: torch.Tensor, layers: dict[str, torch.Tensor]) -> None:
        """One batch: projected ``[B, dim]`` and unprojected ``{name: [B, numel]}`` float32 gradients."""
        g, s = _rowscale(projected)
        sq = torch.stack([layers[p.name].pow(2).sum(dim=1) for p in self.specs], dim=1).to(torch.float32).cpu()
        self.rows.append({"grads": g, "scale": s, "norm": projected.norm(dim=1).to(torch.float32).cpu(), "sqnorm": sq})
        if self.per_layer:
            part: dict[str, torch.Tensor] = {}
            for p in self.specs:
                part[p.name], part[p.name + "::scale"] = _rowscale(layers[p.name])
            self.layers.append(part)
        self.pending += projected.shape[0]
        while self.pending >= self.shard_rows:
            self._flush(self.shard_rows)

    def _take(self, parts: list[dict[str, torch.Tensor]], n: int) -> dict[str, torch.Tensor]:
        keys = parts[0].keys()
        cat = {k: parts[0][k] if len(parts) == 1 else torch.cat([p[k] for p in parts]) for k in keys}
        head = {k: v[:n].contiguous() for k, v in cat.items()}
        rest = {k: v[n:] for k, v in cat.items()}
        parts.clear()
        if next(iter(rest.values())).shape[0]:
            parts.append(rest)
        return head

    def _flush(self, n: int) -> None:
        from safetensors.torch import save_file

        k = len(self.shards)
        name = f"rows-{k:05d}.safetensors"
        save_file(self._take(self.rows, n), str(self.folder / name))
        self.shards.append({"file": name, "rows": n})
        if self.per_layer:
            lname = f"layers-{k:05d}.safetensors"
            save_file(self._take(self.layers, n), str(self.folder / lname))
            self.layer_shards.append({"file": lname, "rows": n})
        self.pending -= n

    def close(self) -> dict[str, Any]:
        if self.pending:
            self._flush(self.pending)
        return {"shards": self.shards, "layer_shards": self.layer_shards if self.per_layer else None}


class IndexWriter:
    """Creates an index folder or adds checkpoints to an existing one."""

    def __init__(self, path: str | Path, manifest: dict[str, Any], examples: list[dict[str, Any]] | None = None):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.manifest = manifest
        if examples is not None:
            tmp = self.path / (EXAMPLES + ".tmp")
            with open(tmp, "w", encoding="utf-8") as fh:
                for e in examples:
                    fh.write(json.dumps(e, ensure_ascii=False) + "\n")
            os.replace(tmp, self.path / EXAMPLES)
        write_json_atomic(self.path / MANIFEST, self.manifest)

    def add_checkpoint(self, entry: dict[str, Any], specs: list[ParamSpec], per_layer: bool) -> CheckpointWriter:
        k = len(self.manifest["checkpoints"])
        entry["dir"] = f"ckpt-{k:03d}"
        tmp = self.path / (entry["dir"] + ".partial")
        if tmp.exists():
            shutil.rmtree(tmp)
        return CheckpointWriter(tmp, specs, int(self.manifest["shard_rows"]), per_layer)

    def commit(self, entry: dict[str, Any], writer: CheckpointWriter) -> None:
        entry.update(writer.close())
        final = self.path / entry["dir"]
        if final.exists():
            shutil.rmtree(final)
        os.replace(writer.folder, final)
        self.manifest["checkpoints"].append(entry)
        write_json_atomic(self.path / MANIFEST, self.manifest)


class TrainingIndex:
    """A training-data index folder, read lazily (see the module docstring for the layout).

    Example:
        >>> idx = TrainingIndex.load("path/to/index")            # doctest: +SKIP
        >>> idx.n_examples, idx.dim, [c["learning_rate"] for c in idx.checkpoints]   # doctest: +SKIP
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        mf = self.path / MANIFEST
        if not mf.exists():
            raise NoTrainingIndexError(
                f"'{self.path}' holds no training-data index (no {MANIFEST}); build one with "
                "attrib_mlops.build_training_index(...) or `attrib-mlops tda index`")
        try:
            self.manifest: dict[str, Any] = json.loads(mf.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise TrainingIndexError(f"'{mf}' is not valid JSON ({e}); rebuild the index") from e
        if self.manifest.get("format") != FORMAT:
            raise TrainingIndexError(f"'{mf}' is not a training-data index manifest (format "
                                     f"{self.manifest.get('format')!r})")
        if int(self.manifest.get("version", 0)) > VERSION:
            raise TrainingIndexError(f"index '{self.path}' has format version {self.manifest['version']}; this "
                                     f"attrib-mlops reads up to {VERSION}; upgrade attrib-mlops")
        self._examples: list[dict[str, Any]] | None = None

    @classmethod
    def load(cls, path: str | Path) -> TrainingIndex:
        """Open the index folder at ``path`` (the same as ``TrainingIndex(path)``)."""
        return cls(path)

    # -- what the index holds
    @property
    def n_examples(self) -> int:
        return int(self.manifest["n_examples"])

    @property
    def dim(self) -> int:
        return int(self.manifest["projection"]["dim"])

    @property
    def params(self) -> list[ParamSpec]:
        return [ParamSpec.from_dict(p) for p in self.manifest["params"]]

    @property
    def checkpoints(self) -> list[dict[str, Any]]:
        return list(self.manifest["checkpoints"])

    @property
    def learning_rates(self) -> list[float]:
        return [float(c["learning_rate"]) for c in self.manifest["checkpoints"]]

    @property
    def has_layers(self) -> bool:
        """Whether DataInf can run: per-layer gradients stored, or an identity projection."""
        return self.manifest["projection"]["kind"] == "identity" or bool(self.manifest.get("per_layer"))

    def examples(self) -> list[dict[str, Any]]:
        if self._examples is None:
            with open(self.path / EXAMPLES, encoding="utf-8") as fh:
                self._examples = [json.loads(line) for line in fh if line.strip()]
        return self._examples

    @property
    def ids(self) -> list[str]:
        return [e["id"] for e in self.examples()]

    @property
    def texts(self) -> list[str]:
        return [e["text"] for e in self.examples()]

    def size_bytes(self) -> dict[str, int]:
        """Bytes on disk: projected float16 rows (N x d x 2 per checkpoint), per-row extras, per-layer, total."""
        out = {"projected": 0, "row_extras": 0, "layers": 0, "total": 0}
        n, d = self.n_examples, self.dim
        n_ck, n_layers = len(self.checkpoints), len(self.manifest["params"])
        out["projected"] = n_ck * n * d * 2
        out["row_extras"] = n_ck * n * (4 + 4 + 4 * n_layers)
        for f in self.path.rglob("*"):
            if f.is_file():
                out["total"] += f.stat().st_size
                if f.name.startswith("layers-"):
                    out["layers"] += f.stat().st_size
        return out

    # -- chunked reads
    def _shards(self, c: int, key: str = "shards") -> Iterator[tuple[int, Path, int]]:
        ck = self.manifest["checkpoints"][c]
        start = 0
        for sh in ck[key] or []:
            yield start, self.path / ck["dir"] / sh["file"], int(sh["rows"])
            start += int(sh["rows"])

    def row_chunks(self, c: int, chunk_rows: int = 65536) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
        """``(start, grads float16 [r, dim], scale float32 [r])`` of checkpoint ``c``, chunk by chunk."""
        from safetensors import safe_open

        for start, f, rows in self._shards(c):
            with safe_open(str(f), framework="pt") as fh:
                g, s = fh.get_slice("grads"), fh.get_tensor("scale")
                for a in range(0, rows, chunk_rows):
                    b = min(a + chunk_rows, rows)
                    yield start + a, g[a:b], s[a:b]

    def layer_chunks(self, c: int, name: str, chunk_rows: int = 65536) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, float32 [r, numel])`` unprojected gradients of one layer, chunk by chunk."""
        from safetensors import safe_open

        if self.manifest["projection"]["kind"] == "identity":
            offset = 0
            for p in self.params:
                if p.name == name:
                    break
                offset += p.numel
            numel = next(p.numel for p in self.params if p.name == name)
            for start, g, s in self.row_chunks(c, chunk_rows):
                yield start, g[:, offset:offset + numel].to(torch.float32) * s[:, None]
            return
        if not self.manifest.get("per_layer"):
            raise TrainingIndexError("this index stores no per-layer gradients, which DataInf needs; rebuild it "
                                     "with per_layer='always' (N x P x 2 bytes) or use method 'tracin' or 'grad_cos'")
        for start, f, rows in self._shards(c, "layer_shards"):
            with safe_open(str(f), framework="pt") as fh:
                g, s = fh.get_slice(name), fh.get_tensor(name + "::scale")
                for a in range(0, rows, chunk_rows):
                    b = min(a + chunk_rows, rows)
                    yield start + a, g[a:b].to(torch.float32) * s[a:b, None]

    def _column(self, c: int, key: str) -> torch.Tensor:
        from safetensors import safe_open

        parts = []
        for _start, f, _rows in self._shards(c):
            with safe_open(str(f), framework="pt") as fh:
                parts.append(fh.get_tensor(key))
        return torch.cat(parts)

    def norms(self, c: int) -> torch.Tensor:
        """``[N]`` L2 norms of the projected gradients of checkpoint ``c``."""
        return self._column(c, "norm")

    def sqnorms(self, c: int) -> torch.Tensor:
        """``[N, L]`` squared L2 norms of the unprojected gradients, per layer, of checkpoint ``c``."""
        return self._column(c, "sqnorm")

    def self_influence(self, method: str = "tracin") -> np.ndarray:
        """Self-influence of every training example.

        ``tracin``: sum_c lr_c ||g_c,k||^2 (exact, from the unprojected norms);
        ``grad_norm``: the same without learning rates.
        """
        if method not in ("tracin", "grad_norm"):
            raise TrainingIndexError(f"unknown self-influence method {method!r}; use 'tracin' or 'grad_norm'")
        total = np.zeros(self.n_examples, dtype=np.float64)
        for c, lr in enumerate(self.learning_rates):
            w = lr if method == "tracin" else 1.0
            total += w * self.sqnorms(c).sum(dim=1).double().numpy()
        return total
