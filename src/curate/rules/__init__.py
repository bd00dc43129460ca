"""Versioned rule classes (mechanism) chosen and parameterised by `curation_rules/*.yaml` (policy)."""

from curate.rules.chain import RuleChain, get_rule, registered_rules
from curate.rules.registry import Filter, register_rule

__all__ = ["Filter", "RuleChain", "get_rule", "register_rule", "registered_rules"]
