"""Recipe: attribution in a plain PyTorch training loop (no Trainer).

    python recipes/plain_pytorch_loop.py
"""

from __future__ import annotations

import torch

from attrib_mlops.callbacks import AttributionMonitor
from attrib_mlops.demo.tasks import keyvalue_vocab, make_keyvalue_dataset, probe_set
from attrib_mlops.demo.tiny import build_tiny_model
from attrib_mlops.demo.train import KeyValueCollator, encode_keyvalue


def main(steps: int = 300, log_every: int = 100) -> None:
    model, tok = build_tiny_model(keyvalue_vocab())
    rows = encode_keyvalue(tok, make_keyvalue_dataset(steps * 32, seed=0))
    collate = KeyValueCollator(tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    # logs to MLFLOW_TRACKING_URI (or MLflow's default) in a run of its own
    monitor = AttributionMonitor(probe_set(n=8), tok, methods=["input_x_gradient"], experiment_name="plain-loop")
    model.train()
    for step in range(1, steps + 1):
        batch = collate(rows[(step - 1) * 32 : step * 32])
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % log_every == 0:
            monitor.log(model, step)  # never raises unless strict=True; the model is left as it was
            print(f"step {step}: loss {loss.item():.3f}")
    monitor.close()
    print(f"run {monitor.run_id}: steps {sorted(monitor.logged_steps)}")


if __name__ == "__main__":
    main()
