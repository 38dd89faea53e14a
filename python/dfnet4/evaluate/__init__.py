"""Measuring enhancement on real speech: pairs, alignment, systems, scoring and reports (`dfnet4-eval`)."""

from dfnet4.evaluate.pairs import Pair, PairError, pairs_from_dirs, pairs_from_mix
from dfnet4.evaluate.run import evaluate, failures
from dfnet4.evaluate.systems import System

__all__ = ["Pair", "PairError", "System", "evaluate", "failures", "pairs_from_dirs", "pairs_from_mix"]
