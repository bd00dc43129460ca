"""Versioned rule classes (mechanism) chosen and parameterised by `curation_rules/*.yaml` (policy)."""

from curate.rules.registry import Filter, RuleChain, get_rule, register_rule, registered_rules

__all__ = ["Filter", "RuleChain", "get_rule", "register_rule", "registered_rules"]
