"""Measuring enhancement on real speech: pairs, alignment, systems, scoring and reports (`dfnet4-eval`)."""

from dfnet4.evaluate.pairs import Pair, pairs_from_dirs, pairs_from_mix
from dfnet4.evaluate.run import evaluate, failures
from dfnet4.evaluate.systems import System

__all__ = ["Pair", "System", "evaluate", "failures", "pairs_from_dirs", "pairs_from_mix"]
