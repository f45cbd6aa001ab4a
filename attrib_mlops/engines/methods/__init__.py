"""Built-in attribution methods: one module, one registered class each (discovered, never listed).

Adding a method: copy ``saliency.py`` to ``<name>.py``, set ``name``/``engine``, write
``compute`` (imports of torch go inside it, so listing methods stays cheap) and copy
its test ``tests/engines/methods/test_saliency.py``. See docs/architecture.md.
"""
