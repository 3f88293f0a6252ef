"""Thin Lambda entry points: Powertools decorators, event parsing, one library call."""
