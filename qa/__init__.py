"""Shared logic for fine-tuning extractive QA models on Natural Questions and SQuAD 2.0.

Modules importable without torch: storage, squad_io, metrics. The data scripts depend only on
those and the standard library (plus optional orjson/boto3)."""
