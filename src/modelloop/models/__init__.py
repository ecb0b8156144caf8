"""Kept so that models registered before the families moved into :mod:`modelloop.families` still load:
their pickles name ``modelloop.models.tabular.TabularModel`` and ``modelloop.models.text.TextModel``."""
