"""Bundled examples: a data generator and a commented ``modelloop.yaml`` for each (see README.md)."""

from __future__ import annotations

from .fraud import generate_transactions

__all__ = ["generate_transactions"]
