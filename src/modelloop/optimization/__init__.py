"""The optimize stage: build a model's variants through its family, verify and benchmark them, register
the best one that keeps quality (``optimize.optimize``)."""
