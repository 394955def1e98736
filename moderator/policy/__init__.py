"""Policies: the YAML schema, safe loading with located errors, compilation into embedding
matrices, scoring, hot reload, and the tools behind `moderator policy`."""

from moderator.policy.compile import CompiledCategory, CompiledPolicy, compile_policy
from moderator.policy.loader import LoadedPolicy, PolicyFileError, load_policy
from moderator.policy.schema import Category, Policy
from moderator.policy.score import ACTIONS, CategoryResult, Decision, category_scores, explain, score

__all__ = [
    "ACTIONS",
    "Category",
    "CategoryResult",
    "CompiledCategory",
    "CompiledPolicy",
    "Decision",
    "LoadedPolicy",
    "Policy",
    "PolicyFileError",
    "category_scores",
    "compile_policy",
    "explain",
    "load_policy",
    "score",
]
