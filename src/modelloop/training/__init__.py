"""The training stage: the train entry point every family goes through (``train.train``), the registration
they share (``train.record_model``) and the Optuna search driver they share (``search``). Each family's
own search lives in its package (``modelloop.families.tabular.search``, ``modelloop.families.text.search``).
"""
