"""The paper's data path (§2, §4.1): find images (``sources``), prepare them once into a
memory-mapped store (``prepare``, ``store``), read batches (``loader``) and turn them into
training and evaluation views on the device (``augment``). See docs/data.md."""
