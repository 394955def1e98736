"""Policies: YAML schema, compilation into text-embedding matrices, and scoring."""

from moderator.policy.compile import CompiledPolicy, compile_policy
from moderator.policy.schema import Category, Policy, load_policy
from moderator.policy.score import ACTIONS, CategoryResult, Decision, score

__all__ = [
    "ACTIONS", "Category", "CategoryResult", "CompiledPolicy", "Decision", "Policy", "compile_policy", "load_policy", "score",
]
