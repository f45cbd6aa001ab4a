"""Synthetic tasks, tiny models and a short training loop: the demo's and the tests' material.

* :mod:`.tasks`: key-value retrieval rows whose attribution ground truth is known
  (the built-in ``demo:`` sample sources of :mod:`attrib_mlops.samples`);
* :mod:`.tiny`: a tiny GPT-2 with a word-level tokenizer, built locally;
* :mod:`.train`: deterministic CPU fine-tuning with the HF ``Trainer``.

These import no other layer of attrib-mlops, so any layer may use them. The
end-to-end demo that trains with the callback and logs to MLflow is an entry
point: :mod:`attrib_mlops.demo_runner` (``attrib-mlops demo``).
"""
